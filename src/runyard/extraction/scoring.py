"""Field-level metrics of an extraction against its ground truth (DESIGN §10, §15).

Both sides are flattened to leaves by JSON Pointer: objects by key, lists by index, except
that a list holding only scalars is one leaf, compared as a multiset (order does not matter,
repeats do). Nothing extracted is not a value: ``null``, an empty object and an empty list
are no leaf at all.

Values are normalised before they are compared: strings are trimmed, case-folded and their
runs of whitespace collapsed; a string that reads as a decimal number (``" 42 "``, ``-3.5``,
``1e3``) is that number; numbers compare by value (``3`` equals ``3.0`` and ``"3"``);
booleans equal only booleans.

- extracted = leaves of the output, expected = leaves of the ground truth,
  correct = paths in both whose normalised values are equal;
- precision = correct / extracted, recall = correct / expected (each 0 when its denominator
  is 0); f1 = 2pr / (p + r), 0 when p + r = 0 — the harmonic mean of the two, whatever
  they are;
- accuracy = correct / the number of paths in either side.
"""

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from runyard.runs.compare import pointer_token

_SPACES = re.compile(r"\s+")
#: what reads as a number: ``42``, ``-3.5``, ``.5``, ``1e3`` (not ``1_000``, ``inf`` or ``nan``)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?")
Normal = tuple[str, Any]


@dataclass(frozen=True, slots=True)
class Score:
    extracted: int
    expected: int
    correct: int
    paths: int  # in either side
    precision: float
    recall: float
    f1: float
    accuracy: float

    def metrics(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "accuracy": self.accuracy,
            "fields_extracted": self.extracted,
            "fields_expected": self.expected,
            "fields_correct": self.correct,
        }


def score(output: Any, ground_truth: Any) -> Score:
    got = dict(flatten(output))
    want = dict(flatten(ground_truth))
    correct = sum(1 for path, value in got.items() if want.get(path, _ABSENT) == value)
    paths = len(got.keys() | want.keys())
    precision = _ratio(correct, len(got))
    recall = _ratio(correct, len(want))
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return Score(
        extracted=len(got),
        expected=len(want),
        correct=correct,
        paths=paths,
        precision=precision,
        recall=recall,
        f1=f1,
        accuracy=_ratio(correct, paths),
    )


_ABSENT = ("absent", None)


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def flatten(value: Any, path: str = "") -> Iterator[tuple[str, Normal]]:
    """(JSON Pointer, normalised value) of each leaf; empty values give none."""
    if value is None:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(item, f"{path}/{pointer_token(str(key))}")
    elif isinstance(value, list):
        if not value:
            return
        if all(_is_scalar(item) for item in value):
            items = [normal(item) for item in value if item is not None]
            if items:
                yield path, ("multiset", frozenset(Counter(items).items()))
            return
        for index, item in enumerate(value):
            yield from flatten(item, f"{path}/{index}")
    else:
        yield path, normal(value)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def normal(value: Any) -> Normal:
    """A scalar as what it is compared by."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", _number(float(value)))
    text = _SPACES.sub(" ", str(value).strip()).casefold()
    if _NUMBER.fullmatch(text):
        number = float(text)
        if math.isfinite(number):
            return ("number", _number(number))
    return ("text", text)


def _number(number: float) -> float:
    return number + 0.0  # -0.0 equals 0.0 and hashes with it


def differences(output: Any, ground_truth: Any, limit: int = 100) -> dict[str, list[str]]:
    """The JSON Pointers behind a score, at most ``limit`` of each: ``wrong`` (in both,
    unequal), ``missing`` (expected, not extracted) and ``extra`` (extracted, not expected)."""
    got = dict(flatten(output))
    want = dict(flatten(ground_truth))
    wrong = [path for path, value in got.items() if path in want and want[path] != value]
    return {
        "wrong": wrong[:limit],
        "missing": [path for path in want if path not in got][:limit],
        "extra": [path for path in got if path not in want][:limit],
    }
