"""Queued -> claimed latency: how fast a long-polling runner gets a freshly queued run.

Method (sequential, in the orchestrating process, two keep-alive connections):
1. The runner connection sends ``POST /v1/runner/claim`` for the benchmark's own pipeline
   (``bench-claim``: no run of another benchmark can be waiting there) with
   ``wait_seconds: 10``.
2. After ``gap`` seconds (20 ms, so the claim is parked on the server's wake-up), the
   producer connection sends ``POST /v1/runs``.  The clock starts when that request is
   written.
3. The clock stops when the claim's response has been read.  The latency is from the create
   request *sent* to the claim response *received*; the note also gives it from the create
   response *received* (it can be negative: the claim may be answered first).
4. The claimed run must be the created one; the runner then completes it (bearer token) so
   nothing piles up.  A claim answered before the create was sent, a 204, a different run
   or a failed completion is an error.

``samples`` timed cycles follow ``warmup`` untimed ones; each cycle is bounded by a 15 s
timeout and the whole loop by ``limit`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from benchmarks import apis
from benchmarks.httpraw import RawConnection, Response, json_body
from benchmarks.loadgen import percentile
from benchmarks.runner_client import CLAIM_PATH, NET_ERRORS, claim_body, status_request
from benchmarks.servers import Server

PIPELINE = "bench-claim"
Headers = tuple[tuple[str, str], ...]


@dataclass
class ClaimResult:
    """Latency percentiles of the timed cycles (ms) and what went wrong."""

    samples: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    after_create_p50_ms: float = 0.0  # from the create *response*
    after_create_p99_ms: float = 0.0
    gap_ms: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)


async def _timed(conn: RawConnection, raw: bytes) -> tuple[Response, float]:
    response = await conn.send(raw)
    return response, time.perf_counter()


class _Cycle:
    """One claim/create/complete round trip; raises ``RuntimeError`` with a reason."""

    def __init__(self, server: Server, headers: Headers) -> None:
        self.server = server
        self.headers = headers
        self.runner = RawConnection(server.host, server.port, headers)
        self.producer = RawConnection(server.host, server.port, headers)
        self.claim_raw = self.runner.encode("POST", CLAIM_PATH, claim_body(PIPELINE, "r1", 10))
        create = json_body({"pipeline": PIPELINE, "input": {"n": 1}})
        self.create_raw = self.producer.encode("POST", apis.RUNYARD.create_path, create)

    async def close(self) -> None:
        await self.runner.close()
        await self.producer.close()

    async def run(self, gap: float) -> tuple[float, float]:
        """(create sent -> claim received, create received -> claim received) in seconds."""
        claim = asyncio.create_task(_timed(self.runner, self.claim_raw))
        try:
            await asyncio.sleep(gap)
            if claim.done():
                response, _ = claim.result()
                raise RuntimeError(f"claim answered before the run was created: {response.status}")
            sent = time.perf_counter()
            created = await self.producer.send(self.create_raw)
            created_at = time.perf_counter()
            claimed, claimed_at = await claim
        finally:
            if not claim.done():
                claim.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await claim
        if created.status != 201:
            raise RuntimeError(f"create: HTTP {created.status}: {created.body[:120]!r}")
        if claimed.status != 200:
            raise RuntimeError(f"claim: HTTP {claimed.status}: {claimed.body[:120]!r}")
        answer = claimed.json()
        run_id = str(answer["run"]["id"])
        if run_id != created.json()["id"]:
            raise RuntimeError(f"claimed {run_id}, not the run just created")
        status = status_request(
            self.server.host, self.server.port, self.headers, run_id, str(answer["token"])
        )
        done = await self.runner.send(status)
        if done.status != 200:
            raise RuntimeError(f"status completed: HTTP {done.status}: {done.body[:120]!r}")
        return claimed_at - sent, claimed_at - created_at


async def _measure(
    server: Server, headers: Headers, samples: int, warmup: int, gap: float, limit: float
) -> ClaimResult:
    out = ClaimResult(gap_ms=gap * 1000)
    cycle = _Cycle(server, headers)
    sent_lat: list[float] = []
    created_lat: list[float] = []
    deadline = time.monotonic() + limit
    try:
        await apis.prepare(apis.RUNYARD, cycle.producer, PIPELINE)
        for i in range(warmup + samples):
            if time.monotonic() >= deadline:
                out.errors += 1
                out.error_samples.append(f"time limit {limit:.0f} s reached after {i} cycles")
                break
            try:
                async with asyncio.timeout(15):
                    from_sent, from_created = await cycle.run(gap)
            except (RuntimeError, TimeoutError, *NET_ERRORS) as exc:
                out.errors += 1
                if len(out.error_samples) < 3:
                    out.error_samples.append(f"{type(exc).__name__}: {str(exc)[:160]}")
                await cycle.close()  # a half-read response would poison the connections
                await asyncio.sleep(0.05)
                continue
            if i >= warmup:
                sent_lat.append(from_sent * 1000)
                created_lat.append(from_created * 1000)
    finally:
        await cycle.close()
    sent_lat.sort()
    created_lat.sort()
    out.samples = len(sent_lat)
    out.p50_ms, out.p99_ms = percentile(sent_lat, 0.5), percentile(sent_lat, 0.99)
    out.max_ms = sent_lat[-1] if sent_lat else 0.0
    out.after_create_p50_ms = percentile(created_lat, 0.5)
    out.after_create_p99_ms = percentile(created_lat, 0.99)
    return out


def bench_claim(
    server: Server,
    headers: Headers,
    samples: int,
    warmup: int = 5,
    gap: float = 0.02,
    limit: float = 120.0,
) -> ClaimResult:
    """Measure ``samples`` sequential queued -> claimed latencies (see module docstring)."""
    cpu0, own0, wall0 = server.cpu_seconds(), time.process_time(), time.perf_counter()
    result = asyncio.run(_measure(server, headers, samples, warmup, gap, limit))
    wall = time.perf_counter() - wall0
    result.server_cpu = (server.cpu_seconds() - cpu0) / wall
    result.client_cpu = (time.process_time() - own0) / wall
    return result
