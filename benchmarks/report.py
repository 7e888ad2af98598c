"""Result rows and the plain-text table printed at the end of a run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

COLUMNS = ("benchmark", "result", "target", "vs bare", "verdict", "note")


@dataclass
class Row:
    """One line of the report; ``passed`` None means informational or not measured."""

    benchmark: str
    result: str
    target: str = ""
    ratio: str = ""
    passed: bool | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "-" if self.result not in ("", "n/a") else "n/a"
        return "PASS" if self.passed else "FAIL"

    def cells(self) -> tuple[str, ...]:
        return (self.benchmark, self.result, self.target, self.ratio, self.verdict, self.note)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def rate(value: float, unit: str = "/s") -> str:
    """``12,345/s``."""
    return f"{value:,.0f}{unit}"


def ratio(value: float, reference: float) -> str:
    """``0.87x`` of the reference, or empty when there is no reference."""
    return f"{value / reference:.2f}x" if reference > 0 else ""


def render(rows: list[Row], title: str = "") -> str:
    """Aligned columns, header underlined; the note column is left ragged."""
    table = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS) - 1)]

    def fmt(line: tuple[str, ...]) -> str:
        head = "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
        return f"{head}  {line[-1]}".rstrip()

    out = [title] if title else []
    out.append(fmt(COLUMNS))
    out.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    out.extend(fmt(row.cells()) for row in rows)
    return "\n".join(out)
