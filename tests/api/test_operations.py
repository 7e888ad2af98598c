"""Health, metrics, OpenAPI and docs (DESIGN §3, §12)."""

import httpx
import pytest
from fastapi import FastAPI

from runyard.db.engine import Database
from tests.support import make_pipeline, make_run, post_events

pytestmark = pytest.mark.anyio


async def test_health_reports_each_dependency(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["version"]
    assert body["runner_mode"] == "external"  # tests run with the embedded worker off
    assert (body["database"], body["broker"], body["blobs"]) == ("ok", "ok", "ok")


async def test_health_is_503_naming_the_database_when_it_is_down(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    services = app.state.services
    healthy = services.db
    services.db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")  # nothing listens
    try:
        response = await client.get("/health")
    finally:
        await services.db.dispose()
        services.db = healthy
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["failing"] == ["database"]
    assert body["database"].startswith("down") and body["broker"] == "ok"


async def test_metrics_count_runs_events_subscribers_and_requests(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(client)
    run = await make_run(client)
    await make_run(client, start=False)
    await post_events(client, run["id"], [{"type": "log"}] * 3)
    response = await client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert 'runyard_runs_total{status="queued"} 1.0' in text
    assert 'runyard_runs_total{status="pending"} 1.0' in text
    assert "runyard_queue_depth 1.0" in text
    assert "runyard_events_appended_total 6.0" in text  # 2 + 1 from the server, 3 from the runner
    assert "runyard_sse_subscribers 0.0" in text
    route = 'method="POST",route="/v1/runs",status="201"'
    assert f"runyard_http_request_duration_seconds_count{{{route}}} 2.0" in text
    assert "runyard_run_duration_seconds" in text


async def test_openapi_docs_and_their_aliases(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert (await client.get("/api-doc/openapi.json")).json() == spec
    for page in ("/docs", "/swagger-ui/"):
        response = await client.get(page)
        assert response.status_code == 200 and "swagger" in response.text.lower()
    operations = [
        (path, method, op) for path, item in spec["paths"].items() for method, op in item.items()
    ]
    assert len(operations) >= 18
    for path, method, op in operations:
        assert op.get("summary"), f"{method} {path} has no summary"
    runs_post = spec["paths"]["/v1/runs"]["post"]
    assert {"400", "404", "409"} <= runs_post["responses"].keys()
    assert "requestBody" in spec["paths"]["/v1/runner/runs/{run_id}/events"]["post"]
