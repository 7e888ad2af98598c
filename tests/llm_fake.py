"""A fake model server: real HTTP on loopback speaking OpenAI's chat completions and
Anthropic's messages, streamed the way the providers stream them, answering scripted replies.

It runs uvicorn in a thread of its own (with its own event loop), so sync tests, async tests
and a ``runyard serve`` subprocess can all call it::

    with FakeModelServer() as server:
        server.script(Reply(tool_calls=[("lookup", {"q": "x"})]), Reply(text="Found it."))
        ...  # OpenAI base_url: f"{server.url}/v1"; Anthropic base_url: server.url
        assert server.requests[1].body["messages"][-1]["role"] == "tool"

Replies are used first in, first out, one per request (a ``forever`` reply stays); with none
left the server answers ``Reply(text="ok")``. ``python -m tests.llm_fake --port 8901 --text
Hi`` runs one in the foreground.
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import uvicorn

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Chunk = tuple[bytes, bool]  # bytes to write, and whether they carry text

MODEL = "fake-model"
ERROR_TYPES = {  # status: (OpenAI's error type, Anthropic's)
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("invalid_request_error", "authentication_error"),
    403: ("permission_denied", "permission_error"),
    404: ("not_found", "not_found_error"),
    429: ("rate_limit_exceeded", "rate_limit_error"),
    529: ("server_error", "overloaded_error"),
}
STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


@dataclass
class Reply:
    """One scripted answer."""

    text: str = ""  # streamed in chunks of `chunk` characters
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, args)
    input_tokens: int = 10
    output_tokens: int = 5
    tokens_per_second: float | None = None  # None: as fast as possible; else paces text chunks
    chunk: int = 4
    status: int = 200  # not 200: answer this error, in the provider's JSON shape
    retry_after: float | None = None  # Retry-After on an error
    forever: bool = False  # answer every later request with this reply too
    finish: str | None = None  # "stop", "tool_calls", "length"...; None: from the reply
    error_message: str | None = None  # the error body's message; None: a stock one
    cut_after: int | None = None  # end the stream after this many text chunks, unfinished
    events: list[bytes] | None = None  # stream exactly these bytes (OpenAI format), one by one


@dataclass
class Received:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: Any  # the JSON body, None without one
    finished: bool = False  # the whole answer was written (False: the client went away)
    done: bool = False  # the server is through with the request
    text_times: list[float] = field(default_factory=list)  # time.time() of each text chunk

    @property
    def first_text_at(self) -> float | None:
        return self.text_times[0] if self.text_times else None


class FakeModelServer:
    def __init__(
        self,
        *,
        port: int = 0,
        default: Reply | None = None,
        api_key: str | None = None,
    ) -> None:
        """``default`` answers when the script is empty; with ``api_key`` set, requests that
        do not carry it (bearer or ``x-api-key``) get a 401."""
        self.port = port
        self.default = default or Reply(text="ok")
        self.api_key = api_key
        self.requests: list[Received] = []
        #: answers a request by its JSON body (None: the script answers), for concurrent
        #: callers whose order is not known
        self.responder: Callable[[Any], Reply | None] | None = None
        self.url = ""
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # -- scripting and waiting ------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    @property
    def send_times(self) -> list[float]:
        """When the first text chunk of each request went out (time.time())."""
        return [at for r in self.requests if (at := r.first_text_at) is not None]

    def wait_done(self, index: int = -1, seconds: float = 5.0) -> Received:
        """Request ``index`` once the server is through with it (polling, bounded)."""
        deadline = time.monotonic() + seconds
        while (received := self._done(index)) is None:
            assert time.monotonic() < deadline, f"request {index} not done: {self.requests}"
            time.sleep(0.01)
        return received

    async def wait_done_async(self, index: int = -1, seconds: float = 5.0) -> Received:
        """``wait_done`` for async tests, without blocking their event loop."""
        deadline = time.monotonic() + seconds
        while (received := self._done(index)) is None:
            assert time.monotonic() < deadline, f"request {index} not done: {self.requests}"
            await asyncio.sleep(0.01)
        return received

    def _done(self, index: int) -> Received | None:
        with contextlib.suppress(IndexError):
            if (received := self.requests[index]).done:
                return received
        return None

    # -- running --------------------------------------------------------------------------

    def start(self) -> Self:
        """Serve in a background thread; returns once it accepts connections."""
        self._server = self._uvicorn()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._bind()]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive(), "the fake model server did not start"
            assert time.monotonic() < deadline, "the fake model server did not start in 10 s"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def serve_forever(self) -> None:
        """Serve in this thread, until interrupted (for ``python -m tests.llm_fake``)."""
        sockets = [self._bind()]
        print(self.url, flush=True)  # already listening: early clients wait in the backlog
        self._uvicorn().run(sockets=sockets)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        self._socket = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return sock

    def _uvicorn(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            interface="asgi3",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        return uvicorn.Server(config)

    def _next_reply(self) -> Reply:
        with self._lock:
            if not self._script:
                return self.default
            reply = self._script[0]
            if not reply.forever:
                self._script.popleft()
            return reply

    # -- the ASGI app ---------------------------------------------------------------------

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        received = Received(scope["path"], headers, json.loads(raw) if raw else None)
        self.requests.append(received)
        try:
            await self._answer(scope, received, receive, send)
        finally:
            received.done = True

    async def _answer(self, scope: Scope, received: Received, receive: Receive, send: Send) -> None:
        path, headers = received.path, received.headers
        anthropic = path == "/v1/messages" or (
            path == "/v1/models" and "anthropic-version" in headers
        )
        if scope["method"] == "GET" and path == "/v1/models":
            await _json(send, received, 200, _models(anthropic))
        elif scope["method"] != "POST" or path not in ("/v1/chat/completions", "/v1/messages"):
            await _json(send, received, 404, _error(anthropic, 404, f"no route {path}"))
        elif self.api_key is not None and self.api_key not in _presented_keys(headers):
            shown = ", ".join(_presented_keys(headers))
            error = _error(anthropic, 401, f"Incorrect API key provided: {shown}")
            await _json(send, received, 401, error)
        else:
            reply = self.responder(received.body) if self.responder is not None else None
            await self._reply(anthropic, reply or self._next_reply(), received, receive, send)

    async def _reply(
        self, anthropic: bool, reply: Reply, received: Received, receive: Receive, send: Send
    ) -> None:
        body = received.body if isinstance(received.body, dict) else {}
        if reply.status != 200:
            message = reply.error_message or f"scripted error {reply.status}"
            extra = [] if reply.retry_after is None else [("retry-after", f"{reply.retry_after:g}")]
            error = _error(anthropic, reply.status, message)
            await _json(send, received, reply.status, error, extra)
        elif body.get("stream") and anthropic:
            await _stream(_anthropic_events(reply, self._ids), reply, received, receive, send)
        elif body.get("stream") and reply.events is not None:
            await _stream([(e, False) for e in reply.events], reply, received, receive, send)
        elif body.get("stream"):
            await _stream(_openai_chunks(reply, self._ids, body), reply, received, receive, send)
        elif anthropic:
            await _json(send, received, 200, _anthropic_message(reply, self._ids))
        else:
            await _json(send, received, 200, _openai_completion(reply, self._ids))


async def _stream(
    chunks: list[Chunk], reply: Reply, received: Received, receive: Receive, send: Send
) -> None:
    """Write SSE ``chunks``, pacing text ones, and stop as soon as the client goes away."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch())
    try:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        pace = 1 / reply.tokens_per_second if reply.tokens_per_second else 0.0
        texts = 0
        for number, (data, is_text) in enumerate(chunks, 1):
            if is_text and texts and pace:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gone.wait(), pace)
            await asyncio.sleep(0)  # lets the watcher notice a client that left
            if gone.is_set() or (is_text and texts == reply.cut_after):
                break
            # recorded before the write, so a client that saw the bytes sees the record
            if is_text:
                texts += 1
                received.text_times.append(time.time())
            received.finished = number == len(chunks)
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()


async def _json(
    send: Send,
    received: Received,
    status: int,
    payload: Any,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    pairs = [("content-type", "application/json"), *(headers or [])]
    raw = [(k.encode(), v.encode()) for k, v in pairs]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    received.finished = True  # before the write: a client that has the answer sees it
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def _presented_keys(headers: dict[str, str]) -> list[str]:
    keys = [headers.get("x-api-key", "")]
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        keys.append(authorization[7:])
    return [key for key in keys if key]


# -- the providers' shapes ----------------------------------------------------------------


def _pieces(text: str, size: int) -> list[str]:
    size = max(size, 1)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _finish(reply: Reply) -> str:
    return reply.finish or ("tool_calls" if reply.tool_calls else "stop")


def _error(anthropic: bool, status: int, message: str) -> dict[str, Any]:
    openai_type, anthropic_type = ERROR_TYPES.get(
        status, ("server_error", "api_error") if status >= 500 else ("invalid_request_error",) * 2
    )
    if anthropic:
        return {"type": "error", "error": {"type": anthropic_type, "message": message}}
    return {"error": {"message": message, "type": openai_type, "param": None, "code": None}}


def _models(anthropic: bool) -> dict[str, Any]:
    if anthropic:
        model = {
            "id": MODEL,
            "type": "model",
            "display_name": "Fake",
            "created_at": "2025-01-01T00:00:00Z",
        }
        return {"data": [model], "has_more": False, "first_id": MODEL, "last_id": MODEL}
    return {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "tests"}],
    }


def _openai_completion(reply: Reply, ids: Iterator[int]) -> dict[str, Any]:
    calls = [
        {
            "id": f"call_{next(ids)}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }
        for name, args in reply.tool_calls
    ]
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{next(ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply)}],
        "usage": _openai_usage(reply),
    }


def _openai_usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def _openai_chunks(reply: Reply, ids: Iterator[int], body: dict[str, Any]) -> list[Chunk]:
    """Chunks as OpenAI streams them: role first, then content or tool call fragments, the
    finish reason, the usage chunk when asked for, and ``[DONE]``."""
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": f"chatcmpl-{next(ids)}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        payload = {**base, "choices": [choice], **({"usage": None} if include_usage else {})}
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    chunks: list[Chunk] = [(chunk({"role": "assistant", "content": ""}), False)]
    chunks += [(chunk({"content": piece}), True) for piece in _pieces(reply.text, reply.chunk)]
    for index, (name, args) in enumerate(reply.tool_calls):
        start = {
            "index": index,
            "id": f"call_{next(ids)}",
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        chunks.append((chunk({"tool_calls": [start]}), False))
        for piece in _pieces(json.dumps(args), 8):
            fragment = {"index": index, "function": {"arguments": piece}}
            chunks.append((chunk({"tool_calls": [fragment]}), False))
    chunks.append((chunk({}, _finish(reply)), False))
    if include_usage:
        payload = {**base, "choices": [], "usage": _openai_usage(reply)}
        chunks.append((b"data: " + json.dumps(payload).encode() + b"\n\n", False))
    chunks.append((b"data: [DONE]\n\n", False))
    return chunks


def _anthropic_message(reply: Reply, ids: Iterator[int]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    content += [
        {"type": "tool_use", "id": f"toolu_{next(ids)}", "name": name, "input": args}
        for name, args in reply.tool_calls
    ]
    return {
        "id": f"msg_{next(ids)}",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": STOP_REASONS.get(_finish(reply), _finish(reply)),
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def _anthropic_events(reply: Reply, ids: Iterator[int]) -> list[Chunk]:
    """Events as Anthropic streams them: message_start, a ping, one content block per text
    and tool call (start, deltas, stop), message_delta with the stop reason, message_stop."""

    def event(name: str, payload: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n".encode()

    message = _anthropic_message(reply, ids)
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
    }
    chunks: list[Chunk] = [
        (event("message_start", {"message": start}), False),
        (event("ping", {}), False),
    ]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            empty: dict[str, Any] = {"type": "text", "text": ""}
            chunks.append(
                (event("content_block_start", {"index": index, "content_block": empty}), False)
            )
            for piece in _pieces(reply.text, reply.chunk):
                delta = {"index": index, "delta": {"type": "text_delta", "text": piece}}
                chunks.append((event("content_block_delta", delta), True))
        else:
            opened = {**block, "input": {}}
            chunks.append(
                (event("content_block_start", {"index": index, "content_block": opened}), False)
            )
            for piece in _pieces(json.dumps(block["input"]), 8):
                delta = {
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                }
                chunks.append((event("content_block_delta", delta), False))
        chunks.append((event("content_block_stop", {"index": index}), False))
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    usage = {"output_tokens": reply.output_tokens}
    chunks.append((event("message_delta", {"delta": stop, "usage": usage}), False))
    chunks.append((event("message_stop", {}), False))
    return chunks


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI/Anthropic model server.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--text", default="ok", help="the text of every reply")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        FakeModelServer(port=args.port, default=Reply(text=args.text)).serve_forever()


if __name__ == "__main__":
    main()
