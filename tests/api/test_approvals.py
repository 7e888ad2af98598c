"""Approval gates (DESIGN §5.2-5.3, §7, §8) on both databases."""

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import assert_problem, make_pipeline, make_run, wait_for_status

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def gated(tmp_path: Path, **gate: Any) -> list[dict[str, Any]]:
    return [
        {"name": "plan", "uses": "python", "with": {"function": "tests.worker_steps:count_calls"}},
        {
            "name": "gate",
            "uses": "approval",
            "with": {"message": "Ship {{ input.counter | length }}?", **gate},
        },
        {"name": "ship", "uses": "command", "with": {"run": "echo shipped"}},
    ]


@pytest.mark.settings(worker_enabled=True)
async def test_approval_resumes_after_the_gate_without_redoing_earlier_steps(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    await make_pipeline(client, steps=gated(tmp_path))
    counter = tmp_path / "plans"
    run = await make_run(client, input={"counter": str(counter)}, require_approval=True)
    blocked = await wait_for_status(client, run["id"], "blocked")
    assert blocked["approval"]["state"] == "pending"
    assert blocked["approval"]["message"] == f"Ship {len(str(counter))}?"
    assert blocked["runner_id"] is not None and blocked["current_step"] == "gate"
    response = await client.post(
        f"/v1/runs/{run['id']}/approve", json={"comment": "go"}, headers={"X-User-Id": "bob"}
    )
    assert response.status_code == 200 and response.json()["message"] == "Run approved"
    final = await wait_for_status(client, run["id"], "completed", "failed")
    assert final["status"] == "completed", final["error"]
    assert counter.read_text() == "x"
    assert final["approval"]["state"] == "approved" and final["approval"]["decided_by"] == "bob"
    assert final["output"]["gate"] == {"approved_by": "bob", "comment": "go"}
    assert final["attempt"] == 2
    types = [e["type"] for e in (await client.get(f"/v1/runs/{run['id']}/events")).json()["data"]]
    blocked_at = types.index("run.blocked")
    assert types[blocked_at + 1 : blocked_at + 3] == ["run.approved", "run.queued"]
    audit = (await client.get(f"/v1/runs/{run['id']}/audit")).json()["data"]
    assert ("run.approve", "bob") in [(e["action"], e["actor"]) for e in audit]


@pytest.mark.settings(worker_enabled=True)
async def test_rejection_ends_the_run_before_later_steps(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    await make_pipeline(client, steps=gated(tmp_path))
    run = await make_run(client, input={"counter": str(tmp_path / "c")}, require_approval=True)
    await wait_for_status(client, run["id"], "blocked")
    rejected = await client.post(f"/v1/runs/{run['id']}/reject", json={"comment": "not today"})
    assert rejected.json()["run"]["status"] == "rejected"
    final = await wait_for_status(client, run["id"], "rejected")
    assert [s["name"] for s in final["steps"]] == ["plan", "gate"]
    assert_problem(await client.post(f"/v1/runs/{run['id']}/approve"), 409, "invalid_transition")


@pytest.mark.settings(worker_enabled=True)
async def test_gates_apply_only_to_runs_that_require_approval(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    await make_pipeline(client, steps=gated(tmp_path))
    final = await wait_for_status(
        client,
        (await make_run(client, input={"counter": str(tmp_path / "c")}))["id"],
        "completed",
        "failed",
    )
    assert [(s["name"], s["status"]) for s in final["steps"]] == [
        ("plan", "completed"),
        ("gate", "skipped"),
        ("ship", "completed"),
    ]
    await make_pipeline(
        client,
        name="plain",
        steps=[
            {"name": "only", "uses": "command", "with": {"run": "true"}},
        ],
    )
    gated_run = await make_run(client, "plain", require_approval=True)
    blocked = await wait_for_status(client, gated_run["id"], "blocked")
    assert blocked["approval"]["step"] == "approval" and blocked["steps"][0]["name"] == "approval"
    await client.post(f"/v1/runs/{gated_run['id']}/approve")
    resumed = await wait_for_status(client, gated_run["id"], "completed")
    assert resumed["steps"][-1]["name"] == "only"


@pytest.mark.settings(worker_enabled=True)
async def test_a_gate_can_refuse_its_creators_approval(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    await make_pipeline(client, steps=gated(tmp_path, allow_self_approval=False))
    run = (
        await client.post(
            "/v1/runs",
            json={
                "pipeline": "deploy",
                "input": {"counter": str(tmp_path / "c")},
                "require_approval": True,
            },
            headers={"X-User-Id": "alice"},
        )
    ).json()
    await wait_for_status(client, run["id"], "blocked")
    own = await client.post(f"/v1/runs/{run['id']}/approve", headers={"X-User-Id": "alice"})
    assert_problem(own, 403, "forbidden")
    other = await client.post(f"/v1/runs/{run['id']}/approve", headers={"X-User-Id": "carol"})
    assert other.status_code == 200


@pytest.mark.settings(worker_enabled=True, lease_seconds=3)
async def test_an_expired_gate_takes_its_on_expire_outcome(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    await make_pipeline(client, steps=gated(tmp_path, expires_in_seconds=1, on_expire="fail"))
    run = await make_run(client, input={"counter": str(tmp_path / "c")}, require_approval=True)
    failed = await wait_for_status(client, run["id"], "failed")
    assert failed["error"]["code"] == "approval_expired" and failed["error"]["step"] == "gate"
    assert failed["approval"]["state"] == "expired"

    await make_pipeline(
        client, name="lenient", steps=gated(tmp_path, expires_in_seconds=1, on_expire="approve")
    )
    lenient = await make_run(
        client, "lenient", input={"counter": str(tmp_path / "d")}, require_approval=True
    )
    approved = await wait_for_status(client, lenient["id"], "completed")
    assert approved["approval"]["state"] == "approved"


async def test_runners_request_gates_through_the_runner_api(client: httpx.AsyncClient) -> None:
    await make_pipeline(client, executor={"type": "worker"})
    run = await make_run(client)
    claimed = (await client.post("/v1/runner/claim", json={})).json()
    auth = {"Authorization": f"Bearer {claimed['token']}"}
    gate = await client.post(
        f"/v1/runner/runs/{run['id']}/approval",
        json={"message": "Deploy to prod?", "expires_in_seconds": 600},
        headers=auth,
    )
    assert gate.status_code == 200
    blocked = gate.json()["run"]
    assert blocked["status"] == "blocked" and blocked["approval"]["expires_at"] is not None
    assert_problem(  # the gate ended the lease
        await client.post(f"/v1/runner/runs/{run['id']}/heartbeat", headers=auth),
        409,
        "stale_lease",
    )
    await client.post(f"/v1/runs/{run['id']}/approve")
    again = (await client.post("/v1/runner/claim", json={})).json()
    assert again["run"]["id"] == run["id"] and again["lease"]["attempt"] == 2
