"""Pipelines (DESIGN §7): stored with versions; names unique per workspace."""

import httpx
import pytest

from tests.support import assert_problem, make_pipeline, make_run

pytestmark = pytest.mark.anyio


async def test_create_get_list_patch_delete(client: httpx.AsyncClient) -> None:
    created = await make_pipeline(
        client,
        description="ship it",
        executor={"type": "http", "url": "http://127.0.0.1:9/job"},
        steps=[{"name": "build", "uses": "command", "with": {"run": "make"}}],
        labels=["deploy"],
    )
    assert created["version"] == 1 and created["object"] == "pipeline"
    assert created["executor"] == {"type": "http", "url": "http://127.0.0.1:9/job"}
    assert created["steps"][0]["with"] == {"run": "make"}
    assert (await client.get(f"/v1/pipelines/{created['id']}")).json() == created
    assert (await client.get("/v1/pipelines/deploy")).json() == created

    patched = await client.patch(f"/v1/pipelines/{created['id']}", json={"max_attempts": 3})
    assert patched.status_code == 200
    assert patched.json()["id"] == created["id"] and patched.json()["version"] == 2
    assert patched.json()["max_attempts"] == 3 and patched.json()["description"] == "ship it"
    run = await make_run(client)
    assert run["pipeline_version"] == 2 and run["max_attempts"] == 3
    for required in ("executor", "steps", "max_attempts", "timeout_seconds", "labels"):
        nulled = await client.patch(f"/v1/pipelines/{created['id']}", json={required: None})
        assert "cannot be null" in assert_problem(nulled, 400, "invalid_input")["detail"]
    cleared = await client.patch(f"/v1/pipelines/{created['id']}", json={"description": None})
    assert (cleared.json()["description"], cleared.json()["version"]) == (None, 3)

    await make_pipeline(client, name="other")
    page = (await client.get("/v1/pipelines?limit=1")).json()
    assert [p["name"] for p in page["data"]] == ["other"] and page["has_more"] is True
    rest = (await client.get(f"/v1/pipelines?limit=1&cursor={page['next_cursor']}")).json()
    assert [p["name"] for p in rest["data"]] == ["deploy"] and rest["has_more"] is False

    assert (await client.delete(f"/v1/pipelines/{created['id']}")).status_code == 204
    assert_problem(await client.get(f"/v1/pipelines/{created['id']}"), 404, "pipeline_not_found")
    assert (await client.get(f"/v1/runs/{run['id']}")).json()["pipeline"] == "deploy"
    assert (await client.post("/v1/pipelines", json={"name": "deploy"})).json()["version"] == 1


async def test_duplicate_names_and_bad_definitions_are_refused(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    assert_problem(
        await client.post("/v1/pipelines", json={"name": "deploy"}), 409, "pipeline_exists"
    )
    other_ws = await client.post("/v1/pipelines", json={"name": "bad name!"})
    assert_problem(other_ws, 400, "invalid_input")
    bad_schema = await client.post(
        "/v1/pipelines", json={"name": "typed", "input_schema": {"type": "nonsense"}}
    )
    assert_problem(bad_schema, 400, "invalid_input")
    assert_problem(
        await client.post("/v1/pipelines", json={"name": "x", "executor": {"type": "ftp"}}),
        400,
        "invalid_input",
    )
    assert_problem(
        await client.patch("/v1/pipelines/pl_missing", json={}), 404, "pipeline_not_found"
    )
    assert_problem(await client.delete("/v1/pipelines/nope"), 404, "pipeline_not_found")
