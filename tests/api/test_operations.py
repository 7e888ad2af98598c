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
    operations = app.state.services.operations
    healthy = operations.db
    operations.db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")  # nothing listens
    try:
        response = await client.get("/health")
        fleet = await client.get("/v1/fleet-health")
    finally:
        await operations.db.dispose()
        operations.db = healthy
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["failing"] == ["database"]
    assert body["database"].startswith("down") and body["broker"] == "ok"
    assert fleet.json()["status"] == "degraded"
    assert fleet.json()["components"]["database"] == "down"


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


async def test_status_counts_runs_and_names_the_last_deploy(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    deploy = await make_run(client)
    await make_run(client)
    await client.post(f"/v1/runner/runs/{deploy['id']}/status", json={"status": "running"})
    await post_events(client, deploy["id"], [{"type": "deploy.succeeded", "data": {"env": "prod"}}])
    status = (await client.get("/v1/status")).json()
    assert status["status"] == "operational"
    assert (status["queued"], status["running"], status["blocked"]) == (1, 1, 0)
    assert status["last_deploy"]["run_id"] == deploy["id"]
    assert status["last_deploy"]["at"].endswith("Z")


async def test_fleet_health_lists_components_and_runners(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    await make_run(client)
    await client.post("/v1/runner/claim", json={"runner": {"name": "r1"}})
    health = (await client.get("/v1/fleet-health")).json()
    assert health["status"] == "ok"
    assert health["components"] == {
        "database": "ok",
        "broker": "ok",
        "blobs": "ok",
        "worker": "disabled",
    }
    assert [(r["name"], r["status"], r["current_runs"]) for r in health["runners"]] == [
        ("r1", "online", 1)
    ]


@pytest.mark.settings(metrics_require_auth=True)
async def test_metrics_can_require_a_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 200  # open mode: no key exists yet
    key = (await client.post("/v1/api-keys", json={"name": "scrape", "role": "viewer"})).json()
    assert (await client.get("/metrics")).status_code == 401
    scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {key['secret']}"})
    assert scraped.status_code == 200
    assert "runyard_runs_total" in scraped.text
    assert (await client.get("/health")).status_code == 200  # never needs auth
