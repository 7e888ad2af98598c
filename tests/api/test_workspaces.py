"""Workspaces, tiers and quotas (DESIGN §11, §15): atomic admission, concurrency, bytes."""

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from runyard.settings import Settings, TierLimits
from tests.support import assert_problem, make_pipeline, make_run

pytestmark = pytest.mark.anyio

TINY = {
    "tiny": TierLimits(runs_per_month=5, concurrent_runs=1, artifact_bytes=10),
    "free": TierLimits(runs_per_month=10, concurrent_runs=5),
    "unlimited": TierLimits(),
}


async def new_workspace(client: httpx.AsyncClient, tier: str | None = None) -> dict[str, str]:
    """A workspace (created in open mode) and the headers that act in it."""
    response = await client.post("/v1/workspaces", json={"name": "team", "tier": tier})
    assert response.status_code == 201, response.text
    return {"X-Workspace-Id": response.json()["id"]}


async def usage(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/v1/usage", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_a_workspace_is_created_with_the_default_tier_and_its_usage_starts_empty(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/workspaces", json={"name": "Team A"})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"].startswith("ws_")
    assert (created["name"], created["tier"], created["admin_key"]) == ("Team A", "free", None)
    got = await client.get(f"/v1/workspaces/{created['id']}")
    assert got.json() == {k: v for k, v in created.items() if k != "admin_key"}
    headers = {"X-Workspace-Id": created["id"]}
    month = time.strftime("%Y-%m-01", time.gmtime())
    assert await usage(client, headers) == {
        "workspace_id": created["id"],
        "tier": "free",
        "period": month,
        "runs": 0,
        "limit": 10,
        "concurrent_runs": 0,
        "concurrent_runs_limit": 5,
        "artifact_bytes": 0,
        "artifact_bytes_limit": 1024**3,
    }
    default = await usage(client, {})
    assert (default["tier"], default["limit"]) == ("unlimited", None)
    assert_problem(await client.get("/v1/workspaces/ws_nope"), 404, "workspace_not_found")
    invalid = await client.post("/v1/workspaces", json={"name": "x", "tier": "gold"})
    assert assert_problem(invalid, 400, "invalid_input")["errors"][0]["loc"] == ["body", "tier"]


@pytest.mark.settings(tiers=TINY)
async def test_a_hundred_parallel_creates_at_the_limit_admit_exactly_one(
    client: httpx.AsyncClient,
) -> None:
    headers = await new_workspace(client, "tiny")
    await make_pipeline(client, headers=headers)
    for _ in range(4):
        await make_run(client, headers=headers)
    responses = await asyncio.gather(
        *(client.post("/v1/runs", json={"pipeline": "deploy"}, headers=headers) for _ in range(100))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [402] * 99
    problem = assert_problem(
        next(r for r in responses if r.status_code == 402), 402, "quota_exceeded"
    )
    period = time.strftime("%Y-%m-01", time.gmtime())
    assert (problem["current"], problem["limit"], problem["period"]) == (5, 5, period)
    assert problem["quota"] == "runs_per_month"
    listed = (await client.get("/v1/runs", headers=headers)).json()["data"]
    assert len(listed) == 5  # the rejected creates left nothing behind
    assert (await usage(client, headers))["runs"] == 5


@pytest.mark.settings(tiers=TINY)
async def test_replays_count_and_deleting_runs_gives_no_quota_back(
    client: httpx.AsyncClient,
) -> None:
    headers = await new_workspace(client, "tiny")
    await make_pipeline(client, headers=headers)
    first = await make_run(client, headers=headers, start=False)
    for _ in range(3):
        replayed = await client.post(f"/v1/runs/{first['id']}/replay", json={}, headers=headers)
        assert replayed.status_code == 201, replayed.text
    assert (await usage(client, headers))["runs"] == 4
    deleted = await client.delete(f"/v1/runs/{first['id']}", headers=headers)
    assert deleted.status_code == 204, deleted.text
    await make_run(client, headers=headers)
    refused = await client.post(
        f"/v1/runs/{replayed.json()['id']}/replay", json={}, headers=headers
    )
    assert assert_problem(refused, 402, "quota_exceeded")["current"] == 5
    # an idempotent retry of an admitted create is its first answer, not a new run
    again = {**headers, "Idempotency-Key": "create-1"}
    await client.patch(f"/v1/workspaces/{headers['X-Workspace-Id']}/tier", json={"tier": "free"})
    one = await client.post("/v1/runs", json={"pipeline": "deploy"}, headers=again)
    two = await client.post("/v1/runs", json={"pipeline": "deploy"}, headers=again)
    assert one.status_code == two.status_code == 201
    assert one.json()["id"] == two.json()["id"]
    assert (await usage(client, headers))["runs"] == 6


@pytest.mark.settings(tiers=TINY)
async def test_runs_beyond_the_concurrency_limit_wait_queued_until_a_slot_frees(
    client: httpx.AsyncClient,
) -> None:
    headers = await new_workspace(client, "tiny")
    await make_pipeline(client, headers=headers)
    first = await make_run(client, headers=headers)
    second = await make_run(client, headers=headers)  # admitted: the limit never rejects
    claim = {"runner": {"name": "r1"}}
    taken = await client.post("/v1/runner/claim", json=claim, headers=headers)
    assert taken.json()["run"]["id"] == first["id"]
    assert (await client.post("/v1/runner/claim", json=claim, headers=headers)).status_code == 204
    # the default workspace has no limit: its runs are claimed meanwhile
    await make_pipeline(client)
    other = await make_run(client)
    assert (await client.post("/v1/runner/claim", json=claim)).json()["run"]["id"] == other["id"]
    waiting = asyncio.create_task(
        client.post("/v1/runner/claim", json={**claim, "wait_seconds": 10}, headers=headers)
    )
    await asyncio.sleep(0.3)
    assert not waiting.done()
    assert (await usage(client, headers))["concurrent_runs"] == 1
    token = {"Authorization": f"Bearer {taken.json()['token']}"}
    done = await client.post(
        f"/v1/runner/runs/{first['id']}/status", json={"status": "completed"}, headers=token
    )
    assert done.status_code == 200, done.text
    woken = await asyncio.wait_for(waiting, 5)
    assert woken.status_code == 200
    assert woken.json()["run"]["id"] == second["id"]


@pytest.mark.settings(tiers=TINY)
async def test_artifact_bytes_beyond_the_tier_are_refused_with_402(
    client: httpx.AsyncClient,
) -> None:
    headers = await new_workspace(client, "tiny")
    await make_pipeline(client, headers=headers)
    run = await make_run(client, headers=headers)
    claimed = (await client.post("/v1/runner/claim", json={}, headers=headers)).json()
    token = {"Authorization": f"Bearer {claimed['token']}"}

    async def upload(content: bytes) -> httpx.Response:
        return await client.post(
            f"/v1/runner/runs/{run['id']}/artifacts",
            files={"file": ("a.bin", content, "application/octet-stream")},
            headers=token,
        )

    assert (await upload(b"12345678")).status_code == 201
    problem = assert_problem(await upload(b"12345"), 402, "quota_exceeded")
    assert (problem["quota"], problem["current"], problem["limit"]) == ("artifact_bytes", 8, 10)
    assert (await upload(b"12")).status_code == 201
    assert_problem(await upload(b"1"), 402, "quota_exceeded")
    listed = (await client.get(f"/v1/runs/{run['id']}/artifacts", headers=headers)).json()
    assert sorted(a["size_bytes"] for a in listed["data"]) == [2, 8]
    assert (await usage(client, headers))["artifact_bytes"] == 10


@pytest.mark.settings(tier_webhook_secret="s3cret-s3cret-s3cret")
async def test_tiers_change_by_a_server_admin_or_the_billing_webhook_secret(
    client: httpx.AsyncClient,
) -> None:
    created = (await client.post("/v1/workspaces", json={"name": "billing"})).json()
    path = f"/v1/workspaces/{created['id']}/tier"
    changed = await client.patch(path, json={"tier": "pro"})  # open mode acts as server admin
    assert changed.status_code == 200, changed.text
    assert changed.json()["tier"] == "pro"
    assert (await usage(client, {"X-Workspace-Id": created["id"]}))["limit"] == 1000
    audit = await client.get("/v1/audit", headers={"X-Workspace-Id": created["id"]})
    actions = [(e["action"], e["details"]["tier"]) for e in audit.json()["data"]]
    assert actions == [("workspace.tier", "pro"), ("workspace.create", "free")]
    # a billing system with the secret needs no key, even once keys exist
    root = (await client.post("/v1/api-keys", json={"name": "root", "role": "admin"})).json()
    by_billing = await client.patch(
        path, json={"tier": "free"}, headers={"X-Webhook-Secret": "s3cret-s3cret-s3cret"}
    )
    assert by_billing.status_code == 200, by_billing.text
    assert by_billing.json()["tier"] == "free"
    wrong = await client.patch(path, json={"tier": "pro"}, headers={"X-Webhook-Secret": "guess"})
    assert_problem(wrong, 403, "bad_webhook_secret")
    assert_problem(await client.patch(path, json={"tier": "pro"}), 401, "unauthorized")
    as_root = {"Authorization": f"Bearer {root['secret']}"}
    assert_problem(
        await client.patch(path, json={"tier": "gold"}, headers=as_root), 400, "invalid_input"
    )


async def test_keys_decide_who_creates_and_sees_workspaces(client: httpx.AsyncClient) -> None:
    root = (await client.post("/v1/api-keys", json={"name": "root", "role": "admin"})).json()
    as_root = {"Authorization": f"Bearer {root['secret']}"}
    member = (
        await client.post("/v1/api-keys", json={"name": "m", "role": "member"}, headers=as_root)
    ).json()
    as_member = {"Authorization": f"Bearer {member['secret']}"}
    assert_problem(
        await client.post("/v1/workspaces", json={"name": "x"}, headers=as_member), 403, "forbidden"
    )
    response = await client.post("/v1/workspaces", json={"name": "Team B"}, headers=as_root)
    assert response.status_code == 201, response.text
    team = response.json()
    assert team["admin_key"]["workspace_id"] == team["id"]
    assert team["admin_key"]["role"] == "admin"
    as_team = {"Authorization": f"Bearer {team['admin_key']['secret']}"}
    assert (await client.get(f"/v1/workspaces/{team['id']}", headers=as_team)).status_code == 200
    assert (await usage(client, as_team))["workspace_id"] == team["id"]
    audit = (await client.get("/v1/audit", headers=as_team)).json()["data"]
    assert [(e["action"], e["actor"]) for e in audit][-1] == ("workspace.create", root["id"])
    # a workspace's own admin neither creates workspaces, nor sees others, nor sets its tier
    assert_problem(
        await client.post("/v1/workspaces", json={"name": "y"}, headers=as_team), 403, "forbidden"
    )
    assert_problem(
        await client.get("/v1/workspaces/ws_default", headers=as_team), 404, "workspace_not_found"
    )
    own_tier = await client.patch(
        f"/v1/workspaces/{team['id']}/tier", json={"tier": "unlimited"}, headers=as_team
    )
    assert_problem(own_tier, 403, "forbidden")
    # the default workspace's admin sees every workspace; the secret of a new key is not kept
    assert (await client.get(f"/v1/workspaces/{team['id']}", headers=as_root)).status_code == 200
    keys = (await client.get("/v1/api-keys", headers=as_team)).json()["data"]
    assert [k["id"] for k in keys] == [team["admin_key"]["id"]]
    assert "secret" not in keys[0]


@pytest.mark.settings(tiers=TINY)
async def test_full_workspaces_do_not_crowd_out_other_runs(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Many full workspaces queued first: the embedded worker's claim (from every workspace)
    still finds the default workspace's run behind them, and the next claim does not look
    at them again."""
    claim = {"runner": {"name": "r"}}
    for _ in range(20):
        headers = await new_workspace(client, "tiny")
        await make_pipeline(client, headers=headers)
        await make_run(client, headers=headers)
        await make_run(client, headers=headers)  # queued behind the limit of 1
        taken = await client.post("/v1/runner/claim", json=claim, headers=headers)
        assert taken.status_code == 200
    await make_pipeline(client, "mine")
    mine = await make_run(client, "mine")
    claimed = await app.state.services.runs.claim(None, runner_id="rnr_test")
    assert claimed is not None
    assert claimed[0]["id"] == mine["id"]
    assert len(app.state.services.quotas.known_full()) == 20
    # a runner starting a queued run itself (open mode) is held to the limit too
    headers = await new_workspace(client, "tiny")
    await make_pipeline(client, headers=headers)
    first = await make_run(client, headers=headers)
    second = await make_run(client, headers=headers)
    started = await client.post(
        f"/v1/runner/runs/{first['id']}/status", json={"status": "running"}, headers=headers
    )
    assert started.status_code == 200, started.text
    refused = await client.post(
        f"/v1/runner/runs/{second['id']}/status", json={"status": "running"}, headers=headers
    )
    assert_problem(refused, 409, "concurrency_limit")


async def test_the_billing_secret_must_be_long_and_an_empty_header_never_matches(
    client: httpx.AsyncClient,
) -> None:
    with pytest.raises(ValidationError):
        Settings(tier_webhook_secret="")
    created = (await client.post("/v1/workspaces", json={"name": "w"})).json()
    path = f"/v1/workspaces/{created['id']}/tier"
    # no secret configured: any header, the empty one included, is refused
    for secret in ("", "anything-at-all-long-enough"):
        response = await client.patch(
            path, json={"tier": "pro"}, headers={"X-Webhook-Secret": secret}
        )
        assert_problem(response, 403, "bad_webhook_secret")
