"""Comparing two runs (DESIGN §5.4): the field walk, equality and the metric arithmetic."""

from typing import Any

from runyard.runs.compare import compare_runs, field_differences, leaves, same_value


def run(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "run_a",
        "pipeline": "extract",
        "status": "completed",
        "input": {},
        "output": None,
        "metrics": {},
        "usage": {},
        "duration_ms": None,
        "steps": [],
    }
    return {**base, **fields}


def by_path(a: Any, b: Any) -> dict[str, tuple[Any, Any, str]]:
    return {
        f["path"]: (f["run_a_value"], f["run_b_value"], f["status"])
        for f in field_differences(a, b)
    }


def test_leaves_are_json_pointers_walking_objects_by_key_and_arrays_by_index() -> None:
    value = {"a": {"b": [1, {"c": None}]}, "x/y": {"~": True}, "empty": {}, "none": []}
    assert list(leaves(value)) == [
        ("/a/b/0", 1),
        ("/a/b/1/c", None),
        ("/x~1y/~0", True),
        ("/empty", {}),
        ("/none", []),
    ]
    assert list(leaves(7)) == [("", 7)]
    assert list(leaves(None)) == [("", None)]


def test_nested_outputs_differ_leaf_by_leaf() -> None:
    a = {"name": "ACME", "total": 10, "lines": [{"sku": "x", "qty": 1}], "note": None}
    b = {"name": "ACME", "total": 10.0, "lines": [{"sku": "y", "qty": 1}, {"sku": "z"}]}
    assert by_path(a, b) == {
        "/name": ("ACME", "ACME", "same"),
        "/total": (10, 10.0, "same"),
        "/lines/0/sku": ("x", "y", "different"),
        "/lines/0/qty": (1, 1, "same"),
        "/note": (None, None, "only_in_a"),  # a null is a value; the key is absent in b
        "/lines/1/sku": (None, "z", "only_in_b"),
    }


def test_a_container_against_a_scalar_shows_both_sides() -> None:
    assert by_path({"x": {"y": 1}}, {"x": 5}) == {
        "/x/y": (1, None, "only_in_a"),
        "/x": (None, 5, "only_in_b"),
    }


def test_booleans_are_not_numbers_and_numbers_compare_by_value() -> None:
    assert same_value(1, 1.0) and same_value({"a": [1]}, {"a": [1.0]})
    assert not same_value(True, 1) and not same_value(0, False)
    assert not same_value("1", 1) and not same_value(None, 0)
    assert by_path({"ok": True}, {"ok": 1}) == {"/ok": (True, 1, "different")}


def test_metrics_cover_both_runs_plus_duration_and_cost() -> None:
    a = run(metrics={"f1": 0.5, "precision": 0.8, "label": "x"}, duration_ms=200, usage={})
    b = run(
        id="run_b",
        metrics={"f1": 0.75, "recall": 0.6, "label": "y"},
        duration_ms=150,
        usage={"cost_usd": 0.002},
    )
    compared = {m["metric"]: m for m in compare_runs(a, b)["metric_comparisons"]}
    assert list(compared) == ["f1", "label", "precision", "recall", "duration_ms", "cost_usd"]
    assert compared["f1"] == {
        "metric": "f1",
        "run_a_value": 0.5,
        "run_b_value": 0.75,
        "difference": 0.25,
        "percent_change": 50.0,
    }
    assert compared["precision"]["run_b_value"] is None
    assert compared["precision"]["difference"] is None
    assert compared["recall"]["percent_change"] is None  # missing in a
    assert compared["label"]["difference"] is None  # not numbers
    assert compared["duration_ms"]["difference"] == -50
    assert compared["duration_ms"]["percent_change"] == -25.0
    assert compared["cost_usd"]["run_a_value"] is None


def test_a_percent_change_from_zero_is_null_and_is_rounded_otherwise() -> None:
    a = run(metrics={"zero": 0, "third": 3})
    b = run(metrics={"zero": 5, "third": 4})
    compared = {m["metric"]: m for m in compare_runs(a, b)["metric_comparisons"]}
    assert compared["zero"]["difference"] == 5 and compared["zero"]["percent_change"] is None
    assert compared["third"]["percent_change"] == 33.33


def test_the_summary_counts_fields_and_names_the_input_keys_that_differ() -> None:
    a = run(input={"doc": "d1", "prompt": "p1", "same": [1]}, output={"x": 1, "y": 2})
    b = run(
        id="run_b",
        pipeline="other",
        input={"doc": "d2", "prompt": "p1", "same": [1], "extra": None},
        output={"x": 1, "y": 3, "z": 4},
    )
    assert compare_runs(a, b)["summary"] == {
        "same_pipeline": False,
        "same_input": False,
        "total_fields_compared": 3,
        "fields_same": 1,
        "fields_different": 1,
        "fields_only_in_a": 0,
        "fields_only_in_b": 1,
        "input_keys_different": ["doc", "extra"],
    }


def test_steps_are_compared_by_name() -> None:
    def step(name: str, status: str, start: str | None, end: str | None) -> dict[str, Any]:
        return {"name": name, "status": status, "started_at": start, "completed_at": end}

    a = run(
        steps=[
            step("build", "completed", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01.500Z"),
            step("test", "failed", "2026-01-01T00:00:02Z", "2026-01-01T00:00:03Z"),
        ]
    )
    b = run(
        steps=[
            step("build", "completed", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"),
            step("deploy", "pending", None, None),
        ]
    )
    assert compare_runs(a, b)["step_comparisons"] == [
        {
            "step": "build",
            "run_a_status": "completed",
            "run_b_status": "completed",
            "run_a_duration_ms": 1500,
            "run_b_duration_ms": 1000,
            "duration_difference_ms": -500,
        },
        {
            "step": "test",
            "run_a_status": "failed",
            "run_b_status": None,
            "run_a_duration_ms": 1000,
            "run_b_duration_ms": None,
            "duration_difference_ms": None,
        },
        {
            "step": "deploy",
            "run_a_status": None,
            "run_b_status": "pending",
            "run_a_duration_ms": None,
            "run_b_duration_ms": None,
            "duration_difference_ms": None,
        },
    ]
