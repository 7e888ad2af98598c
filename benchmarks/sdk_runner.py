"""The pull-runner process of the ``sdk`` benchmark: the Python SDK's ``Runner`` with a
trivial handler, exactly as a user would run it (``runyard worker`` does the same).

A completion counts when the SDK logs ``run <id>: completed``, which it does after the
server answered the ``status: completed`` callback with 200; a claimed run is counted (for
the producer's queue depth) when its handler starts. The SDK's own choices apply: one
``httpx`` connection pool, claims long-polling ``wait_seconds``, events and heartbeats as
it sends them (a trivial handler sends none: claim, then status).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from benchmarks.runner_client import RunnerSpec, RunnerStats, serve_process


class _Completions(logging.Handler):
    """Counts the SDK's ``completed`` outcomes inside the measured window."""

    def __init__(self, stats: RunnerStats, window: tuple[float, float]) -> None:
        super().__init__(logging.INFO)
        self.stats, self.window = stats, window

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.endswith(": completed"):
            self.stats.completed_total += 1
            if self.window[0] <= time.monotonic() < self.window[1]:
                self.stats.completed += 1
        elif record.levelno >= logging.WARNING:
            self.stats.error(message)


async def _run(spec: RunnerSpec, start: float, claimed: Any) -> RunnerStats:
    from runyard.client import RunContext, Runner

    stats = RunnerStats(spec.name)
    window = (start + spec.warmup, start + spec.warmup + spec.duration)
    counter = _Completions(stats, window)
    log = logging.getLogger("runyard.runner")
    log.setLevel(logging.INFO)
    log.addHandler(counter)
    runner = Runner(
        f"http://{spec.host}:{spec.port}", name=spec.name, wait_seconds=spec.wait_seconds
    )

    @runner.pipeline(spec.pipeline)
    async def trivial(ctx: RunContext) -> dict[str, int]:
        with claimed.get_lock():
            claimed.value += 1
        return {"ok": 1}

    stop = asyncio.Event()
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    cpu0, wall0 = time.process_time(), time.monotonic()
    serving = asyncio.create_task(runner.serve(stop=stop, grace_seconds=spec.wait_seconds + 5))
    await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
    stop.set()
    await asyncio.wait_for(serving, spec.wait_seconds + 30)
    wall = time.monotonic() - wall0
    stats.cpu = (time.process_time() - cpu0) / wall if wall > 0 else 0.0
    log.removeHandler(counter)
    return stats


def sdk_runner_process(spec: RunnerSpec, go: Any, start: Any, claimed: Any, out: Any) -> None:
    """Process entry (see ``runner_client.serve_process``)."""
    serve_process(_run, spec, go, start, claimed, out)
