"""Closed-loop HTTP load generator, meant to run in its own process.

Method: ``C`` keep-alive connections each send one request, wait for the full
response, and immediately send the next (closed loop, no pipelining), cycling
through that connection's pre-encoded request plan.  All connections are
opened first; then a warm-up period runs uncounted, followed by the measured
window of ``duration`` seconds.  A response counts as a success when it
arrives inside the window with the expected status code; anything else
(other status, reset, protocol error) is an error.  Every loop is bounded by
the window's deadline and the whole run by an overall timeout.

The process's own CPU time over the window is reported: a value near 1.0
means the client, not the server, was the bottleneck.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from benchmarks.httpraw import RawConnection

#: a header value replaced, in every request sent, by a value unique to that request
UNIQUE = b"@@unique@@"


@dataclass(frozen=True)
class RequestSpec:
    """One request of a connection's plan."""

    method: str
    path: str
    body: bytes | None = None


@dataclass(frozen=True)
class LoadSpec:
    """What to send, how hard and for how long (picklable, crosses processes)."""

    host: str
    port: int
    plans: tuple[tuple[RequestSpec, ...], ...]  # one plan per connection, cycled
    duration: float
    warmup: float
    expect_status: int
    headers: tuple[tuple[str, str], ...] = ()
    items_per_request: int = 1


@dataclass
class LoadResult:
    """Counts and latency summary of one load run."""

    connections: int
    ok: int = 0
    errors: int = 0
    elapsed: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    client_cpu: float = 0.0  # fraction of one core used by the load generator
    items_per_request: int = 1
    error_samples: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def item_rate(self) -> float:
        """Successful items (e.g. events) per second."""
        return self.rate * self.items_per_request


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty list)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def run_load(spec: LoadSpec) -> LoadResult:
    """Process entry point: run the load on a fresh (uv)loop and return the result."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional
        pass
    return asyncio.run(_run(spec))


async def _run(spec: LoadSpec) -> LoadResult:
    result = LoadResult(connections=len(spec.plans), items_per_request=spec.items_per_request)
    conns = [RawConnection(spec.host, spec.port, spec.headers) for _ in spec.plans]
    async with asyncio.timeout(30):
        await asyncio.gather(*(c.connect() for c in conns))
    plans = [
        [c.encode(r.method, r.path, r.body) for r in plan]
        for c, plan in zip(conns, spec.plans, strict=True)
    ]
    latencies: list[float] = []
    start = time.perf_counter()
    window_start = start + spec.warmup
    deadline = window_start + spec.duration
    cpu_start = time.process_time()
    try:
        async with asyncio.timeout(spec.warmup + spec.duration + 30):
            await asyncio.gather(
                *(
                    _worker(c, p, spec.expect_status, window_start, deadline, latencies, result)
                    for c, p in zip(conns, plans, strict=True)
                )
            )
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    cpu = time.process_time() - cpu_start
    wall = time.perf_counter() - start
    result.elapsed = spec.duration
    result.client_cpu = cpu / wall if wall > 0 else 0.0
    latencies.sort()
    result.p50_ms = percentile(latencies, 0.50) * 1000
    result.p99_ms = percentile(latencies, 0.99) * 1000
    result.max_ms = (latencies[-1] if latencies else 0.0) * 1000
    return result


async def _worker(
    conn: RawConnection,
    plan: list[bytes],
    expect: int,
    window_start: float,
    deadline: float,
    latencies: list[float],
    result: LoadResult,
) -> None:
    """Send requests back to back until the deadline (the only loop bound needed)."""
    clock = time.perf_counter
    i = 0
    n = len(plan)
    now = clock()
    unique = UNIQUE in plan[0]
    while now < deadline:
        raw = plan[i % n]
        i += 1
        if unique:  # a fresh Idempotency-Key per request
            raw = raw.replace(UNIQUE, b"%x-%d" % (id(conn), i))
        try:
            response = await conn.send(raw)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            done = clock()
            if window_start <= done < deadline:
                result.errors += 1
                _sample(result, f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.01)
            await conn.close()
            now = clock()
            continue
        done = clock()
        if window_start <= done < deadline:
            if response.status == expect:
                result.ok += 1
                latencies.append(done - now)
            else:
                result.errors += 1
                _sample(result, f"HTTP {response.status}: {response.body[:160]!r}")
        now = done


def _sample(result: LoadResult, message: str) -> None:
    if len(result.error_samples) < 5:
        result.error_samples.append(message)
