"""``Idempotency-Key`` on POSTs (DESIGN §3, §15), as pure ASGI around the app.

A key is scoped to the *authenticated* principal (an API key's id, which a dashboard session
shares with its key; a runner token's run and lease; or open mode's workspace and user —
resolved here, before anything is replayed, so a request that would fail authentication
never gets a stored answer), the method and the path; the body and query make the
fingerprint. The first final answer (below 500, and not 401/402/403/408/429, which may
change) is stored and replayed with ``Idempotent-Replayed: true``.

Not covered (the header is ignored): streams (``"stream": true`` or ``Accept:
text/event-stream``), uploads (multipart, ``/artifacts``), bodies over the request limit,
answers that carry secrets (API keys, webhook secrets, claims and runner tokens,
sessions), which are never stored, and requests that carry one (an LLM provider's API key),
whose body digest would let anyone who reads the table test guesses of the key. A provider's
unique name keeps a retried create from making a second one (409 ``llm_provider_exists``).
"""

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runyard.auth.sessions import COOKIE_NAME, CSRF_HEADER
from runyard.http.errors import problem_response
from runyard.idempotency.service import IdempotencyStore, Stored
from runyard.problems import DomainError

_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_NOT_COVERED = re.compile(
    r"^/v1/(api-keys|auth/\w+|workspaces|webhooks|llm-providers|runner/claim"
    r"|runner/runs/[^/]+/(token|artifacts))$"
)
_NOT_FINAL = frozenset({401, 402, 403, 408, 429})


@dataclass
class Ports:
    """What the middleware needs from the running services (set when the app starts)."""

    store: IdempotencyStore | None = None
    services: Any = None
    max_body: int = 8 * 1024 * 1024


def _problem(scope: Scope, status: int, code: str, title: str, detail: str) -> ASGIApp:
    request_id = scope.get("state", {}).get("request_id", "")
    headers = {"Retry-After": "1"} if code == "idempotency_in_progress" else None
    return problem_response(
        request_id, status=status, code=code, title=title, detail=detail, headers=headers
    )


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, ports: Ports) -> None:
        self.app = app
        self.ports = ports

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = headers.get("idempotency-key")
        if key is None or not self._covered(scope, headers):
            await self.app(scope, receive, send)
            return
        if not _VALID_KEY.match(key):
            await _problem(
                scope, 400, "invalid_input", "Invalid input",
                "Idempotency-Key is 1-255 printable ASCII characters",
            )(scope, receive, send)  # fmt: skip
            return
        principal = await self._principal(scope, headers)
        if principal is None:  # the app answers 401/403 itself; nothing is stored or replayed
            await self.app(scope, receive, send)
            return
        body, digest, disconnected = await _read_body(receive)
        if disconnected:
            return
        if _wants_stream(body):
            await self.app(scope, _replaying(body, receive), send)
            return
        store = self.ports.store
        assert store is not None, "set at startup"
        key_id = _sha(principal, scope["method"], scope["path"], key)
        fingerprint = _sha(scope.get("query_string", b"").decode("latin-1"), digest)
        outcome = await store.begin(key_id, fingerprint)
        if outcome.action == "mismatch":
            await _problem(
                scope, 409, "idempotency_key_reused", "Idempotency key reused",
                "this Idempotency-Key was used with another request body",
            )(scope, receive, send)  # fmt: skip
            return
        if outcome.action == "in_progress":
            await _problem(
                scope, 409, "idempotency_in_progress", "Request in progress",
                "a request with this Idempotency-Key is still being handled; retry shortly",
            )(scope, receive, send)  # fmt: skip
            return
        if outcome.stored is not None:
            await _replay(outcome.stored, send)
            return
        await self._run(scope, _replaying(body, receive), send, store, key_id, outcome.token)

    def _covered(self, scope: Scope, headers: Headers) -> bool:
        if _NOT_COVERED.match(scope["path"]):
            return False
        if headers.get("content-type", "").startswith("multipart/"):
            return False
        if "text/event-stream" in headers.get("accept", ""):
            return False
        length = headers.get("content-length")
        return not (length and length.isdigit() and int(length) > self.ports.max_body)

    async def _principal(self, scope: Scope, headers: Headers) -> str | None:
        """Who is asking, authenticated; None when the request would not pass authentication
        (then no answer is replayed to it or stored for it)."""
        services = self.ports.services
        authorization = headers.get("authorization")
        try:
            if authorization is None:
                if not await services.keys.open_mode():
                    return await self._session_principal(headers)
                workspace = headers.get("x-workspace-id") or _query(scope, "workspace_id")
                user = headers.get("x-user-id") or headers.get("x-actor") or ""
                return f"open:{workspace}:{user}"
            scheme, _, credential = authorization.partition(" ")
            credential = credential.strip()
            if scheme.lower() != "bearer" or not credential:
                return None
            if credential.startswith("ryk_"):
                row = await services.keys.authenticate(credential)
                actor = _impersonated(headers) if row["can_impersonate"] else ""
                return f"key:{row['id']}:{actor}"
            claims = services.tokens.verify(credential)
            return f"run:{claims['sub']}:{claims.get('lease')}"
        except DomainError:
            return None

    async def _session_principal(self, headers: Headers) -> str | None:
        """A dashboard session acts as its key, so it shares the key's scope; without the
        session's CSRF token the app answers 403, and nothing is stored or replayed."""
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE_NAME)
        if cookie is None:
            return None
        session = await self.ports.services.sessions.authenticate(cookie)
        if not session.csrf_ok(headers.get(CSRF_HEADER)):
            return None
        actor = _impersonated(headers) if session.can_impersonate else ""
        return f"key:{session.key_id}:{actor}"

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        store: IdempotencyStore,
        key_id: str,
        token: str,
    ) -> None:
        status = 500
        kept: dict[str, str | None] = {"content_type": None, "location": None}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = Headers(raw=message.get("headers", []))
                kept["content_type"] = response_headers.get("content-type")
                kept["location"] = response_headers.get("location")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            await store.abandon(key_id, token)
            raise
        final = status < 500 and status not in _NOT_FINAL
        if not final or (kept["content_type"] or "").startswith("text/event-stream"):
            await store.abandon(key_id, token)
            return
        stored = Stored(status, kept["content_type"], kept["location"], b"".join(chunks))
        await store.complete(key_id, token, stored)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The app's ``receive``: the buffered body once, then the client's own messages (so a
    disconnect is still seen by long-polls and streams)."""
    delivered = False

    async def receive_again() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


def _wants_stream(body: bytes) -> bool:
    """A create-and-stream request (``"stream": true``): its answer cannot be replayed."""
    if b'"stream"' not in body:
        return False
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(document, dict) and document.get("stream") is True


def _query(scope: Scope, name: str) -> str:
    query: bytes = scope.get("query_string", b"")
    for part in query.decode("latin-1").split("&"):
        key, _, value = part.partition("=")
        if key == name:
            return value
    return ""


async def _read_body(receive: Receive) -> tuple[bytes, str, bool]:
    """The body, its sha256, and whether the client went away instead."""
    chunks: list[bytes] = []
    digest = hashlib.sha256()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", "", True
        chunk = message.get("body", b"")
        digest.update(chunk)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), digest.hexdigest(), False


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


def _impersonated(headers: Headers) -> str:
    """The actor a key that may impersonate acts as (as the caller's dependency reads it)."""
    return headers.get("x-user-id") or headers.get("x-actor") or ""
