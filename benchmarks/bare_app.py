"""The "bare" comparison app: the least code that performs Runyard's hot-path writes.

It is the yardstick for the ratios in the report: same framework (FastAPI on
uvicorn, one worker, access log off), same database engine (SQLite, WAL,
``synchronous=NORMAL``) and the same inserts, but none of Runyard's features.

* ``POST /runs`` inserts one run row of similar width (id, pipeline, status,
  JSON input and bookkeeping columns, timestamps) and returns it (201).
* ``POST /runs/{id}/events`` checks the run, takes ``n`` sequence numbers from
  a per-stream counter (one upsert) and inserts the batch of event rows
  (stream id, sequence, id, type, JSON data, time), all in one transaction.
* ``GET /runs/{id}`` reads one row back.

Driver: ``thread`` (default) runs each request's SQL on one dedicated writer
thread (one thread hop per request, like an async driver but without a hop per
statement); reads use a second connection on their own thread.  ``inline``
runs sqlite3 directly on the event loop.

Run: ``python -m benchmarks.bare_app --host 127.0.0.1 --port 8001 --data-dir DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, Field
from ulid import ULID

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, pipeline TEXT NOT NULL,
  status TEXT NOT NULL, input TEXT NOT NULL, steps TEXT NOT NULL, tags TEXT NOT NULL,
  metadata TEXT NOT NULL, attempt INTEGER NOT NULL, max_attempts INTEGER NOT NULL,
  progress REAL NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL,
  queued_at TEXT, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS event_streams (id TEXT PRIMARY KEY, last_sequence INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  stream_id TEXT NOT NULL, sequence INTEGER NOT NULL, id TEXT NOT NULL, run_id TEXT,
  type TEXT NOT NULL, time TEXT NOT NULL, source TEXT NOT NULL, data TEXT NOT NULL,
  PRIMARY KEY (stream_id, sequence));
"""
RUN_COLUMNS = (
    "id, workspace_id, pipeline, status, input, steps, tags, metadata, attempt, "
    "max_attempts, progress, created_by, created_at, queued_at, updated_at"
)


class RunIn(BaseModel):
    pipeline: str = "bench"
    input: dict[str, Any] = Field(default_factory=dict)


class EventIn(BaseModel):
    type: str
    data: dict[str, Any] = Field(default_factory=dict)


class EventBatch(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=1000)


def _now() -> str:
    value = datetime.now(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class Store:
    """Two connections (writer, reader), each used from exactly one thread or the loop."""

    def __init__(self, path: Path, inline: bool) -> None:
        self.writer = _connect(path)
        self.writer.executescript(SCHEMA)
        self.reader = _connect(path)
        self.inline = inline
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="bare-writer")
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="bare-reader")

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self.inline:
            return fn(self.writer)
        return await asyncio.get_running_loop().run_in_executor(self._write_pool, fn, self.writer)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self.inline:
            return fn(self.reader)
        return await asyncio.get_running_loop().run_in_executor(self._read_pool, fn, self.reader)


def create_app(data_dir: Path, inline: bool = False) -> FastAPI:
    """The bare app over ``data_dir/bare.sqlite3``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(data_dir / "bare.sqlite3", inline)
    app = FastAPI()

    @app.get("/health")
    async def health() -> Response:
        return _json({"status": "ok"})

    @app.post("/runs")
    async def create_run(body: RunIn) -> Response:
        now = _now()
        run = {
            "id": f"run_{ULID()}",
            "workspace_id": "default",
            "pipeline": body.pipeline,
            "status": "queued",
            "input": body.input,
            "steps": [],
            "tags": [],
            "metadata": {},
            "attempt": 1,
            "max_attempts": 1,
            "progress": 0.0,
            "created_by": "bench",
            "created_at": now,
            "queued_at": now,
            "updated_at": now,
        }
        row = tuple(
            orjson.dumps(v).decode() if isinstance(v, dict | list) else v for v in run.values()
        )

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({','.join('?' * 15)})", row)

        await store.write(insert)
        return _json(run, 201)

    @app.get("/runs/{run_id}")
    async def get_run(run_id: str) -> Response:
        def select(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            cur = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
            found: tuple[Any, ...] | None = cur.fetchone()
            return found

        found = await store.read(select)
        if found is None:
            return _json({"title": "run not found"}, 404)
        run = dict(zip(RUN_COLUMNS.split(", "), found, strict=True))
        for key in ("input", "steps", "tags", "metadata"):
            run[key] = orjson.loads(run[key])
        return _json(run)

    @app.post("/runs/{run_id}/events")
    async def append_events(run_id: str, batch: EventBatch) -> Response:
        now = _now()
        ids = [f"evt_{ULID()}" for _ in batch.events]
        payloads = [(e.type, orjson.dumps(e.data).decode()) for e in batch.events]
        n = len(ids)

        def insert(conn: sqlite3.Connection) -> int | None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                    conn.execute("ROLLBACK")
                    return None
                last = conn.execute(
                    "INSERT INTO event_streams (id, last_sequence) VALUES (?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET last_sequence = last_sequence + excluded."
                    "last_sequence RETURNING last_sequence",
                    (run_id, n),
                ).fetchone()[0]
                first = last - n + 1
                conn.executemany(
                    "INSERT INTO events (stream_id, sequence, id, run_id, type, time, source, data)"
                    " VALUES (?, ?, ?, ?, ?, ?, 'runner', ?)",
                    [
                        (run_id, first + i, ids[i], run_id, t, now, d)
                        for i, (t, d) in enumerate(payloads)
                    ],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return int(first)

        first = await store.write(insert)
        if first is None:
            return _json({"title": "run not found"}, 404)
        return _json(
            {"ok": True, "event_ids": ids, "first_sequence": first, "last_sequence": first + n - 1}
        )

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the bare app with uvicorn, one worker, access log off."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--driver", choices=("thread", "inline"), default="thread")
    args = parser.parse_args(argv)
    app = create_app(args.data_dir, inline=args.driver == "inline")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
