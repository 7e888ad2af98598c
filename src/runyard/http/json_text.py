"""Refusing JSON text the databases cannot store (400 instead of a 500 at the database).

JSON may escape any UTF-16 code unit, so a body can carry lone surrogates (``"\\ud800"``),
which are not Unicode and cannot be encoded for SQLite, and NUL (``"\\u0000"``), which
PostgreSQL's ``text`` and ``jsonb`` reject. Bodies without ``\\u`` escapes or raw surrogate
bytes — nearly all of them — are passed on after one scan for those two byte patterns.
"""

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runyard.http.errors import problem_response

_WITHOUT_BODY = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def unstorable_text(body: bytes) -> str | None:
    """Why ``body`` holds text the databases cannot store, or None."""
    if b"\\u" not in body and b"\xed" not in body:
        return None
    try:
        value = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return "the body is not valid UTF-8"
    except (ValueError, RecursionError):
        return None  # not JSON (or nested too deep to walk): the route answers that itself
    return _find(value)


def _find(value: Any) -> str | None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "strings may not contain NUL (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "strings may not contain unpaired surrogates (\\ud800-\\udfff)"
    return None


class JsonTextMiddleware:
    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"%00" in scope.get("raw_path", b"") or b"%00" in scope.get("query_string", b""):
            await _refuse(scope, receive, send, "the URL may not contain NUL (%00)", "url")
            return
        if scope["method"] in _WITHOUT_BODY or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:  # bounded: stops past max_body, where the route answers 413
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if not message.get("more_body") or size > self.max_body:
                break
        if size <= self.max_body:
            problem = unstorable_text(b"".join(m.get("body", b"") for m in messages))
            if problem is not None:
                await _refuse(scope, receive, send, problem, "body")
                return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, problem: str, where: str) -> None:
    response = problem_response(
        str(scope.get("state", {}).get("request_id", "")),
        status=400,
        code="invalid_input",
        title="Invalid input",
        detail=problem,
        errors=[{"loc": [where], "msg": problem}],
    )
    await response(scope, receive, send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return b"json" in value.lower()
    return False
