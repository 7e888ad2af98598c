"""``create_app(settings)``: the only way to get a Runyard ASGI app."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from runyard import __version__
from runyard.agents.router import router as agents_router
from runyard.artifacts.router import router as artifacts_router
from runyard.artifacts.router import runner_router as artifact_uploads_router
from runyard.audit.router import router as audit_router
from runyard.auth.router import router as keys_router
from runyard.auth.router import sessions_router
from runyard.builds.router import pipeline_builds as pipeline_builds_router
from runyard.builds.router import router as builds_router
from runyard.container import Services
from runyard.events.router import router as events_router
from runyard.extraction.router import router as extraction_router
from runyard.http.errors import install_error_handlers
from runyard.http.idempotency import IdempotencyMiddleware, Ports
from runyard.http.json_text import JsonTextMiddleware
from runyard.http.middleware import RequestContextMiddleware
from runyard.http.responses import json_response
from runyard.llm.router import router as llm_router
from runyard.observability.metrics import Metrics
from runyard.observability.router import router as operations_router
from runyard.pipelines.router import router as pipelines_router
from runyard.runners.router import fleet as fleet_router
from runyard.runners.router import router as runner_router
from runyard.runs.router import router as runs_router
from runyard.settings import Settings
from runyard.webhooks.router import router as webhooks_router
from runyard.workspaces.router import router as workspaces_router


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await Services.start(settings, metrics)
        app.state.services = services
        idempotency.store = services.idempotency
        idempotency.services = services
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(
        title="Runyard",
        version=__version__,
        summary="A control plane for runs: durable, gap-free event streams over SSE.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    idempotency = Ports(max_body=settings.max_request_bytes)
    app.add_middleware(JsonTextMiddleware, max_body=settings.max_request_bytes)
    app.add_middleware(IdempotencyMiddleware, ports=idempotency)
    app.add_middleware(  # added last: the outermost
        RequestContextMiddleware,
        metrics=metrics,
        max_request_bytes=settings.max_request_bytes,
        max_upload_bytes=settings.artifact_max_bytes,
    )
    install_error_handlers(app)
    for router in (
        runs_router,
        events_router,
        runner_router,
        fleet_router,
        artifacts_router,
        artifact_uploads_router,
        pipelines_router,
        pipeline_builds_router,
        builds_router,
        operations_router,
        keys_router,
        sessions_router,
        audit_router,
        agents_router,
        webhooks_router,
        workspaces_router,
        llm_router,
        extraction_router,
    ):
        app.include_router(router)

    @app.get("/api-doc/openapi.json", include_in_schema=False)
    async def openapi_alias() -> Response:
        return json_response(app.openapi())

    @app.get("/swagger-ui/", include_in_schema=False)
    async def swagger_alias(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Runyard API")

    return app
