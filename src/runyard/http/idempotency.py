"""``Idempotency-Key`` on POSTs (DESIGN §3, §15), as pure ASGI around the app.

The key is scoped to the principal (the credential, or open mode's workspace and user), the
method and the path; the body and query make the fingerprint. The first answer (any status
below 500, not a stream) is stored and replayed with ``Idempotent-Replayed: true``.
Multipart uploads are not covered (their bodies are streamed, not fingerprinted).
"""

import hashlib
import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runyard.http.errors import problem_response
from runyard.idempotency.service import IdempotencyStore, Stored

_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def _problem(scope: Scope, status: int, code: str, title: str, detail: str) -> ASGIApp:
    request_id = scope.get("state", {}).get("request_id", "")
    headers = {"Retry-After": "1"} if code == "idempotency_in_progress" else None
    return problem_response(
        request_id, status=status, code=code, title=title, detail=detail, headers=headers
    )


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, store: "StoreRef") -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = headers.get("idempotency-key")
        content_type = headers.get("content-type", "")
        if key is None or content_type.startswith("multipart/"):
            await self.app(scope, receive, send)
            return
        if not _VALID_KEY.match(key):
            await _problem(
                scope,
                400,
                "invalid_input",
                "Invalid input",
                "Idempotency-Key is 1-255 printable ASCII characters",
            )(scope, receive, send)
            return
        body, disconnected = await _read_body(receive)
        if disconnected:
            return
        principal = headers.get("authorization") or (
            f"open:{headers.get('x-workspace-id', '')}:{headers.get('x-user-id', '')}"
        )
        key_id = _sha(principal, scope["method"], scope["path"], key)
        fingerprint = _sha(scope.get("query_string", b"").decode("latin-1"), body.hex())
        store = self.store.get()
        outcome = await store.begin(key_id, fingerprint)
        if outcome.action == "mismatch":
            await _problem(
                scope,
                409,
                "idempotency_key_reused",
                "Idempotency key reused",
                "this Idempotency-Key was used with another request body",
            )(scope, receive, send)
            return
        if outcome.action == "in_progress":
            await _problem(
                scope,
                409,
                "idempotency_in_progress",
                "Request in progress",
                "a request with this Idempotency-Key is still being handled; retry shortly",
            )(scope, receive, send)
            return
        if outcome.stored is not None:
            await _replay(outcome.stored, send)
            return
        await self._run(scope, body, send, store, key_id)

    async def _run(
        self, scope: Scope, body: bytes, send: Send, store: IdempotencyStore, key_id: str
    ) -> None:
        sent_body = False
        status = 500
        kept: dict[str, str | None] = {"content_type": None, "location": None}
        chunks: list[bytes] = []
        storable = True

        async def receive_again() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        async def capture(message: Message) -> None:
            nonlocal status, storable
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = Headers(raw=message.get("headers", []))
                kept["content_type"] = response_headers.get("content-type")
                kept["location"] = response_headers.get("location")
                if (kept["content_type"] or "").startswith("text/event-stream"):
                    storable = False  # a stream is not replayable
            elif message["type"] == "http.response.body" and storable:
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_again, capture)
        except BaseException:
            await store.abandon(key_id)
            raise
        if status >= 500 or not storable:
            await store.abandon(key_id)
            return
        await store.complete(
            key_id, Stored(status, kept["content_type"], kept["location"], b"".join(chunks))
        )


class StoreRef:
    """The store, known once the app's lifespan has started its services."""

    def __init__(self) -> None:
        self.store: IdempotencyStore | None = None

    def get(self) -> IdempotencyStore:
        assert self.store is not None, "the idempotency store is set at startup"
        return self.store


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


async def _replay(stored: Stored, send: Send) -> None:
    headers = [
        (b"idempotent-replayed", b"true"),
        (b"content-length", str(len(stored.body)).encode()),
    ]
    if stored.content_type:
        headers.append((b"content-type", stored.content_type.encode("latin-1")))
    if stored.location:
        headers.append((b"location", stored.location.encode("latin-1")))
    await send({"type": "http.response.start", "status": stored.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": stored.body})


def _sha(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogateescape"))
        digest.update(b"\x00")
    return digest.hexdigest()
