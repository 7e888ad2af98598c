"""API keys and roles (DESIGN §4, §15): the first key ends open mode; keys are scoped to their
workspace and role; revoked and expired keys are 401."""

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support import assert_problem, make_pipeline, make_run

pytestmark = pytest.mark.anyio


def auth(secret: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **headers}


async def make_key(
    client: httpx.AsyncClient, role: str, headers: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/api-keys", json={"name": f"{role} key", "role": role, **fields}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_the_first_key_ends_open_mode(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/runs")).status_code == 200  # open mode: no credentials
    admin = await make_key(client, "admin")
    assert admin["secret"].startswith(f"ryk_{admin['prefix']}_")
    assert admin["role"] == "admin" and admin["workspace_id"] == "ws_default"
    assert_problem(await client.get("/v1/runs"), 401, "unauthorized")
    assert (await client.get("/v1/runs", headers=auth(admin["secret"]))).status_code == 200
    assert (await client.get("/health")).status_code == 200  # never needs auth
    listed = (await client.get("/v1/api-keys", headers=auth(admin["secret"]))).json()["data"]
    assert [k["id"] for k in listed] == [admin["id"]]
    assert "secret" not in listed[0] and "secret_hash" not in listed[0]
    for wrong in ("ryk_000000000000_nope", admin["secret"] + "x", "garbage"):
        assert_problem(await client.get("/v1/runs", headers=auth(wrong)), 401, "unauthorized")


async def test_roles_decide_what_a_key_may_do(client: httpx.AsyncClient) -> None:
    admin = (await make_key(client, "admin"))["secret"]
    as_admin = auth(admin)
    member = (await make_key(client, "member", as_admin))["secret"]
    viewer = (await make_key(client, "viewer", as_admin))["secret"]
    runner = (await make_key(client, "runner", as_admin))["secret"]
    await make_pipeline(client, headers=as_admin)
    run = await make_run(client, headers=auth(member))

    # viewers read, never write
    assert (await client.get(f"/v1/runs/{run['id']}", headers=auth(viewer))).status_code == 200
    refused = await client.post("/v1/runs", json={"pipeline": "deploy"}, headers=auth(viewer))
    assert_problem(refused, 403, "forbidden")
    # members act on runs but do not manage keys
    assert_problem(await client.get("/v1/api-keys", headers=auth(member)), 403, "forbidden")
    # runner keys reach the runner API only
    assert_problem(await client.get("/v1/runs", headers=auth(runner)), 403, "forbidden")
    claimed = await client.post("/v1/runner/claim", json={}, headers=auth(runner))
    assert claimed.status_code == 200 and claimed.json()["run"]["id"] == run["id"]
    lease = claimed.json()["lease"]["id"]
    unfenced = await client.post(  # a key's callbacks are fenced too: they name the lease
        f"/v1/runner/runs/{run['id']}/status", json={"progress": 0.5}, headers=auth(runner)
    )
    assert_problem(unfenced, 400, "invalid_input")
    done = await client.post(
        f"/v1/runner/runs/{run['id']}/status",
        json={"status": "completed"},
        headers=auth(runner, **{"X-Runyard-Lease": lease}),
    )
    assert done.status_code == 200, done.text
    assert_problem(
        await client.post("/v1/runner/claim", json={}, headers=auth(viewer)), 403, "forbidden"
    )
    # a runner token reaches its own run's runner endpoints, nothing else
    token = claimed.json()["token"]
    assert_problem(await client.get("/v1/runs", headers=auth(token)), 403, "forbidden")


async def test_revoked_and_expired_keys_are_refused(client: httpx.AsyncClient) -> None:
    admin = await make_key(client, "admin")
    as_admin = auth(admin["secret"])
    member = await make_key(client, "member", as_admin)
    soon = datetime.now(UTC) + timedelta(seconds=1)
    brief = await make_key(client, "viewer", as_admin, expires_at=soon.isoformat())
    assert (await client.get("/v1/runs", headers=auth(brief["secret"]))).status_code == 200
    assert (
        await client.delete(f"/v1/api-keys/{member['id']}", headers=as_admin)
    ).status_code == 204
    refused = await client.get("/v1/runs", headers=auth(member["secret"]))
    assert_problem(refused, 401, "unauthorized")
    assert "revoked" in refused.json()["detail"]
    await asyncio.sleep(1.1)
    expired = await client.get("/v1/runs", headers=auth(brief["secret"]))
    assert_problem(expired, 401, "unauthorized")
    assert "expired" in expired.json()["detail"]
    past = await client.post(
        "/v1/api-keys",
        json={"name": "old", "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"},
        headers=as_admin,
    )
    assert_problem(past, 400, "invalid_input")
    unknown = await client.delete("/v1/api-keys/key_missing", headers=as_admin)
    assert_problem(unknown, 404, "api_key_not_found")


async def test_keys_act_in_their_workspace_and_as_themselves(client: httpx.AsyncClient) -> None:
    admin = await make_key(client, "admin", headers={"X-User-Id": "alice"})
    assert admin["created_by"] == "alice"  # open mode: the header is the actor
    as_admin = auth(admin["secret"], **{"X-User-Id": "mallory", "X-Workspace-Id": "ws_other"})
    await make_pipeline(client, headers=as_admin)
    run = await make_run(client, headers=as_admin)
    assert run["workspace_id"] == "ws_default"  # the key's workspace, not the header's
    assert run["created_by"] == admin["id"]  # the key, not the header it sent
    proxy = await make_key(client, "member", auth(admin["secret"]), can_impersonate=True)
    on_behalf = await make_run(client, headers=auth(proxy["secret"], **{"X-User-Id": "carol"}))
    assert on_behalf["created_by"] == "carol"


async def test_once_a_key_exists_every_route_needs_credentials(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Generated from the OpenAPI document, so a route added later is covered too."""
    await make_key(client, "admin")
    checked = 0
    for template, operations in app.openapi()["paths"].items():
        if not template.startswith("/v1/"):
            continue
        path = re.sub(r"{(\w+)(:path)?}", lambda m: f"x_{m.group(1)}", template)
        for method in operations:
            response = await client.request(method.upper(), path, json={})
            assert response.status_code == 401, f"{method} {template}: {response.status_code}"
            checked += 1
    assert checked > 40
