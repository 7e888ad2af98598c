"""Summary, diagnostics and rollback of runs (DESIGN §5.3) on both databases."""

import httpx
import pytest

from tests.support import assert_problem, make_pipeline, make_run, post_events, wait_for_status

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_summary_counts_events_logs_and_times_steps(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    run = await make_run(client)
    claimed = (await client.post("/v1/runner/claim", json={})).json()
    auth = {"Authorization": f"Bearer {claimed['token']}"}
    url = f"/v1/runner/runs/{run['id']}"
    await client.post(f"{url}/steps/build", json={"status": "running"}, headers=auth)
    await post_events(
        client,
        run["id"],
        [
            {"type": "log", "data": {"level": "info", "message": "a"}},
            {"type": "log", "data": {"level": "warning", "message": "b"}},
            {"type": "log", "data": {"level": "warning", "message": "c"}},
            {"type": "console.line", "data": {"stream": "stderr", "text": "d"}},
        ],
    )
    await client.post(f"{url}/steps/build", json={"status": "completed"}, headers=auth)
    await client.post(
        f"{url}/status",
        json={"status": "completed", "usage": {"input_tokens": 5}, "metrics": {"f1": 0.5}},
        headers=auth,
    )
    summary = (await client.get(f"/v1/runs/{run['id']}/summary")).json()
    assert summary["status"] == "completed" and summary["attempts"] == 1
    assert summary["log_lines"] == {"info": 1, "warning": 2, "stderr": 1}
    assert summary["events"]["by_type"]["log"] == 3
    assert summary["events"]["by_type"]["step.started"] == 1
    assert summary["events"]["total"] == sum(summary["events"]["by_type"].values())
    assert summary["steps"][0]["name"] == "build" and summary["steps"][0]["duration_ms"] >= 0
    assert summary["queue_wait_ms"] >= 0 and summary["duration_ms"] >= 0
    assert summary["time_to_first_event_ms"] >= 0
    assert summary["usage"] == {"input_tokens": 5} and summary["metrics"] == {"f1": 0.5}
    assert_problem(await client.get("/v1/runs/run_0000000000none/summary"), 404, "run_not_found")


@pytest.mark.settings(lease_seconds=1)
async def test_diagnostics_show_every_attempt_and_its_lease(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    run = await make_run(client, max_attempts=2)
    first = (await client.post("/v1/runner/claim", json={"runner": {"name": "a"}})).json()
    await wait_for_status(client, run["id"], "queued")  # the first runner went silent
    second = (await client.post("/v1/runner/claim", json={"runner": {"name": "b"}})).json()
    await client.post(
        f"/v1/runner/runs/{run['id']}/status",
        json={"status": "failed", "error": {"code": "oom", "message": "killed"}},
        headers={"Authorization": f"Bearer {second['token']}"},
    )
    diagnostics = (await client.get(f"/v1/runs/{run['id']}/diagnostics")).json()
    attempts = diagnostics["attempts"]
    assert [(a["attempt"], a["lease_id"], a["end_reason"]) for a in attempts] == [
        (1, first["lease"]["id"], "expired"),
        (2, second["lease"]["id"], "failed"),
    ]
    assert attempts[0]["runner_id"] != attempts[1]["runner_id"]
    assert diagnostics["current_lease"] is None and diagnostics["max_attempts"] == 2
    assert diagnostics["errors"] == [
        {"source": "run", "code": "oom", "message": "killed", "step": None}
    ]
    assert diagnostics["timing"]["total_ms"] >= diagnostics["timing"]["run_ms"] >= 0


@pytest.mark.settings(worker_enabled=True)
async def test_rollback_runs_the_rollback_steps_or_records_the_request(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(
        client,
        steps=[{"name": "deploy", "uses": "command", "with": {"run": "echo up"}}],
        rollback_steps=[
            {
                "name": "undo",
                "uses": "command",
                "with": {"run": "echo undoing {{ input.rollback_of }}"},
            }
        ],
        input_schema={
            "type": "object",
            "additionalProperties": False,
            "properties": {"env": {"type": "string"}},
        },
    )
    run = await make_run(client, input={"env": "prod"})
    await wait_for_status(client, run["id"], "completed")
    response = await client.post(f"/v1/runs/{run['id']}/rollback")
    assert response.status_code == 201 and response.json()["result"] == "queued"
    rollback = response.json()["run"]
    assert rollback["replay_of"] == run["id"]
    assert rollback["input"] == {"env": "prod", "rollback_of": run["id"]}
    done = await wait_for_status(client, rollback["id"], "completed")
    assert [s["name"] for s in done["steps"]] == ["undo"]
    lines = (await client.get(f"/v1/runs/{rollback['id']}/logs?format=text")).text
    assert f"undoing {run['id']}" in lines

    await make_pipeline(
        client,
        name="plain",
        steps=[
            {"name": "only", "uses": "command", "with": {"run": "true"}},
        ],
    )
    plain = await make_run(client, "plain")
    recorded = await client.post(f"/v1/runs/{plain['id']}/rollback")
    assert recorded.status_code == 200 and recorded.json() == {"result": "recorded", "run": None}
    audit = (await client.get(f"/v1/runs/{plain['id']}/audit")).json()["data"]
    assert audit[-1]["action"] == "run.rollback"
    assert audit[-1]["details"] == {"result": "recorded"}
