"""`GET /v1/runs/{a}/compare/{b}` (DESIGN §5.4) over real runs on each database: runs of any
pipeline and status, different metric sets, nested outputs, steps run by the worker."""

from typing import Any

import httpx
import pytest

from tests.support import assert_problem, make_pipeline, make_run, report, wait_for_status

pytestmark = pytest.mark.anyio


async def finished_run(client: httpx.AsyncClient, pipeline: str, **report_body: Any) -> str:
    run = await make_run(client, pipeline, input={"document": "d1", "prompt": "p1"})
    assert (await report(client, run["id"], status="running")).status_code == 200
    assert (await report(client, run["id"], **report_body)).status_code == 200
    return str(run["id"])


async def test_two_runs_with_different_metrics_and_nested_outputs(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(client, "invoices")
    a = await finished_run(
        client,
        "invoices",
        status="completed",
        output={"vendor": {"name": "ACME", "vat": "DE1"}, "lines": [{"qty": 2}]},
        metrics={"precision": 0.5, "f1": 0.4},
        usage={"cost_usd": 0.01},
    )
    b = await finished_run(
        client,
        "invoices",
        status="completed",
        output={"vendor": {"name": "acme"}, "lines": [{"qty": 2.0}, {"qty": 1}]},
        metrics={"recall": 0.9, "f1": 0.6},
        usage={"cost_usd": 0.015},
    )
    response = await client.get(f"/v1/runs/{a}/compare/{b}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run_a"]["id"] == a and body["run_b"]["id"] == b
    assert body["run_a"]["input"] == {"document": "d1", "prompt": "p1"}
    metrics = {m["metric"]: m for m in body["metric_comparisons"]}
    assert list(metrics) == ["f1", "precision", "recall", "duration_ms", "cost_usd"]
    assert metrics["f1"]["difference"] == pytest.approx(0.2)
    assert metrics["f1"]["percent_change"] == 50.0
    assert (metrics["precision"]["run_b_value"], metrics["recall"]["run_a_value"]) == (None, None)
    assert metrics["cost_usd"]["percent_change"] == 50.0
    assert metrics["duration_ms"]["run_a_value"] == body["run_a"]["duration_ms"] is not None
    fields = {f["path"]: f["status"] for f in body["field_differences"]}
    assert fields == {
        "/vendor/name": "different",
        "/vendor/vat": "only_in_a",
        "/lines/0/qty": "same",
        "/lines/1/qty": "only_in_b",
    }
    assert body["summary"] == {
        "same_pipeline": True,
        "same_input": True,
        "total_fields_compared": 4,
        "fields_same": 1,
        "fields_different": 1,
        "fields_only_in_a": 1,
        "fields_only_in_b": 1,
        "input_keys_different": [],
    }


async def test_runs_of_any_pipeline_and_status_compare(client: httpx.AsyncClient) -> None:
    await make_pipeline(client, "deploy")
    await make_pipeline(client, "invoices")
    failed = await finished_run(client, "deploy", status="failed", error="exit code 2")
    pending = await make_run(client, "invoices", start=False, input={"document": "d2"})
    body = (await client.get(f"/v1/runs/{failed}/compare/{pending['id']}")).json()
    assert (body["run_a"]["status"], body["run_b"]["status"]) == ("failed", "pending")
    assert body["field_differences"] == [
        {"path": "", "run_a_value": None, "run_b_value": None, "status": "same"}
    ]
    assert body["summary"]["same_pipeline"] is False
    assert body["summary"]["input_keys_different"] == ["document", "prompt"]
    assert [m["metric"] for m in body["metric_comparisons"]] == ["duration_ms", "cost_usd"]
    assert body["metric_comparisons"][0]["run_b_value"] is None


async def test_a_missing_run_is_404_naming_it(client: httpx.AsyncClient) -> None:
    await make_pipeline(client, "deploy")
    run = await make_run(client, "deploy")
    problem = assert_problem(
        await client.get(f"/v1/runs/{run['id']}/compare/run_missing"), 404, "run_not_found"
    )
    assert "run_missing" in problem["detail"]
    problem = assert_problem(
        await client.get(f"/v1/runs/run_gone/compare/{run['id']}"), 404, "run_not_found"
    )
    assert "run_gone" in problem["detail"]


@pytest.mark.settings(worker_enabled=True)
async def test_steps_compare_with_their_statuses_and_durations(client: httpx.AsyncClient) -> None:
    steps = [
        {"name": "build", "uses": "command", "with": {"run": "echo built"}},
        {"name": "check", "uses": "command", "with": {"run": "exit ${CODE:-0}"}},
    ]
    await make_pipeline(client, "ci", steps=steps)
    good = await make_run(client, "ci")
    await wait_for_status(client, good["id"], "completed")
    other_steps = [steps[0], {"name": "ship", "uses": "command", "with": {"run": "exit 3"}}]
    await make_pipeline(client, "ci2", steps=other_steps)
    bad = await make_run(client, "ci2")
    await wait_for_status(client, bad["id"], "failed")

    body = (await client.get(f"/v1/runs/{good['id']}/compare/{bad['id']}")).json()
    compared = {s["step"]: s for s in body["step_comparisons"]}
    assert list(compared) == ["build", "check", "ship"]
    assert (compared["build"]["run_a_status"], compared["build"]["run_b_status"]) == (
        "completed",
        "completed",
    )
    assert compared["build"]["run_a_duration_ms"] >= 0
    assert compared["build"]["duration_difference_ms"] == (
        compared["build"]["run_b_duration_ms"] - compared["build"]["run_a_duration_ms"]
    )
    assert (compared["check"]["run_b_status"], compared["ship"]["run_b_status"]) == (
        None,
        "failed",
    )
