"""Workspace isolation (DESIGN §3, §4): another workspace's objects are 404 on every route.

The matrix is generated from the OpenAPI document: every route with a path parameter is
called by workspace B's admin key with workspace A's ids (and a valid body), so a route added
later is covered without anyone remembering to."""

import re
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from runyard.clock import utcnow
from runyard.context import Caller
from runyard.workspaces.tables import workspaces
from tests.bundle_support import zip_of
from tests.conftest import free_port
from tests.extraction_support import make_config, make_document, make_prompt
from tests.support import make_pipeline, make_run

pytestmark = pytest.mark.anyio

BODIES: dict[str, Any] = {
    "/steps/{name}": {"status": "running"},
    "/approval": {"message": "approve?"},
    "/events": {"type": "log", "data": {}},
    "/status": {"progress": 0.5},
    "/artifacts": {"storage_key": "runs/x/y"},
    "/replay": {},
    "/rollback": {},
    "/v1/pipelines/{pipeline_ref}": {"description": "changed"},
    "/v1/webhooks/{webhook_id}": {"enabled": False},
    "/v1/llm-providers/{provider_id}": {"status": "disabled"},
    "/v1/llm-providers/{provider_id}/models": {"model_id": "gpt-4o-mini"},
    "/v1/llm-models/{model_id}": {"status": "disabled"},
    "/v1/agents/{agent_id}": {"description": "changed"},
    "/sessions": {"title": "theirs"},
    "/sessions/{session_id}": {"title": "changed"},
    "/messages": {"role": "user", "content": "hello"},
    "/tier": {"tier": "pro"},
    "/versions": {"template": "changed {{ document }}"},
    "/v1/prompts/{prompt_id}": {"description": "changed"},
    "/v1/documents/{document_id}": {"name": "changed"},
}


async def add_workspace(app: FastAPI, workspace_id: str) -> None:
    async with app.state.services.db.write() as tx:
        await tx.conn.execute(
            sa.insert(workspaces).values(
                id=workspace_id, name=workspace_id, tier="free", created_at=utcnow()
            )
        )


async def key_for(client: httpx.AsyncClient, workspace: str) -> dict[str, Any]:
    response = await client.post(
        "/v1/api-keys",
        json={"name": "admin", "role": "admin"},
        headers={"X-Workspace-Id": workspace},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.mark.settings(webhook_allow_private=True)
async def test_another_workspaces_objects_are_not_found_on_any_route(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_workspace(app, "ws_b")
    # workspace A: a pipeline, a claimed run with an artifact and a step; an API key; a
    # webhook with a delivery (to a closed port)
    webhook = await client.post(
        "/v1/webhooks", json={"url": f"http://127.0.0.1:{free_port()}/", "events": ["run.*"]}
    )
    pipeline = await make_pipeline(client)
    bundle = await client.post(
        f"/v1/pipelines/{pipeline['id']}/bundle",
        content=zip_of({"steps.py": b""}),
        headers={"content-type": "application/zip"},
    )
    assert bundle.status_code == 201, bundle.text
    run = await make_run(client)
    with_environment = await make_pipeline(client, name="with-env", environment={"env": {"A": "1"}})
    build = await client.post(f"/v1/pipelines/{with_environment['id']}/builds", json={})
    assert build.status_code == 201, build.text
    deliveries = await client.get(f"/v1/webhooks/{webhook.json()['id']}/deliveries")
    provider = await client.post(
        "/v1/llm-providers", json={"name": "a", "provider_type": "openai", "api_key": "sk-a"}
    )
    model = await client.post(
        f"/v1/llm-providers/{provider.json()['id']}/models", json={"model_id": "gpt-4o-mini"}
    )
    claim = (await client.post("/v1/runner/claim", json={})).json()
    token = {"Authorization": f"Bearer {claim['token']}"}
    upload = await client.post(
        f"/v1/runner/runs/{run['id']}/artifacts",
        files={"file": ("a.txt", b"secret of A", "text/plain")},
        data={"path": "a.txt"},
        headers=token,
    )
    artifact = upload.json()
    prompt = await make_prompt(client)
    config = await make_config(client, model.json()["id"])
    document = await make_document(client, "A's invoice", {"total": 1})
    evaluation = await client.post(
        "/v1/evaluations",
        json={
            "prompt_versions": [prompt["id"]],
            "config_ids": [config["id"]],
            "document_ids": [document["id"]],
        },
    )
    agent = await client.post("/v1/agents", json={"name": "a"})
    session = await client.post(f"/v1/agents/{agent.json()['id']}/sessions", json={})
    key_a = await key_for(client, "ws_default")  # the first key: open mode ends here
    key_b = await app.state.services.keys.create(
        Caller(workspace_id="ws_b", actor="test"), name="admin", role="admin"
    )
    ids = {
        "run_id": run["id"],
        "other_id": run["id"],
        "pipeline_ref": pipeline["id"],
        "artifact_id": artifact["id"],
        "key_id": key_a["id"],
        "name": "build",
        "path": "a.txt",
        "webhook_id": webhook.json()["id"],
        "delivery_id": deliveries.json()["data"][0]["id"],
        "workspace_id": "ws_default",
        "provider_id": provider.json()["id"],
        "agent_id": agent.json()["id"],
        "session_id": session.json()["id"],
        "model_id": model.json()["id"],
        "prompt_id": prompt["id"],
        "version": "1",
        "config_id": config["id"],
        "document_id": document["id"],
        "evaluation_id": evaluation.json()["id"],
        "build_id": build.json()["id"],
    }
    as_b = {
        "Authorization": f"Bearer {key_b['secret']}",
        "X-Runyard-Lease": claim["lease"]["id"],
    }
    leaks = []
    checked = 0
    for template, operations in app.openapi()["paths"].items():
        if "{" not in template:
            continue
        path = re.sub(r"{(\w+)(?::path)?}", lambda m: ids[m.group(1)], template)
        suffix = next((s for s in BODIES if template.endswith(s)), None)
        for method in operations:
            body = BODIES.get(suffix) if suffix and method in ("post", "patch") else None
            response = await client.request(method.upper(), path, json=body, headers=as_b)
            checked += 1
            if response.status_code != 404:
                leaks.append(
                    f"{method.upper()} {template}: {response.status_code} {response.text[:120]}"
                )
    assert leaks == []
    assert checked >= 30
    # the control: the same reads by A find what B was told does not exist
    as_a = {"Authorization": f"Bearer {key_a['secret']}"}
    for template, operations in app.openapi()["paths"].items():
        if "{" in template and "get" in operations:
            path = re.sub(r"{(\w+)(?::path)?}", lambda m: ids[m.group(1)], template)
            response = await client.get(path, headers=as_a)
            assert response.status_code in (200, 206), f"GET {template}: {response.status_code}"
    assert (await client.get(f"/v1/runs/{run['id']}", headers=as_a)).json()["status"] == "running"
    content = await client.get(f"/v1/runs/{run['id']}/outputs/a.txt", headers=as_a)
    assert content.content == b"secret of A"
