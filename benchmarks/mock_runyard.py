"""An in-memory stand-in for ``runyard serve``, used only to self-test this suite.

It speaks the slice of Runyard's HTTP API that the benchmarks use (health,
pipelines, runs, runner events and status, SSE stream) with no database, so
``python -m benchmarks --target mock`` exercises every code path of the
suite, including the SSE fan-out checks, before the real server exists.
Each event's SSE frame is encoded once at append time and shared by all
subscribers.  Its numbers are not Runyard's numbers.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from ulid import ULID

TERMINAL = {"completed", "failed", "cancelled"}
KEEPALIVE_SECONDS = 15.0
MAX_STREAM_WAITS = 100_000  # bounds one stream's lifetime (keep-alives included)


def _now() -> str:
    value = datetime.now(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


@dataclass
class Stream:
    """One run's events as ready-to-send SSE frames, plus a wake-up signal."""

    frames: list[bytes] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False

    def append(self, run_id: str, kind: str, data: dict[str, Any]) -> tuple[int, str]:
        sequence, event_id = len(self.frames) + 1, f"evt_{ULID()}"
        envelope = {
            "id": event_id,
            "run_id": run_id,
            "sequence": sequence,
            "type": kind,
            "time": _now(),
            "data": data,
        }
        self.frames.append(
            b"id: %d\nevent: %s\ndata: %s\n\n" % (sequence, kind.encode(), orjson.dumps(envelope))
        )
        return sequence, event_id

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


def create_app() -> FastAPI:
    """The mock app; all state lives in this closure."""
    app = FastAPI()
    runs: dict[str, dict[str, Any]] = {}
    streams: dict[str, Stream] = {}

    @app.get("/health")
    async def health() -> Response:
        return _json({"status": "ok"})

    @app.post("/v1/pipelines")
    async def create_pipeline(request: Request) -> Response:
        body = orjson.loads(await request.body())
        return _json({"id": f"pl_{ULID()}", **body}, 201)

    @app.post("/v1/runs")
    async def create_run(request: Request) -> Response:
        body = orjson.loads(await request.body())
        run_id, now = f"run_{ULID()}", _now()
        run = {
            "id": run_id,
            "pipeline": body["pipeline"],
            "input": body.get("input", {}),
            "status": "queued",
            "created_at": now,
            "updated_at": now,
        }
        runs[run_id] = run
        streams[run_id] = Stream()
        streams[run_id].append(run_id, "run.created", {"status": "queued"})
        return _json(run, 201)

    @app.get("/v1/runs/{run_id}")
    async def get_run(run_id: str) -> Response:
        run = runs.get(run_id)
        return _json(run) if run else _json({"title": "run not found"}, 404)

    @app.post("/v1/runner/runs/{run_id}/events")
    async def append(run_id: str, request: Request) -> Response:
        stream = streams.get(run_id)
        if stream is None:
            return _json({"title": "run not found"}, 404)
        events = orjson.loads(await request.body())["events"]
        appended = [stream.append(run_id, e["type"], e.get("data", {})) for e in events]
        stream.notify()
        return _json(
            {
                "ok": True,
                "event_ids": [i for _, i in appended],
                "first_sequence": appended[0][0],
                "last_sequence": appended[-1][0],
            }
        )

    @app.post("/v1/runner/runs/{run_id}/status")
    async def set_status(run_id: str, request: Request) -> Response:
        run, stream = runs.get(run_id), streams.get(run_id)
        if run is None or stream is None:
            return _json({"title": "run not found"}, 404)
        status = orjson.loads(await request.body())["status"]
        run["status"], run["updated_at"] = status, _now()
        kind = "run.started" if status == "running" else f"run.{status}"
        stream.append(run_id, kind, {"status": status})
        stream.ended = status in TERMINAL
        stream.notify()
        return _json(run)

    @app.get("/v1/runs/{run_id}/events")
    async def events(run_id: str) -> Response:
        stream = streams.get(run_id)
        if stream is None:
            return _json({"title": "run not found"}, 404)
        return StreamingResponse(_sse(stream), media_type="text/event-stream")

    return app


async def _sse(stream: Stream) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    cursor = 0
    for _ in range(MAX_STREAM_WAITS):
        changed = stream.changed
        if cursor < len(stream.frames):
            end = len(stream.frames)
            yield b"".join(stream.frames[cursor:end])
            cursor = end
            continue
        if stream.ended:
            yield b"event: stream.end\ndata: {}\n\n"
            return
        try:
            await asyncio.wait_for(changed.wait(), KEEPALIVE_SECONDS)
        except TimeoutError:
            yield b": keep-alive\n\n"


def main(argv: list[str] | None = None) -> None:
    """Serve the mock with uvicorn, one worker, access log off."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m benchmarks.mock_runyard")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
