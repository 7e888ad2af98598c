"""Two runs side by side (DESIGN §5.4): metrics, output fields by JSON Pointer, steps.

Works for runs of any pipeline and any status: what one run lacks shows as missing.

Field walk: objects by key and arrays by index, down to leaves (scalars, ``null``, and empty
objects or arrays, which are values of their own). A key or index present on one side only is
``only_in_a`` / ``only_in_b``; where one side has a container and the other a scalar at the same
path, the container's leaves are ``only_in_a`` (or ``b``) and the scalar the other way round.
Leaves are equal when their JSON values are: ``1`` equals ``1.0``, ``true`` does not equal ``1``.
"""

from collections.abc import Iterator, Mapping
from typing import Any

from runyard.clock import ms_between

DERIVED_METRICS = ("duration_ms", "cost_usd")
_MISSING = object()


def compare_runs(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """The comparison of two run resources (``run_resource`` of each, with steps)."""
    fields = field_differences(a["output"], b["output"])
    counts = {"same": 0, "different": 0, "only_in_a": 0, "only_in_b": 0}
    for field in fields:
        counts[field["status"]] += 1
    input_a, input_b = a["input"] or {}, b["input"] or {}
    return {
        "run_a": _side(a),
        "run_b": _side(b),
        "metric_comparisons": metric_comparisons(a, b),
        "field_differences": fields,
        "step_comparisons": step_comparisons(a.get("steps") or [], b.get("steps") or []),
        "summary": {
            "same_pipeline": a["pipeline"] == b["pipeline"],
            "same_input": same_value(a["input"], b["input"]),
            "total_fields_compared": len(fields),
            "fields_same": counts["same"],
            "fields_different": counts["different"],
            "fields_only_in_a": counts["only_in_a"],
            "fields_only_in_b": counts["only_in_b"],
            "input_keys_different": _keys_different(input_a, input_b),
        },
    }


def _side(run: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": run["id"],
        "pipeline": run["pipeline"],
        "status": run["status"],
        "input": run["input"],
        "metrics": run["metrics"],
        "usage": run["usage"],
        "duration_ms": run["duration_ms"],
    }


def metric_comparisons(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every metric in either run (sorted by name), then ``duration_ms`` and ``cost_usd``."""
    values_a = dict(a["metrics"] or {})
    values_b = dict(b["metrics"] or {})
    names = sorted((values_a.keys() | values_b.keys()) - set(DERIVED_METRICS))
    for values, run in ((values_a, a), (values_b, b)):
        values["duration_ms"] = run["duration_ms"]
        values["cost_usd"] = (run["usage"] or {}).get("cost_usd")
    return [
        _metric(name, values_a.get(name), values_b.get(name)) for name in [*names, *DERIVED_METRICS]
    ]


def _metric(name: str, value_a: Any, value_b: Any) -> dict[str, Any]:
    difference = percent = None
    if _is_number(value_a) and _is_number(value_b):
        difference = _tidy(value_b - value_a)
        if value_a != 0:
            percent = round((value_b - value_a) / value_a * 100, 2)
    return {
        "metric": name,
        "run_a_value": value_a,
        "run_b_value": value_b,
        "difference": difference,
        "percent_change": percent,
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _tidy(value: float) -> float:
    """A difference without float noise (0.9 - 0.7 is 0.2, not 0.20000000000000007)."""
    return value if isinstance(value, int) else round(value, 12)


def field_differences(output_a: Any, output_b: Any) -> list[dict[str, Any]]:
    """Each leaf of either output by JSON Pointer, in the order met (a's first)."""
    leaves_a = dict(leaves(output_a))
    leaves_b = dict(leaves(output_b))
    out = []
    for path, value_a in leaves_a.items():
        value_b = leaves_b.get(path, _MISSING)
        if value_b is _MISSING:
            out.append(_field(path, value_a, None, "only_in_a"))
        else:
            status = "same" if same_value(value_a, value_b) else "different"
            out.append(_field(path, value_a, value_b, status))
    out.extend(
        _field(path, None, value_b, "only_in_b")
        for path, value_b in leaves_b.items()
        if path not in leaves_a
    )
    return out


def _field(path: str, value_a: Any, value_b: Any, status: str) -> dict[str, Any]:
    return {"path": path, "run_a_value": value_a, "run_b_value": value_b, "status": status}


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(JSON Pointer, leaf) pairs; the whole value is the leaf ``""`` when it is a scalar."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        at, item = stack.pop()
        if isinstance(item, dict) and item:
            keys = list(item)
            stack.extend((f"{at}/{pointer_token(k)}", item[k]) for k in reversed(keys))
        elif isinstance(item, list) and item:
            stack.extend((f"{at}/{i}", item[i]) for i in range(len(item) - 1, -1, -1))
        else:
            yield at, item


def pointer_token(key: str) -> str:
    """A key as a JSON Pointer reference token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def same_value(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, booleans only equal booleans."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _keys_different(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
        return []
    return sorted(
        key
        for key in a.keys() | b.keys()
        if key not in a or key not in b or not same_value(a[key], b[key])
    )


def step_comparisons(steps_a: list[dict[str, Any]], steps_b: list[dict[str, Any]]) -> list[Any]:
    """Per step name (a's order, then b's other steps): status and duration on each side."""
    by_name_a = {s["name"]: s for s in steps_a}
    by_name_b = {s["name"]: s for s in steps_b}
    names = list(by_name_a) + [n for n in by_name_b if n not in by_name_a]
    out = []
    for name in names:
        step_a, step_b = by_name_a.get(name), by_name_b.get(name)
        duration_a, duration_b = _step_ms(step_a), _step_ms(step_b)
        out.append(
            {
                "step": name,
                "run_a_status": step_a["status"] if step_a else None,
                "run_b_status": step_b["status"] if step_b else None,
                "run_a_duration_ms": duration_a,
                "run_b_duration_ms": duration_b,
                "duration_difference_ms": (
                    None if duration_a is None or duration_b is None else duration_b - duration_a
                ),
            }
        )
    return out


def _step_ms(step: Mapping[str, Any] | None) -> int | None:
    return None if step is None else ms_between(step.get("started_at"), step.get("completed_at"))
