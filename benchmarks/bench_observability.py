"""Observability latency at 100,000 runs: SLO, outcomes and what-if, on SQLite and PostgreSQL.

Method (per database, sequential, in the orchestrating process, one keep-alive connection):
1. A fresh Runyard server (no worker) on a fresh database: SQLite in its data directory, or
   a fresh schema of the PostgreSQL database at ``postgres_url`` (dropped afterwards).
2. Four pipelines made over the API; then 100,000 runs of the default workspace written
   straight into the database in batches of 10,000 (``Database.write`` + ``insert_many``:
   one ``executemany`` per batch on SQLite, then a checkpoint of its WAL; multi-row INSERTs
   on PostgreSQL, then ``ANALYZE``, as autovacuum would soon after). Every value is a
   function of the run's index: status (70 % completed, 10 % failed, 5 % cancelled (about
   half of them before they started), 2 % rejected, 3 % running, 5 % queued, 2 % blocked,
   3 % pending), pipeline (one of four), creation time (90 % within the last 80 days, 10 %
   95-100 days ago), queue wait (0-30 s), duration (0.5-120 s), ``usage.cost_usd`` on 80 % of
   finished runs, ``error.step`` on failed ones.
3. For each endpoint, ``warmup`` untimed requests, then ``samples`` timed ones: request
   written -> whole response read. Every answer is checked against what the rows imply
   (runs in the window, completions, the pipeline's sample size, a full page newest first).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks import servers
from benchmarks.httpraw import RawConnection
from benchmarks.loadgen import percentile
from benchmarks.report import Row

RUNS = 100_000
BATCH = 10_000
PIPELINES = tuple(f"bench-obs-{n}" for n in range(4))
TARGET_MS = 200.0
DEFAULT_POSTGRES_URL = os.environ.get(
    "RUNYARD_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
#: endpoint label -> (method, path, body)
ENDPOINTS: dict[str, tuple[str, str, Any]] = {
    "GET /v1/observability/slo?days=90": ("GET", "/v1/observability/slo?days=90", None),
    "GET /v1/observability/outcomes?limit=50": (
        "GET",
        "/v1/observability/outcomes?limit=50",
        None,
    ),
    "POST /v1/what-if": ("POST", "/v1/what-if", {"pipeline": PIPELINES[0]}),
}
Headers = tuple[tuple[str, str], ...]

# status by (hash % 100): cumulative upper bounds
_STATUSES = (
    (70, "completed"),
    (80, "failed"),
    (85, "cancelled"),
    (87, "rejected"),
    (90, "running"),
    (95, "queued"),
    (97, "blocked"),
    (100, "pending"),
)
_FINISHED = frozenset({"completed", "failed", "cancelled", "rejected"})
_MS = timedelta(milliseconds=1)


@dataclass
class Expected:
    """What correct answers say about the loaded rows."""

    window_runs: int = 0
    window_completed: int = 0
    what_if_sample: int = 0


@dataclass
class ObservabilityResult:
    database: str
    runs: int = 0
    load_seconds: float = 0.0
    samples: int = 0
    times_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _hash(i: int) -> int:
    return (i * 2_654_435_761 + 97) % 2**32


def make_runs(pipeline_ids: dict[str, str], now: datetime) -> tuple[list[dict[str, Any]], Expected]:
    """The rows (as ``runs`` values) and what they imply."""
    rows, expected = [], Expected()
    for i in range(RUNS):
        h = _hash(i)
        bucket = h % 100
        status = next(name for bound, name in _STATUSES if bucket < bound)
        pipeline = PIPELINES[(h >> 8) % len(PIPELINES)]
        old = (h >> 12) % 10 == 0
        age = timedelta(days=95 + (h >> 4) % 5) if old else timedelta(seconds=(h >> 4) % 6_912_000)
        created = now - age - (h % 997) * timedelta(microseconds=1)
        wait = ((h >> 3) % 30_000) * _MS
        duration = (500 + (h >> 5) % 119_500) * _MS
        never_started = status in ("pending", "queued") or (status == "cancelled" and (h >> 20) & 1)
        started = None if never_started else created + wait
        completed = None
        if status in _FINISHED:
            completed = created + wait if started is None else started + duration
        usage = {"cost_usd": (h % 1000) / 10_000, "input_tokens": 100} if h % 5 else {}
        rows.append(
            {
                "id": f"run_bench{i:021d}",
                "workspace_id": "ws_default",
                "pipeline": pipeline,
                "pipeline_id": pipeline_ids[pipeline],
                "pipeline_version": 1,
                "executor": "steps",
                "status": status,
                "input": {"n": i},
                "output": None,
                "error": (
                    {"code": "runner_error", "message": "exit 2", "step": f"step-{h % 5}"}
                    if status == "failed"
                    else None
                ),
                "progress": 1.0 if completed else 0.0,
                "current_step": None,
                "steps": [],
                "tags": [],
                "codename": None,
                "metadata": {},
                "require_approval": status in ("blocked", "rejected"),
                "approval": None,
                "attempt": 0 if started is None else 1,
                "max_attempts": 1,
                "timeout_seconds": None,
                "metrics": {},
                "usage": usage if status in _FINISHED else {},
                "replay_of": None,
                "session_id": None,
                "runner_id": None,
                "lease_id": None,
                "lease_expires_at": None,
                "cancel_deadline_at": None,
                "created_by": "bench",
                "created_at": created,
                "queued_at": None if status == "pending" else created,
                "started_at": started,
                "completed_at": completed,
                "updated_at": completed or started or created,
            }
        )
        if not old:
            expected.window_runs += 1
            expected.window_completed += status == "completed"
            expected.what_if_sample += status in _FINISHED and pipeline == PIPELINES[0]
    return rows, expected


async def _load(url: str, schema: str | None, rows: list[dict[str, Any]]) -> None:
    # imported here: the other benchmarks talk HTTP only and never need runyard importable
    import sqlalchemy as sa

    from runyard.db.engine import Database
    from runyard.runs.tables import runs

    db = Database(url, schema=schema, pool_size=1)
    try:
        for start in range(0, len(rows), BATCH):
            async with db.write() as tx:
                await tx.conn.insert_many(runs, rows[start : start + BATCH])
        if not db.is_sqlite:  # what autovacuum does within a minute of a bulk load
            async with db.write() as tx:
                await tx.conn.execute(sa.text("ANALYZE runs"))
    finally:
        await db.dispose()
    if url.startswith("sqlite:///"):  # the WAL into the database file, as a server writing
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as sqlite:
            sqlite.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the runs itself would have


def _check(label: str, body: Any, expected: Expected) -> str | None:
    """Why the answer is wrong, or None."""
    if label.startswith("GET /v1/observability/slo"):
        got = (body["total_runs"], body["success_count"])
        want = (expected.window_runs, expected.window_completed)
        return None if got == want else f"slo counts {got} != {want}"
    if label.startswith("GET /v1/observability/outcomes"):
        times = [o["completed_at"] for o in body["outcomes"]]
        ok = len(times) == 50 and times == sorted(times, reverse=True) and body["has_more"]
        return None if ok else f"outcomes page of {len(times)} not newest first"
    if body["sample_size"] != expected.what_if_sample or body["risk_level"] == "unknown":
        return f"what-if sample {body['sample_size']} != {expected.what_if_sample}"
    return None


async def _bench(
    server: servers.Server,
    headers: Headers,
    db_url: str,
    schema: str | None,
    result: ObservabilityResult,
    samples: int,
    warmup: int,
) -> None:
    conn = RawConnection(server.host, server.port, headers)
    await conn.connect()
    try:
        pipeline_ids = {}
        for name in PIPELINES:
            made = await conn.request("POST", "/v1/pipelines", {"name": name})
            if made.status != 201:
                raise RuntimeError(f"create pipeline: HTTP {made.status} {made.body[:200]!r}")
            pipeline_ids[name] = str(made.json()["id"])
        rows, expected = make_runs(pipeline_ids, datetime.now(UTC))
        started = time.perf_counter()
        await _load(db_url, schema, rows)
        result.load_seconds = time.perf_counter() - started
        result.runs = len(rows)
        del rows
        await conn.connect()  # a new connection: the load outlasts the server's keep-alive
        for label, (method, path, body) in ENDPOINTS.items():
            times = result.times_ms.setdefault(label, [])
            for n in range(warmup + samples):
                began = time.perf_counter()
                response = await conn.request(method, path, body)
                elapsed = (time.perf_counter() - began) * 1e3
                if response.status != 200:
                    result.errors.append(f"{label}: HTTP {response.status} {response.body[:200]!r}")
                    continue
                wrong = _check(label, response.json(), expected)
                if wrong is not None:
                    result.errors.append(f"{label}: {wrong}")
                    continue
                if n >= warmup:
                    times.append(elapsed)
        result.samples = samples
    finally:
        await conn.close()


async def _drop_schema(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def bench_observability(
    database: str,
    data_dir: Path,
    *,
    runyard_bin: Path,
    host: str,
    headers: Headers,
    postgres_url: str = DEFAULT_POSTGRES_URL,
    samples: int = 50,
    warmup: int = 3,
) -> ObservabilityResult:
    """Start a server on a fresh ``database`` (``sqlite`` or ``postgres``), load the runs,
    time the endpoints, stop the server (and drop the PostgreSQL schema)."""
    result = ObservabilityResult(database)
    port = servers.free_port(host)
    argv = servers.runyard_argv(runyard_bin, host, port, data_dir)
    schema = None
    env: dict[str, str] = {}
    db_url = f"sqlite:///{(data_dir / 'runyard.db').resolve()}"
    if database == "postgres":
        schema = f"bench_obs_{uuid.uuid4().hex[:12]}"
        db_url = postgres_url
        env = {"RUNYARD_DATABASE_URL": postgres_url, "RUNYARD_DATABASE_SCHEMA": schema}
    try:
        server = servers.start_server(f"runyard-{database}", argv, data_dir, host, port, env=env)
        try:
            asyncio.run(_bench(server, headers, db_url, schema, result, samples, warmup))
        finally:
            server.stop()
    finally:
        if schema is not None:
            asyncio.run(_drop_schema(postgres_url, schema))
    return result


def observability_rows(results: list[ObservabilityResult], why: dict[str, str]) -> list[Row]:
    """p50 / p90 / p99 per endpoint and database. The verdict is p90 against the target: one
    slow request in 50 (a server-side pause, seen once per run at about the 7th SLO) would
    otherwise decide it alone; p99 and max stay in the row."""
    rows = []
    target = f"p90 < {TARGET_MS:g} ms"
    for database in ("sqlite", "postgres"):
        result = next((r for r in results if r.database == database), None)
        for label in ENDPOINTS:
            name = f"{label}, 100k runs, {database}, p50 / p90 / p99"
            times = sorted(result.times_ms.get(label, [])) if result else []
            if not times:
                reason = why.get(database, "not measured")
                if result is not None and result.errors:
                    reason = f"error: {result.errors[0][:160]}"
                rows.append(Row(name, "n/a", target, "", None, reason))
                continue
            assert result is not None
            errors = [e for e in result.errors if e.startswith(label)]
            p50, p90, p99 = (percentile(times, q) for q in (0.5, 0.9, 0.99))
            note = (
                f"max {times[-1]:.1f} ms; {len(times)} sequential requests; {result.runs:,} "
                f"runs loaded in {result.load_seconds:.1f} s"
            )
            if errors:
                note += f"; {len(errors)} errors: {errors[0][:100]}"
            value = f"{p50:.1f} / {p90:.1f} / {p99:.1f} ms"
            rows.append(Row(name, value, target, "", not errors and p90 < TARGET_MS, note))
    return rows
