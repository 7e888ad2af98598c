"""The tests' fake model server (``tests/llm_fake.py``) in a process of its own.

It runs in a spawned process so that its pacing and its send timestamps do not compete for
the GIL with the orchestrator's SSE subscriber.  Every chat completion is answered with the
same streamed reply: ``tokens`` text chunks of ``TOKEN_CHARS`` characters each (token ``i``
reads ``f"{i:04d}"``, so the subscriber can check it got the right one), paced at
``tokens_per_second``.  The parent asks over a pipe for the send times (``time.time()``,
recorded just before each chunk's write) of the n-th completion request.

Pacing: the fake's own pacing sleeps ``1 / tokens_per_second`` between chunks, but the event
loop's timers have millisecond granularity (epoll), so it tops out near 750 chunks/s.  Here
the OpenAI stream is paced on an absolute schedule instead (chunk ``i`` is due at
``start + i / rate``; every chunk already due is written at once, each with its own write and
send time): 2,000 tokens/s on average, in bursts of about two chunks per millisecond tick,
as a real model server's tokens arrive.  Everything else is the fake's (``_openai_chunks``
builds the stream).
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.connection import Connection
from typing import Any

from tests import llm_fake

TOKEN_CHARS = 4
COMPLETIONS = "/v1/chat/completions"
MAX_COMMANDS = 100_000


def token_text(index: int) -> str:
    """The text of token ``index`` (0-based); ``TOKEN_CHARS`` characters."""
    return f"{index % 10_000:04d}"


def reply_text(tokens: int) -> str:
    return "".join(token_text(i) for i in range(tokens))


class PacedFakeModelServer(llm_fake.FakeModelServer):
    """The fake, with streamed OpenAI answers paced on an absolute schedule."""

    async def _reply(
        self,
        anthropic: bool,
        reply: llm_fake.Reply,
        received: llm_fake.Received,
        receive: llm_fake.Receive,
        send: llm_fake.Send,
    ) -> None:
        body = received.body if isinstance(received.body, dict) else {}
        if anthropic or reply.status != 200 or not body.get("stream"):
            await super()._reply(anthropic, reply, received, receive, send)
            return
        chunks = llm_fake._openai_chunks(reply, self._ids, body)
        await _paced(chunks, reply.tokens_per_second or 0.0, received, send)


async def _paced(
    chunks: list[llm_fake.Chunk], rate: float, received: llm_fake.Received, send: llm_fake.Send
) -> None:
    """Write ``chunks``; text chunk ``i`` not before ``start + i / rate`` (bounded by
    ``len(chunks)``; a client that went away makes ``send`` raise)."""
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    loop = asyncio.get_running_loop()
    start: float | None = None
    texts = 0
    for number, (data, is_text) in enumerate(chunks, 1):
        if is_text:
            if start is None:
                start = loop.time()
            elif rate and (delay := start + texts / rate - loop.time()) > 0:
                await asyncio.sleep(delay)
            texts += 1
            received.text_times.append(time.time())  # before the write, as the fake does
        received.finished = number == len(chunks)
        await send({"type": "http.response.body", "body": data, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def fake_model_process(conn: Connection, tokens: int, tokens_per_second: float) -> None:
    """Process entry: start the fake, send its URL, then answer commands until ``stop``.

    Commands: ``("times", n, seconds)`` → the text send times of the n-th (1-based) chat
    completion once the fake is through with it, or ``None`` after ``seconds``;
    ``("stop",)``.  Bounded by ``MAX_COMMANDS`` and by the parent closing the pipe.
    """
    reply = llm_fake.Reply(
        text=reply_text(tokens),
        chunk=TOKEN_CHARS,
        tokens_per_second=tokens_per_second,
        output_tokens=tokens,
        forever=True,
    )
    server = PacedFakeModelServer(default=reply).start()
    try:
        conn.send(server.url)
        for _ in range(MAX_COMMANDS):
            try:
                command: tuple[Any, ...] = conn.recv()
            except EOFError:
                return
            if command[0] == "stop":
                return
            _, number, seconds = command
            conn.send(_times(server, number, seconds))
    finally:
        server.stop()


def _times(server: Any, number: int, seconds: float) -> list[float] | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        completions = [r for r in list(server.requests) if r.path == COMPLETIONS]
        if len(completions) >= number and completions[number - 1].done:
            return list(completions[number - 1].text_times)
        time.sleep(0.005)
    return None
