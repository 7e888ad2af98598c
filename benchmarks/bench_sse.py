"""SSE fan-out: many subscribers on one run while a runner appends events.

Method:
1. Create a run and move it to ``running``.
2. Start ``procs`` subscriber processes (spawned, see ``sse_client``) holding
   ``subscribers`` connections in total; wait until every stream has sent its
   first bytes (``retry:``), so all subscribers see every published event.
3. From this process, one keep-alive connection (a runner) posts ``batch``
   log events every ``interval`` seconds on an absolute schedule for
   ``duration`` seconds of wall clock (1,000 events/s by default) and records
   the returned sequences; the achieved append rate is reported.
4. Mark the run ``completed``; each stream must then end with ``stream.end``.
5. A subscriber is *exact* when it received exactly the published number of
   ``log`` events, strictly increasing, from the first to the last published
   sequence.  Latency is receipt time minus the event's ``time`` field
   (millisecond resolution on the server, so up to +1 ms of rounding).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks import apis
from benchmarks.httpraw import RawConnection
from benchmarks.servers import Server
from benchmarks.sse_client import BUCKETS_PER_MS, subscriber_process


@dataclass
class SseResult:
    """Outcome of one fan-out run."""

    subscribers: int
    connected: int = 0
    published: int = 0
    publish_seconds: float = 0.0
    publish_p50_ms: float = 0.0
    publish_p99_ms: float = 0.0
    target_rate: float = 0.0
    exact: int = 0
    ended: int = 0
    order_errors: int = 0
    short: int = 0  # subscribers that received fewer events than published
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    client_cpu: list[float] = field(default_factory=list)
    client_lag_p99_ms: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def publish_rate(self) -> float:
        """Events per second that the server accepted during the publishing window."""
        return self.published / self.publish_seconds if self.publish_seconds > 0 else 0.0


@dataclass
class _Published:
    first: int = 0
    last: int = 0
    count: int = 0
    seconds: float = 0.0  # from the first post to the last answer
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _setup(server: Server, api: apis.Api, headers: tuple[tuple[str, str], ...]) -> str:
    conn = RawConnection(server.host, server.port, headers)
    try:
        await apis.prepare(api, conn)
        [run_id] = await apis.create_runs(api, conn, 1)
        await apis.set_status(api, conn, run_id, "running")
        return run_id
    finally:
        await conn.close()


async def _publish(
    server: Server,
    api: apis.Api,
    headers: tuple[tuple[str, str], ...],
    run_id: str,
    duration: float,
    batch: int,
    interval: float,
) -> _Published:
    """Post batches on an absolute schedule for ``duration`` seconds of wall clock.

    A late batch is sent as soon as the previous one is answered (catch-up); whatever
    was not sent when ``duration`` has elapsed is dropped, so a slow server shows up
    as a lower achieved rate rather than a longer test.
    """
    out = _Published()
    conn = RawConnection(server.host, server.port, headers)
    loop = asyncio.get_running_loop()
    start = loop.time()
    planned = int(duration / interval)
    try:
        for i in range(planned):
            delay = start + i * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if loop.time() >= start + duration:
                out.errors.append(f"publisher behind schedule: sent {i} of {planned} batches")
                break
            body = apis.events_body(batch, tag=f"batch {i}")
            sent = time.perf_counter()
            try:
                response = await apis.append_events(api, conn, run_id, body)
            except (OSError, apis.SetupError, asyncio.IncompleteReadError) as exc:
                out.errors.append(str(exc)[:200])
                if len(out.errors) > 20:
                    break
                continue
            out.latencies.append(time.perf_counter() - sent)
            answer = response.json()
            first, last = int(answer["first_sequence"]), int(answer["last_sequence"])
            out.first = out.first or first
            out.last = last
            out.count += last - first + 1
        out.seconds = loop.time() - start
        await apis.set_status(api, conn, run_id, "completed")
    finally:
        await conn.close()
    return out


def _percentile_ms(hist: dict[int, int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return 0.0
    rank, seen = q * total, 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return (bucket + 1) / BUCKETS_PER_MS  # upper edge of the bucket
    return max(hist) / BUCKETS_PER_MS


def bench_sse(
    server: Server,
    api: apis.Api,
    subscribers: int,
    procs: int,
    duration: float,
    batch: int = 10,
    interval: float = 0.01,
    headers: tuple[tuple[str, str], ...] = (),
) -> SseResult:
    """Run the fan-out benchmark against a running server (see module docstring)."""
    result = SseResult(subscribers=subscribers, target_rate=batch / interval)
    run_id = asyncio.run(_setup(server, api, headers))
    ctx = multiprocessing.get_context("spawn")
    queue: Any = ctx.Queue()
    limit = duration * 2 + 30  # seconds after readiness for all streams to end
    shares = [subscribers // procs + (1 if i < subscribers % procs else 0) for i in range(procs)]
    children = [
        ctx.Process(
            target=subscriber_process,
            args=(server.host, server.port, api.stream(run_id), n, queue, limit),
            daemon=True,
        )
        for n in shares
        if n
    ]
    for child in children:
        child.start()
    results: list[tuple[str, Any]] = []
    try:
        ready = 0
        for _ in range(2 * len(children)):  # each child sends "ready", then "result"
            if ready == len(children):
                break
            kind, value, *detail = queue.get(timeout=90)
            if kind == "ready":
                ready += 1
                result.connected += value
                result.errors.extend(detail[0])
            elif kind == "result":
                results.append((kind, value))
            else:
                raise RuntimeError(f"subscriber process failed: {value}")
        cpu0 = server.cpu_seconds()
        wall0 = time.perf_counter()
        published = asyncio.run(_publish(server, api, headers, run_id, duration, batch, interval))
        result.server_cpu = (server.cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
        result.published = published.count
        result.publish_seconds = max(published.seconds, duration)
        result.errors.extend(published.errors[:3])
        lat = sorted(published.latencies)
        if lat:
            result.publish_p50_ms = lat[len(lat) // 2] * 1e3
            result.publish_p99_ms = lat[int(len(lat) * 0.99)] * 1e3
        hist: dict[int, int] = {}
        while len(results) < len(children):
            kind, value, *_ = queue.get(timeout=limit + 60)
            results.append((kind, value))
        for kind, payload in results:
            if kind != "result":
                result.errors.append(f"subscriber process: {payload}")
                continue
            for bucket, n in payload["hist"].items():
                hist[bucket] = hist.get(bucket, 0) + n
            result.client_cpu.append(payload["cpu"])
            result.client_lag_p99_ms.append(payload["lag_p99_ms"])
            if payload["parse_errors"]:
                result.errors.append(f"{payload['parse_errors']} frame parse mismatches")
            for count, first, last, order_errors, ended in payload["subscribers"]:
                result.ended += bool(ended)
                result.order_errors += order_errors
                result.short += count < published.count
                result.exact += (
                    count == published.count
                    and first == published.first
                    and last == published.last
                    and not order_errors
                )
        result.p50_ms = _percentile_ms(hist, 0.50)
        result.p99_ms = _percentile_ms(hist, 0.99)
        result.max_ms = max(hist) / BUCKETS_PER_MS if hist else 0.0
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.terminate()
                child.join(timeout=5)
    return result
