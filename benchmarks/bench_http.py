"""Request/response benchmarks: create run, event ingest, get run, idle RSS.

Each load benchmark builds a ``LoadSpec`` and runs it in the load-generator
process (``loadgen.run_load`` via a process pool), so the orchestrating
process stays idle and the client gets its own core.  The same specs are used
for Runyard and for the bare app; only the paths differ (``apis.Api``).

* create: ``POST`` the same run body over 1 connection (sequential) or 32.
* ingest: ``clients`` connections, each appending batches of ``batch`` log
  events to its own run (already ``running``), counted in events/s.
* get: 32 connections cycling through ``GET`` of pre-created runs.
* idle RSS: a few requests, a short idle, then RSS of the server process.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass

from benchmarks import apis
from benchmarks.httpraw import RawConnection
from benchmarks.loadgen import LoadResult, LoadSpec, RequestSpec, run_load
from benchmarks.servers import Server

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class LoadConfig:
    """Durations shared by all load benchmarks."""

    duration: float
    warmup: float
    headers: Headers = ()


def _run(pool: Executor, spec: LoadSpec, server: Server) -> tuple[LoadResult, float]:
    """Run a spec in the load process; also return the server's CPU use (cores)."""
    cpu0, wall0 = server.cpu_seconds(), time.perf_counter()
    result = pool.submit(run_load, spec).result(timeout=spec.warmup + spec.duration + 120)
    server_cpu = (server.cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
    return result, server_cpu


async def _setup_runs(
    server: Server, api: apis.Api, headers: Headers, count: int, status: str | None
) -> list[str]:
    conn = RawConnection(server.host, server.port, headers)
    try:
        await apis.prepare(api, conn)
        run_ids = await apis.create_runs(api, conn, count)
        if status is not None:
            for run_id in run_ids:
                await apis.set_status(api, conn, run_id, status)
        return run_ids
    finally:
        await conn.close()


def setup_runs(
    server: Server, api: apis.Api, headers: Headers, count: int, status: str | None = None
) -> list[str]:
    """Create ``count`` runs (and optionally move them to ``status``)."""
    return asyncio.run(_setup_runs(server, api, headers, count, status))


def make_api_key(server: Server, headers: Headers) -> str:
    """An admin API key made in open mode (which it ends); its secret."""

    async def make() -> str:
        conn = RawConnection(server.host, server.port, headers)
        try:
            body = {"name": "benchmark", "role": "admin"}
            response = await conn.request("POST", "/v1/api-keys", body)
            if response.status != 201:
                raise RuntimeError(
                    f"create API key: HTTP {response.status}: {response.body[:200]!r}"
                )
            return str(response.json()["secret"])
        finally:
            await conn.close()

    return asyncio.run(make())


def bench_create(
    pool: Executor, server: Server, api: apis.Api, cfg: LoadConfig, clients: int
) -> tuple[LoadResult, float]:
    """Create runs as fast as ``clients`` closed-loop connections allow."""
    setup_runs(server, api, cfg.headers, 1)  # pipeline exists before the clock starts
    plan = (RequestSpec("POST", api.create_path, apis.CREATE_RUN_BODY),)
    spec = LoadSpec(
        server.host, server.port, (plan,) * clients, cfg.duration, cfg.warmup, 201, cfg.headers
    )
    return _run(pool, spec, server)


def bench_get(
    pool: Executor, server: Server, api: apis.Api, cfg: LoadConfig, clients: int, runs: int = 256
) -> tuple[LoadResult, float]:
    """Read pre-created runs; connection ``i`` cycles through its own rotation of ids."""
    run_ids = setup_runs(server, api, cfg.headers, runs)
    plans = tuple(
        tuple(RequestSpec("GET", api.run(run_ids[(i + k) % runs])) for k in range(runs))
        for i in range(clients)
    )
    spec = LoadSpec(server.host, server.port, plans, cfg.duration, cfg.warmup, 200, cfg.headers)
    return _run(pool, spec, server)


def bench_ingest(
    pool: Executor, server: Server, api: apis.Api, cfg: LoadConfig, clients: int, batch: int
) -> tuple[LoadResult, float]:
    """Append batches of ``batch`` events; one run per connection."""
    run_ids = setup_runs(server, api, cfg.headers, clients, status="running")
    body = apis.events_body(batch)
    plans = tuple((RequestSpec("POST", api.events(run_id), body),) for run_id in run_ids)
    spec = LoadSpec(
        server.host, server.port, plans, cfg.duration, cfg.warmup, 200, cfg.headers, batch
    )
    return _run(pool, spec, server)


async def _touch(server: Server, api: apis.Api, headers: Headers) -> None:
    conn = RawConnection(server.host, server.port, headers)
    try:
        await apis.prepare(api, conn)
        run_ids = await apis.create_runs(api, conn, 5)
        for run_id in run_ids:
            await conn.request("GET", api.run(run_id))
        await apis.set_status(api, conn, run_ids[0], "running")
        await apis.append_events(api, conn, run_ids[0], apis.events_body(10))
        await conn.request("GET", "/health")
    finally:
        await conn.close()


def idle_rss(server: Server, api: apis.Api, headers: Headers, idle: float) -> int:
    """RSS in bytes after a handful of requests and ``idle`` seconds of quiet."""
    asyncio.run(_touch(server, api, headers))
    time.sleep(idle)
    return server.rss_bytes()
