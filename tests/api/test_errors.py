"""Every error path answers the one problem+json shape (DESIGN §3)."""

import base64

import httpx
import pytest
from fastapi import FastAPI

from tests.support import assert_problem, make_pipeline, make_run, report

pytestmark = pytest.mark.anyio


async def test_every_error_path_has_the_one_problem_shape(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    run = await make_run(client)
    await report(client, run["id"], status="running")
    await report(client, run["id"], status="completed")
    json_headers = {"content-type": "application/json"}
    cases = [
        (lambda: client.get("/v1/nothing-here"), 404, "not_found"),
        (lambda: client.put("/v1/runs"), 405, "method_not_allowed"),
        (
            lambda: client.post("/v1/runs", content=b"{", headers=json_headers),
            400,
            "malformed_json",
        ),
        (
            lambda: client.post("/v1/runs", json={"pipeline": "deploy", "bogus": 1}),
            400,
            "invalid_input",
        ),
        (lambda: client.post("/v1/runs", json={"pipeline": "unknown"}), 404, "pipeline_not_found"),
        (lambda: client.get("/v1/runs/run_0000000000none"), 404, "run_not_found"),
        (lambda: client.get("/v1/runs?cursor=%%%"), 400, "invalid_cursor"),
        (lambda: client.get("/v1/runs?limit=500"), 400, "invalid_input"),
        (lambda: client.post(f"/v1/runs/{run['id']}/start"), 409, "invalid_transition"),
        (lambda: report(client, run["id"], status="running"), 409, "invalid_transition"),
        (
            lambda: client.post(f"/v1/runner/runs/{run['id']}/events", json={"type": "log"}),
            409,
            "run_finished",
        ),
        (
            lambda: client.post(f"/v1/runner/runs/{run['id']}/events", json={"type": "run.x"}),
            400,
            "reserved_event_type",
        ),
        (
            lambda: client.post(
                f"/v1/runner/runs/{run['id']}/events",
                json={"type": "log", "data": {"x": "y" * 300_000}},
            ),
            413,
            "payload_too_large",
        ),
        (lambda: client.post("/v1/pipelines", json={"name": "deploy"}), 409, "pipeline_exists"),
        (
            lambda: client.post(
                "/v1/runs", content=b" " * (8 * 1024 * 1024 + 1), headers=json_headers
            ),
            413,
            "payload_too_large",
        ),
        (
            lambda: client.get("/v1/runs", headers={"X-Workspace-Id": "ws_nowhere"}),
            404,
            "workspace_not_found",
        ),
    ]
    for request, status, code in cases:
        body = assert_problem(await request(), status, code)
        about_fields = {"invalid_input", "reserved_event_type", "invalid_cursor"}
        assert ("errors" in body) == (code in about_fields)
    conflict = assert_problem(
        await client.post(f"/v1/runs/{run['id']}/start"), 409, "invalid_transition"
    )
    assert conflict["current_status"] == "completed"


async def test_validation_problems_list_field_errors(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/runs", json={"pipeline": 5, "tags": "x"})
    body = assert_problem(response, 400, "invalid_input")
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "pipeline"), ("body", "tags")}
    assert all(isinstance(e["msg"], str) and e["msg"] for e in body["errors"])


async def test_request_ids_are_echoed_and_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/v1/runs/run_0000000000none", headers={"X-Request-Id": "req-123"})
    assert echoed.headers["x-request-id"] == "req-123"
    assert echoed.json()["request_id"] == "req-123"
    fresh = await client.get("/health")
    assert len(fresh.headers["x-request-id"]) == 32


async def test_an_unexpected_failure_is_a_500_problem_without_internals(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode() -> None:
        raise RuntimeError("secret database password in a traceback")

    app.add_api_route("/v1/test-explode", explode)
    response = await client.get("/v1/test-explode")
    body = assert_problem(response, 500, "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "RuntimeError" in caplog.text and body["request_id"] in caplog.text


async def test_text_the_databases_cannot_store_is_refused_with_400(
    client: httpx.AsyncClient,
) -> None:
    json_headers = {"content-type": "application/json"}
    for body in (
        rb'{"name": "x", "description": "bad\ud800"}',  # a lone surrogate: not Unicode
        rb'{"name": "x", "description": "nul\u0000"}',  # NUL: PostgreSQL refuses it
        b'{"name": "x", "description": "raw\xed\xa0\x80"}',  # raw surrogate bytes
        rb'{"name": "x", "input_schema": {"\udfff": 1}}',  # in a key, nested
    ):
        response = await client.post("/v1/pipelines", content=body, headers=json_headers)
        problem = assert_problem(response, 400, "invalid_input")
        assert problem["errors"][0]["loc"] == ["body"], body
    assert_problem(await client.get("/v1/runs/run%00x"), 400, "invalid_input")
    assert_problem(await client.get("/v1/runs?pipeline=a%00"), 400, "invalid_input")
    # escapes of real characters, and text that merely shares bytes with surrogates, pass
    fine = rb'{"name": "x", "description": "caf\u00e9-\ud83d\ude80 ' + "한국".encode() + b'"}'
    created = await client.post("/v1/pipelines", content=fine, headers=json_headers)
    assert created.status_code == 201, created.text
    assert created.json()["description"] == "café-🚀 한국"


async def test_numbers_too_large_to_store_are_400_not_500(client: httpx.AsyncClient) -> None:
    huge = 10**12  # past PostgreSQL's integer and any sensible timeout
    for path, body in (
        ("/v1/pipelines", {"name": "a", "timeout_seconds": huge}),
        ("/v1/pipelines", {"name": "b", "lease_seconds": huge}),
        (
            "/v1/pipelines",
            {"name": "c", "steps": [{"name": "s", "uses": "command", "timeout_seconds": huge}]},
        ),
    ):
        assert_problem(await client.post(path, json=body), 400, "invalid_input")
    await make_pipeline(client)
    too_long = await client.post("/v1/runs", json={"pipeline": "deploy", "timeout_seconds": huge})
    assert_problem(too_long, 400, "invalid_input")
    far = await client.get(
        f"/v1/runs/{(await make_run(client))['id']}/events?after_sequence={huge**2}"
    )
    assert_problem(far, 400, "invalid_input")


async def test_cursors_deep_nesting_and_raw_registrations_are_400_not_500(
    client: httpx.AsyncClient,
) -> None:
    nul_cursor = base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", "\\u0000"]').decode()
    assert_problem(await client.get(f"/v1/runs?cursor={nul_cursor}"), 400, "invalid_cursor")
    deep = b'{"name": "x", "description": "\\u00e9", "input_schema": ' + b"[" * 100_000
    response = await client.post(
        "/v1/pipelines", content=deep, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    await make_pipeline(client)
    run = await make_run(client)
    claimed = (await client.post("/v1/runner/claim", json={})).json()
    token = {"Authorization": f"Bearer {claimed['token']}", "content-type": "text/plain"}
    path = f"/v1/runner/runs/{run['id']}/artifacts"
    for body in (
        rb'{"storage_key": "runs/x/a", "content_type": "a\u0000b"}',
        rb'{"storage_key": "runs/x/a", "path": 7}',
    ):
        assert_problem(await client.post(path, content=body, headers=token), 400, "invalid_input")
