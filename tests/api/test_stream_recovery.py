"""A subscriber that falls behind recovers from the database or is told to reconnect (§6.3).

These drive :class:`StreamReader` directly against the app's real database and broker, so the
moments of overflow and gaps are deterministic rather than left to socket timing.
"""

import httpx
import pytest
from fastapi import FastAPI

from runyard.container import Services
from runyard.events.schemas import envelope_frame
from runyard.events.service import NewEvent
from runyard.events.streaming import TERMINAL_RUN_EVENTS, StreamReader, pack
from tests.support import frames_of, make_pipeline, make_run

pytestmark = pytest.mark.anyio


async def _append(services: Services, run_id: str, count: int) -> None:
    async with services.db.write() as tx:
        await services.events.append(
            tx,
            run_id,
            [NewEvent("log", {"i": i}) for i in range(count)],
            run_id=run_id,
            source="runner",
            attempt=0,
        )


def _reader(services: Services, run_id: str, after: int = 0) -> StreamReader:
    return StreamReader(
        events=services.events,
        broker=services.broker,
        settings=services.settings,
        metrics=services.metrics,
        stream_id=run_id,
        after=after,
        terminal=TERMINAL_RUN_EVENTS,
    )


@pytest.mark.settings(sse_queue_size=1, sse_max_resyncs=5)
async def test_an_overflowing_subscriber_catches_up_from_the_database(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    services: Services = app.state.services
    await make_pipeline(client)
    run_id = (await make_run(client))["id"]
    chunks = _reader(services, run_id).frames()
    assert await anext(chunks) == b"retry: 2000\n\n"
    replayed = await anext(chunks)  # sequences 1-2 from the database; now subscribed live
    assert b"id: 2\n" in replayed
    for _ in range(10):  # ten messages into a buffer of one, while the subscriber is busy
        await _append(services, run_id, 3)
    await client.post(f"/v1/runner/runs/{run_id}/status", json={"status": "running"})
    await client.post(f"/v1/runner/runs/{run_id}/status", json={"status": "completed"})
    frames = await frames_of(chunks)
    assert [f.id for f in frames if f.id] == list(range(3, 35))
    assert frames[-1].event == "stream.end"


@pytest.mark.settings(sse_queue_size=1, sse_max_resyncs=0)
async def test_a_subscriber_that_cannot_keep_up_gets_stream_reset(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    services: Services = app.state.services
    await make_pipeline(client)
    run_id = (await make_run(client))["id"]
    chunks = _reader(services, run_id).frames()
    await anext(chunks)
    await anext(chunks)
    for _ in range(3):
        await _append(services, run_id, 1)
    frames = await frames_of(chunks)
    assert [(f.event, f.data, f.id) for f in frames] == [
        ("stream.reset", {"resume_after": 2}, None)
    ]


async def test_a_live_message_after_a_gap_is_filled_from_the_database(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    services: Services = app.state.services
    await make_pipeline(client)
    run_id = (await make_run(client))["id"]
    await _append(services, run_id, 4)  # sequences 3-6
    reader = _reader(services, run_id, after=2)
    stored, _ = await services.events.page(run_id, after=4, limit=10)
    late = pack(5, 6, "log", b"".join(envelope_frame(e) for e in stored))
    chunk = await reader._from_messages([late])
    assert [int(line[4:]) for line in chunk.decode().split("\n") if line.startswith("id: ")] == [
        3,
        4,
        5,
        6,
    ]
    overlap = pack(5, 6, "log", b"".join(envelope_frame(e) for e in stored))
    assert await reader._from_messages([overlap]) == b""
