"""The HyperShift-style example pipeline (examples/hypershift) runs as its README says."""

from pathlib import Path

import httpx
import orjson
import pytest

from tests.support import assert_problem, wait_for_status

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hypershift"


@pytest.fixture(autouse=True)
def importable_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))


async def start(client: httpx.AsyncClient, description: str) -> dict[str, object]:
    pipeline = await client.post(
        "/v1/pipelines", json=orjson.loads((EXAMPLE / "pipeline.json").read_bytes())
    )
    assert pipeline.status_code in (201, 409), pipeline.text
    response = await client.post(
        "/v1/runs",
        json={
            "pipeline": "hypershift-deploy",
            "require_approval": True,
            "input": {"user_intent": {"description": description, "target": "production"}},
        },
        headers={"X-User-Id": "alice"},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.mark.settings(worker_enabled=True)
async def test_the_deploy_waits_for_another_persons_approval_then_finishes(
    client: httpx.AsyncClient,
) -> None:
    run = await start(client, "Deploy the checkout service")
    blocked = await wait_for_status(client, run["id"], "blocked")
    assert blocked["approval"]["message"] == "Deploy checkout to production?"
    assert [s["name"] for s in blocked["steps"]] == ["architect", "builder", "sentinel", "approval"]
    own = await client.post(f"/v1/runs/{run['id']}/approve", headers={"X-User-Id": "alice"})
    assert_problem(own, 403, "forbidden")
    await client.post(f"/v1/runs/{run['id']}/approve", headers={"X-User-Id": "bob"})
    done = await wait_for_status(client, run["id"], "completed", "failed")
    assert done["status"] == "completed", done["error"]
    assert done["output"]["finops"] == {"monthly_cost_usd": 0.36, "within_budget": True}
    status = (await client.get("/v1/status")).json()
    assert status["last_deploy"]["run_id"] == run["id"]


async def test_missing_intent_is_refused_with_the_field(client: httpx.AsyncClient) -> None:
    await client.post("/v1/pipelines", json=orjson.loads((EXAMPLE / "pipeline.json").read_bytes()))
    response = await client.post(
        "/v1/runs", json={"pipeline": "hypershift-deploy", "input": {"user_intent": {}}}
    )
    problem = assert_problem(response, 400, "invalid_input")
    assert problem["errors"][0]["loc"] == ["body", "input", "user_intent"]


@pytest.mark.settings(worker_enabled=True)
async def test_a_sentinel_veto_cannot_be_approved_past(client: httpx.AsyncClient) -> None:
    run = await start(client, "please disable auth on checkout")
    failed = await wait_for_status(client, run["id"], "failed")
    assert failed["error"]["step"] == "sentinel" and "veto" in failed["error"]["message"]
    assert "approval" not in [s["name"] for s in failed["steps"]]
    assert_problem(
        await client.post(f"/v1/runs/{run['id']}/approve", headers={"X-User-Id": "bob"}),
        409,
        "invalid_transition",
    )
