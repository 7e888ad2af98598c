"""Runner-protocol requests and the pull-runner process of the runner benchmarks.

A runner is one keep-alive connection (``httpraw``) looping: ``POST /v1/runner/claim``
(long-poll, ``wait_seconds``) then, for a claimed run, ``POST /v1/runner/runs/{id}/status
{"status": "completed"}`` with ``Authorization: Bearer <token from the claim>``.  A
completion counts when its 200 arrives inside the measured window; a 204 claim is an empty
poll (not an error); any other status, reset or parse failure is an error (the connection is
then re-opened).  Every claimed run is completed, also during warm-up and after the window.

Processes share the start time and a claimed-runs counter (for the producer's queue depth)
through ``multiprocessing`` values; ``time.monotonic`` is one system-wide clock on Linux.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.httpraw import HttpProtocolError, RawConnection, build_request, json_body

CLAIM_PATH = "/v1/runner/claim"
STATUS_PATH = "/v1/runner/runs/{id}/status"
COMPLETED_BODY = json_body({"status": "completed"})
MAX_CYCLES = 1_000_000  # a count bound on top of the deadline
NET_ERRORS = (
    OSError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    HttpProtocolError,
    ValueError,
    KeyError,
    TypeError,
)
Headers = tuple[tuple[str, str], ...]


def claim_body(pipeline: str, runner: str, wait_seconds: float) -> bytes:
    """A claim for runs of one pipeline, long-polling up to ``wait_seconds``."""
    return json_body(
        {"runner": {"name": runner}, "pipelines": [pipeline], "wait_seconds": wait_seconds}
    )


def status_request(host: str, port: int, headers: Headers, run_id: str, token: str) -> bytes:
    """``status: completed`` for a claimed run with its runner token.

    Any ``Authorization`` among ``headers`` (an API key given with ``--header``) is replaced by
    the token: runner callbacks authenticate with the token alone.
    """
    own = [(n, v) for n, v in headers if n.lower() != "authorization"]
    own.append(("Authorization", f"Bearer {token}"))
    path = STATUS_PATH.format(id=run_id)
    return build_request("POST", path, f"{host}:{port}", COMPLETED_BODY, own)


@dataclass(frozen=True)
class RunnerSpec:
    """What one runner process does (picklable)."""

    host: str
    port: int
    headers: Headers
    pipeline: str
    name: str
    wait_seconds: float
    warmup: float
    duration: float


@dataclass
class RunnerStats:
    """What one runner process counted."""

    name: str
    completed: int = 0  # status=completed answered 200 inside the window
    completed_total: int = 0  # including warm-up and after the window
    empty_claims: int = 0
    errors: int = 0
    cpu: float = 0.0  # fraction of one core over the run
    cycles_ms: list[float] = field(default_factory=list)  # claim sent -> completed, in window
    error_samples: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 3:
            self.error_samples.append(message[:200])


async def _cycle(
    conn: RawConnection,
    claim_raw: bytes,
    spec: RunnerSpec,
    claimed: Any,
    stats: RunnerStats,
    window: tuple[float, float],
) -> None:
    """One claim and, when a run came, its completion."""
    sent = time.monotonic()
    try:
        response = await conn.send(claim_raw)
        if response.status == 204:
            stats.empty_claims += 1
            return
        if response.status != 200:
            stats.error(f"claim: HTTP {response.status}: {response.body[:120]!r}")
            return
        answer = response.json()
        run_id, token = str(answer["run"]["id"]), str(answer["token"])
        with claimed.get_lock():
            claimed.value += 1
        done = await conn.send(status_request(spec.host, spec.port, spec.headers, run_id, token))
    except NET_ERRORS as exc:
        stats.error(f"{type(exc).__name__}: {exc}")
        await conn.close()
        await asyncio.sleep(0.01)
        return
    now = time.monotonic()
    if done.status != 200:
        stats.error(f"status completed: HTTP {done.status}: {done.body[:120]!r}")
        return
    stats.completed_total += 1
    if window[0] <= now < window[1]:
        stats.completed += 1
        stats.cycles_ms.append((now - sent) * 1000)


async def _run(spec: RunnerSpec, start: float, claimed: Any) -> RunnerStats:
    stats = RunnerStats(spec.name)
    window = (start + spec.warmup, start + spec.warmup + spec.duration)
    conn = RawConnection(spec.host, spec.port, spec.headers)
    claim_raw = conn.encode(
        "POST", CLAIM_PATH, claim_body(spec.pipeline, spec.name, spec.wait_seconds)
    )
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    cpu0, wall0 = time.process_time(), time.monotonic()
    try:
        async with asyncio.timeout(spec.warmup + spec.duration + spec.wait_seconds + 30):
            for _ in range(MAX_CYCLES):
                if time.monotonic() >= window[1]:
                    break
                await _cycle(conn, claim_raw, spec, claimed, stats, window)
    except TimeoutError:
        stats.error("runner loop timed out")
    finally:
        await conn.close()
    wall = time.monotonic() - wall0
    stats.cpu = (time.process_time() - cpu0) / wall if wall > 0 else 0.0
    return stats


def runner_process(spec: RunnerSpec, go: Any, start: Any, claimed: Any, out: Any) -> None:
    """Process entry of the raw protocol runner (see :func:`serve_process`)."""
    serve_process(_run, spec, go, start, claimed, out)


def serve_process(
    run: Callable[[RunnerSpec, float, Any], Awaitable[RunnerStats]],
    spec: RunnerSpec,
    go: Any,
    start: Any,
    claimed: Any,
    out: Any,
) -> None:
    """Report ready, wait (at most 60 s) for ``go``, ``run``, report the stats.

    ``go`` is a ``multiprocessing.Event``, ``start`` a shared double (monotonic start time,
    set before ``go``), ``claimed`` a shared counter of claimed runs, ``out`` a queue.
    """
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional
        pass
    out.put(("ready", spec.name))
    if not go.wait(60):
        out.put(("error", f"{spec.name}: no start signal within 60 s"))
        return
    try:
        stats = asyncio.run(run(spec, float(start.value), claimed))
    except Exception as exc:  # report instead of dying silently
        out.put(("error", f"{spec.name}: {type(exc).__name__}: {exc}"))
        return
    out.put(("result", asdict(stats)))
