"""Runs completed per second by several pull-runner processes while a producer feeds the queue.

Method:
1. Create the benchmark's own pipeline (``bench-runners``, ``worker`` executor).
2. Spawn ``procs`` runner processes (``runner_client``), each with one keep-alive connection
   looping claim (``wait_seconds: 1``) -> ``status: completed``; wait until all are ready.
3. From one shared start time, the producer (this process, ``feeders`` keep-alive
   connections) creates runs whenever fewer than ``depth`` are queued (created minus
   claimed, the runners count claims in a shared counter), so runners never wait for work
   unless the server cannot create runs fast enough.
4. After ``warmup`` s, completions are counted for ``duration`` s: a completion is a 200 to
   ``status: completed`` inside the window.  Errors are counted over the whole run.
5. Runner processes report their CPU (fraction of a core) and cycle latency (claim sent ->
   completion answered); the producer's CPU is this process's CPU over the run.

Runs still queued at the end (about ``depth``) are left queued in their own pipeline.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks import apis
from benchmarks.httpraw import RawConnection, json_body
from benchmarks.loadgen import percentile
from benchmarks.runner_client import NET_ERRORS, RunnerSpec, runner_process
from benchmarks.servers import Server

PIPELINE = "bench-runners"
MAX_LOOPS = 10_000_000  # a count bound on top of the deadline
Headers = tuple[tuple[str, str], ...]


@dataclass
class RunnersResult:
    """Totals over all runner processes plus the producer's view."""

    runners: int
    seconds: float
    completed: int = 0
    completed_total: int = 0
    empty_claims: int = 0
    errors: int = 0
    created: int = 0
    cycle_p50_ms: float = 0.0
    cycle_p99_ms: float = 0.0
    depth_mean: float = 0.0
    depth_min: int = 0
    runner_cpu: list[float] = field(default_factory=list)
    producer_cpu: float = 0.0
    server_cpu: float = 0.0
    error_samples: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Completed runs per second inside the window."""
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 3:
            self.error_samples.append(message[:200])


async def _feed(
    conn: RawConnection, raw: bytes, depth: int, end: float, claimed: Any, out: RunnersResult
) -> None:
    """Create runs while fewer than ``depth`` are queued; ``out.created`` counts in-flight ones."""
    for _ in range(MAX_LOOPS):
        if time.monotonic() >= end:
            return
        if out.created - claimed.value >= depth:
            await asyncio.sleep(0.002)
            continue
        out.created += 1
        try:
            response = await conn.send(raw)
        except NET_ERRORS as exc:
            out.created -= 1
            out.error(f"create: {type(exc).__name__}: {exc}")
            await conn.close()
            await asyncio.sleep(0.01)
            continue
        if response.status != 201:
            out.created -= 1
            out.error(f"create: HTTP {response.status}: {response.body[:120]!r}")


async def _sample_depth(window: tuple[float, float], claimed: Any, out: RunnersResult) -> None:
    """Queue depth (created - claimed) every 50 ms inside the window."""
    samples: list[int] = []
    await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
    for _ in range(MAX_LOOPS):
        if time.monotonic() >= window[1]:
            break
        samples.append(out.created - claimed.value)
        await asyncio.sleep(0.05)
    if samples:
        out.depth_mean = sum(samples) / len(samples)
        out.depth_min = min(samples)


async def _produce(
    server: Server,
    headers: Headers,
    pipeline: str,
    start: float,
    window: tuple[float, float],
    depth: int,
    feeders: int,
    claimed: Any,
    out: RunnersResult,
) -> None:
    conns = [RawConnection(server.host, server.port, headers) for _ in range(feeders)]
    body = json_body({"pipeline": pipeline, "input": {"n": 1}})
    raw = conns[0].encode("POST", apis.RUNYARD.create_path, body)
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    try:
        async with asyncio.timeout(window[1] - start + 30):
            await asyncio.gather(
                _sample_depth(window, claimed, out),
                *(_feed(c, raw, depth, window[1], claimed, out) for c in conns),
            )
    finally:
        await asyncio.gather(*(c.close() for c in conns))


async def _setup(server: Server, headers: Headers, pipeline: str) -> None:
    conn = RawConnection(server.host, server.port, headers)
    try:
        await apis.prepare(apis.RUNYARD, conn, pipeline)
    finally:
        await conn.close()


def bench_runners(
    server: Server,
    headers: Headers,
    procs: int,
    duration: float,
    warmup: float,
    depth: int = 50,
    feeders: int = 2,
    wait_seconds: float = 1.0,
    process: Callable[..., None] = runner_process,
    pipeline: str = PIPELINE,
) -> RunnersResult:
    """Run the runner-throughput benchmark against a running server (see module docstring).
    ``process`` is the runner processes' entry (the raw protocol loop, or the SDK's)."""
    out = RunnersResult(runners=procs, seconds=duration)
    asyncio.run(_setup(server, headers, pipeline))
    ctx = multiprocessing.get_context("spawn")
    queue: Any = ctx.Queue()
    go, start_at, claimed = ctx.Event(), ctx.Value("d", 0.0), ctx.Value("q", 0)
    children = [
        ctx.Process(
            target=process,
            args=(
                RunnerSpec(
                    server.host,
                    server.port,
                    headers,
                    pipeline,
                    f"bench-runner-{i}",
                    wait_seconds,
                    warmup,
                    duration,
                ),
                go,
                start_at,
                claimed,
                queue,
            ),
            daemon=True,
        )
        for i in range(procs)
    ]
    for child in children:
        child.start()
    stats: list[dict[str, Any]] = []
    try:
        for _ in range(procs):
            kind, value = queue.get(timeout=60)
            if kind != "ready":
                raise RuntimeError(f"runner process failed: {value}")
        start = time.monotonic() + 0.05
        start_at.value = start
        go.set()
        window = (start + warmup, start + warmup + duration)
        cpu0, own0, wall0 = server.cpu_seconds(), time.process_time(), time.perf_counter()
        asyncio.run(
            _produce(server, headers, pipeline, start, window, depth, feeders, claimed, out)
        )
        for _ in range(procs):
            kind, value = queue.get(timeout=wait_seconds + 60)
            if kind != "result":
                out.error(f"runner process: {value}")
                continue
            stats.append(value)
        wall = time.perf_counter() - wall0
        out.server_cpu = (server.cpu_seconds() - cpu0) / wall
        out.producer_cpu = (time.process_time() - own0) / wall
    finally:
        go.set()  # never leave a child waiting for the signal
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.terminate()
                child.join(timeout=5)
    cycles: list[float] = []
    for item in stats:
        out.completed += item["completed"]
        out.completed_total += item["completed_total"]
        out.empty_claims += item["empty_claims"]
        out.errors += item["errors"]
        out.error_samples.extend(item["error_samples"][: max(0, 3 - len(out.error_samples))])
        out.runner_cpu.append(item["cpu"])
        cycles.extend(item["cycles_ms"])
    cycles.sort()
    out.cycle_p50_ms, out.cycle_p99_ms = percentile(cycles, 0.5), percentile(cycles, 0.99)
    return out
