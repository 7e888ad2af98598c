"""Request ids, latency metrics, and the last-resort 500 (pure ASGI: streaming stays intact)."""

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runyard.http.errors import problem_response
from runyard.observability.metrics import Metrics

log = logging.getLogger("runyard.http")
_VALID_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


class RequestContextMiddleware:
    def __init__(
        self, app: ASGIApp, metrics: Metrics, max_request_bytes: int, max_upload_bytes: int
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_request_bytes = max_request_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        declared_length = 0
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _VALID_REQUEST_ID.match(candidate):
                    request_id = candidate
            elif name == b"content-length" and value.isdigit():
                declared_length = int(value)
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        response_started = False

        cut_off = False  # the body went past the limit and the 413 has been sent

        async def send_with_context(message: Message) -> None:
            nonlocal response_started
            if cut_off and message.get("type", "").startswith("http.response"):
                return  # the app answers a request we already refused
            if message["type"] == "http.response.start":
                response_started = True
                MutableHeaders(scope=message).append("x-request-id", request_id)
                route = scope.get("route")
                self.metrics.http_duration.labels(
                    method=scope["method"],
                    route=getattr(route, "path", "unmatched"),
                    status=str(message["status"]),
                ).observe(time.perf_counter() - started)
            await send(message)

        async def too_large(limit: int) -> None:
            response = problem_response(
                request_id,
                status=413,
                code="payload_too_large",
                title="Payload too large",
                detail=f"the request body exceeds {limit} bytes",
            )
            await response(scope, receive, send_with_context)

        limit = (  # artifact uploads stream to the blob store, which enforces their own limit
            self.max_upload_bytes + 64 * 1024
            if scope["path"].endswith("/artifacts")
            else self.max_request_bytes
        )
        if declared_length > limit:
            await too_large(limit)
            return
        received = 0

        async def receive_within_limit() -> Message:
            # a body without Content-Length (chunked) is counted as it arrives; past the limit
            # the client gets its 413 here and the app sees the request end
            nonlocal received, cut_off
            message = await receive()
            if message["type"] == "http.request" and not cut_off:
                received += len(message.get("body", b""))
                if received > limit and not response_started:
                    await too_large(limit)
                    cut_off = True
                    return {"type": "http.disconnect"}
            return message

        try:
            await self.app(scope, receive_within_limit, send_with_context)
        except Exception:
            if cut_off:
                return  # the app stumbled over the body it was refused; the 413 is sent
            log.exception("unhandled error (request %s)", request_id)
            if response_started:
                raise
            response = problem_response(
                request_id,
                status=500,
                code="internal_error",
                title="Internal server error",
                detail="the server failed to handle this request; quote the request_id",
            )
            await response(scope, receive, send_with_context)
