"""Agent token latency: a model's token → the session's SSE ``text.delta`` frame at a subscriber.

Method (against ``runyard serve`` with its embedded worker, which executes agent turns):
1. A spawned process runs the tests' fake OpenAI-compatible model (``fake_model.py``): every
   completion streams ``tokens`` text chunks (one chunk = one token) at ``rate`` tokens/s and
   records ``time.time()`` just before writing each chunk.
2. Over the API: a provider pointing at the fake, its model, an agent, a session.  The
   orchestrator opens the session's SSE stream (``GET .../sessions/{id}/events?stream=true``,
   an ``asyncio.Protocol`` that timestamps each read with ``time.time()``) and keeps it open.
3. ``warmup`` untimed turns, then ``turns`` timed ones, strictly one after another: post a user
   message, wait (bounded) for the turn's ``run.completed`` on the session stream, then fetch
   the fake's send times for that completion.
4. Per turn, the i-th ``text.delta`` frame of the turn's run is matched with the i-th chunk
   the fake sent (its text, ``f"{i:04d}"``, is checked): first-token latency is the frame's
   receipt minus ``text_times[0]``; per-token latency the same for every chunk; tokens/s is
   the token count over first chunk sent → last frame received; turn duration is message
   posted → ``run.completed`` received.  The event's ``"time"`` (stamped when the server
   writes the batch; millisecond resolution, taken as the middle of its millisecond) splits
   each latency into model → write and write → subscriber.

``time.time()`` is one clock for all processes on this machine.  Only loopback traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from benchmarks.fake_model import fake_model_process, token_text
from benchmarks.httpraw import RawConnection, Response
from benchmarks.servers import Server
from benchmarks.sse_client import Shared, Subscriber

Headers = tuple[tuple[str, str], ...]
TERMINAL = {"run.completed", "run.failed", "run.cancelled"}
TURN_TIMEOUT = 60.0


@dataclass
class AgentsResult:
    """Per-token numbers in ms (all timed turns together) and per-turn figures."""

    turns: int
    tokens: int
    rate: float
    ok_turns: int = 0
    first_ms: list[float] = field(default_factory=list)  # one per turn
    token_ms: list[float] = field(default_factory=list)  # every token of every turn
    first_write_ms: list[float] = field(default_factory=list)  # model -> event time
    token_write_ms: list[float] = field(default_factory=list)
    delivered_rates: list[float] = field(default_factory=list)  # tokens/s end to end
    sent_rates: list[float] = field(default_factory=list)  # the fake's own pace
    durations_ms: list[float] = field(default_factory=list)  # posted -> run.completed
    to_first_ms: list[float] = field(default_factory=list)  # posted -> first token received
    reads_per_turn: list[int] = field(default_factory=list)  # socket reads with text.delta
    #: first token received - the stream's previous read (and that read's last event type)
    gaps_before_first: list[tuple[float, str]] = field(default_factory=list)
    server_cpu: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Turn:
    deltas: list[tuple[str, float, float]] = field(default_factory=list)  # text, got, written
    end: tuple[str, float] | None = None
    reads: set[float] = field(default_factory=set)
    #: the read before the one with the first token: its time and its last event type
    before_first: tuple[float, str] | None = None


class TurnSubscriber(Subscriber):
    """A session stream subscriber that keeps every ``text.delta`` and terminal event per run.

    Reuses ``sse_client.Subscriber``'s HTTP and de-chunking; ``now`` is the receipt time of
    the socket read that completed the frames."""

    def __init__(self, request: bytes) -> None:
        super().__init__(Shared(), request)
        self.runs: defaultdict[str, _Turn] = defaultdict(_Turn)
        self.changed = asyncio.Event()
        self.previous_read: tuple[float, str] = (0.0, "")

    def _frames(self, frames: bytes, now: float) -> None:
        previous, last_type = self.previous_read, ""
        for block in frames.split(b"\n\n"):
            head, sep, data = block.partition(b"\ndata: ")
            if not sep:
                continue
            event = head.rpartition(b"event: ")[2].decode()
            last_type = event
            if event == "text.delta":
                env = json.loads(data)
                turn = self.runs[env["run_id"]]
                if not turn.deltas:
                    turn.before_first = previous
                turn.deltas.append((env["data"]["delta"], now, _event_time(env["time"])))
                turn.reads.add(now)
            elif event in TERMINAL:
                env = json.loads(data)
                self.runs[env["run_id"]].end = (event, now)
                self.changed.set()
        if last_type:
            self.previous_read = (now, last_type)


def _event_time(raw: str) -> float:
    """The envelope's millisecond timestamp, as the middle of its millisecond."""
    return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() + 0.0005


async def _expect(conn: RawConnection, method: str, path: str, body: Any, status: int) -> Any:
    response: Response = await conn.request(method, path, body)
    if response.status != status:
        raise RuntimeError(f"{method} {path}: HTTP {response.status} {response.body[:300]!r}")
    return response.json()


async def _setup(conn: RawConnection, model_url: str) -> tuple[str, str]:
    """Provider → model → agent → session; (agent id, session id)."""
    provider = await _expect(
        conn,
        "POST",
        "/v1/llm-providers",
        {
            "name": "bench-fake",
            "provider_type": "openai_compatible",
            "base_url": f"{model_url}/v1",
            "api_key": "sk-bench",
            "is_default": True,
        },
        201,
    )
    await _expect(
        conn,
        "POST",
        f"/v1/llm-providers/{provider['id']}/models",
        {
            "model_id": "fake-model",
            "capabilities": ["tools", "streaming"],
            "context_window": 1_000_000,
            "is_default": True,
        },
        201,
    )
    agent = await _expect(
        conn, "POST", "/v1/agents", {"name": "bench", "system_prompt": "Be quick."}, 201
    )
    session = await _expect(conn, "POST", f"/v1/agents/{agent['id']}/sessions", {}, 201)
    return agent["id"], session["id"]


def _score(
    result: AgentsResult, turn: _Turn, sent: list[float] | None, posted: float, number: int
) -> None:
    """Add one timed turn's numbers, or the reason it does not count."""
    if turn.end is None or turn.end[0] != "run.completed":
        result.errors.append(f"turn {number}: ended {turn.end[0] if turn.end else 'never'}")
        return
    if sent is None or len(sent) != result.tokens or len(turn.deltas) != result.tokens:
        count = "?" if sent is None else len(sent)
        result.errors.append(f"turn {number}: {len(turn.deltas)} frames, fake sent {count}")
        return
    texts = [text for text, _, _ in turn.deltas]
    if texts != [token_text(i) for i in range(result.tokens)]:
        result.errors.append(f"turn {number}: token texts out of order")
        return
    result.ok_turns += 1
    got = [at for _, at, _ in turn.deltas]
    written = [at for _, _, at in turn.deltas]
    result.first_ms.append((got[0] - sent[0]) * 1e3)
    result.first_write_ms.append((written[0] - sent[0]) * 1e3)
    result.token_ms.extend((g - s) * 1e3 for g, s in zip(got, sent, strict=True))
    result.token_write_ms.extend((w - s) * 1e3 for w, s in zip(written, sent, strict=True))
    result.delivered_rates.append(result.tokens / max(got[-1] - sent[0], 1e-9))
    result.sent_rates.append((result.tokens - 1) / max(sent[-1] - sent[0], 1e-9))
    result.durations_ms.append((turn.end[1] - posted) * 1e3)
    result.to_first_ms.append((got[0] - posted) * 1e3)
    result.reads_per_turn.append(len(turn.reads))
    if turn.before_first is not None:
        at, event = turn.before_first
        result.gaps_before_first.append(((got[0] - at) * 1e3, event))


def _ask_times(conn: Any, number: int) -> list[float] | None:
    conn.send(("times", number, 10.0))
    if not conn.poll(15.0):
        return None
    times: list[float] | None = conn.recv()
    return times


async def _run_turns(
    server: Server, headers: Headers, model_url: str, fake: Any, result: AgentsResult, warmup: int
) -> None:
    conn = RawConnection(server.host, server.port, headers)
    loop = asyncio.get_running_loop()
    transport: asyncio.BaseTransport | None = None
    try:
        agent_id, session_id = await _setup(conn, model_url)
        path = f"/v1/agents/{agent_id}/sessions/{session_id}"
        lines = [f"GET {path}/events?stream=true HTTP/1.1", f"Host: {server.host}:{server.port}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append("Accept: text/event-stream")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        transport, sub = await loop.create_connection(
            lambda: TurnSubscriber(request), server.host, server.port
        )
        await asyncio.wait_for(sub.ready, 10)
        cpu0 = wall0 = 0.0
        for number in range(1, warmup + result.turns + 1):
            if number == warmup + 1:
                cpu0, wall0 = server.cpu_seconds(), time.perf_counter()
            posted = time.time()
            body = {"role": "user", "content": f"turn {number}"}
            run_id = (await _expect(conn, "POST", f"{path}/messages", body, 201))["run_id"]
            turn = sub.runs[run_id]
            try:
                async with asyncio.timeout(TURN_TIMEOUT):
                    while turn.end is None:
                        sub.changed.clear()
                        await sub.changed.wait()
            except TimeoutError:
                result.errors.append(f"turn {number}: no terminal event in {TURN_TIMEOUT:.0f} s")
                break
            sent = await asyncio.to_thread(_ask_times, fake, number)
            if number > warmup:
                _score(result, turn, sent, posted, number)
        if wall0:
            result.server_cpu = (server.cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
    finally:
        if transport is not None:
            transport.close()
        await conn.close()


def bench_agents(
    server: Server,
    headers: Headers = (),
    turns: int = 30,
    tokens: int = 1000,
    rate: float = 2000.0,
    warmup: int = 2,
) -> AgentsResult:
    """Run the benchmark against a running server with its embedded worker (see module doc)."""
    result = AgentsResult(turns=turns, tokens=tokens, rate=rate)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    fake = ctx.Process(target=fake_model_process, args=(child, tokens, rate), daemon=True)
    fake.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the fake model server did not start in 30 s")
        model_url: str = parent.recv()
        asyncio.run(_run_turns(server, headers, model_url, parent, result, warmup))
    finally:
        with contextlib.suppress(OSError):
            parent.send(("stop",))
        fake.join(timeout=10)
        if fake.is_alive():
            fake.terminate()
            fake.join(timeout=5)
    return result
