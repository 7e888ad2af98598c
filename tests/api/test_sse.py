"""SSE streams over real sockets (DESIGN §6.3): nothing lost, nothing twice, on both databases."""

import asyncio
import os
from typing import Any

import httpx
import pytest

from runyard.settings import Settings
from tests.conftest import serving
from tests.support import (
    Frame,
    SSEReader,
    assert_problem,
    make_pipeline,
    make_run,
    post_events,
    read_until_end,
    report,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
REDIS_URL = os.environ.get("RUNYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def _complete(client: httpx.AsyncClient, run_id: str) -> None:
    await report(client, run_id, status="running")
    assert (await report(client, run_id, status="completed")).status_code == 200


def _sequences(frames: list[Frame]) -> list[int]:
    return [f.id for f in frames if f.id is not None]


async def _all_stored(client: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    for _ in range(100):
        page = (
            await client.get(f"/v1/runs/{run_id}/events?after_sequence={after}&limit=1000")
        ).json()
        events += page["data"]
        after = page["next_after_sequence"]
        if not page["has_more"]:
            return events
    raise AssertionError("too many pages")


async def test_concurrent_producers_get_dense_sequences_and_a_subscriber_sees_each_once(
    live: httpx.AsyncClient,
) -> None:
    await make_pipeline(live)
    await _fan_in_and_out(live, live)


@pytest.mark.settings(broker_url=REDIS_URL)
async def test_a_subscriber_on_one_replica_sees_every_event_appended_through_another(
    settings: Settings,
) -> None:
    async with serving(settings) as first, serving(settings) as second:
        await make_pipeline(first)
        await _fan_in_and_out(first, second)


async def _fan_in_and_out(watcher: httpx.AsyncClient, producer: httpx.AsyncClient) -> None:
    """20 producers post 50-event batches while a subscriber connected before them watches."""
    live = producer
    run_id = (await make_run(live))["id"]
    received: list[Frame] = []
    connected = asyncio.Event()

    async def subscribe() -> None:
        async with watcher.stream("GET", f"/v1/runs/{run_id}/events?stream=true") as response:
            async for frame in SSEReader(response).frames():
                received.append(frame)
                if frame.id == 2:
                    connected.set()
                if frame.event == "stream.end":
                    return

    subscriber = asyncio.create_task(subscribe())
    await asyncio.wait_for(connected.wait(), 10)

    async def produce(producer: int) -> dict[str, Any]:
        events = [{"type": "log", "data": {"producer": producer, "i": i}} for i in range(50)]
        return await post_events(live, run_id, events)

    results = await asyncio.gather(*(produce(p) for p in range(20)))
    await _complete(live, run_id)
    await asyncio.wait_for(subscriber, 60)

    assert all(r["last_sequence"] - r["first_sequence"] == 49 for r in results)
    produced = sorted(
        s for r in results for s in range(r["first_sequence"], r["last_sequence"] + 1)
    )
    assert produced == list(range(3, 1003))
    stored = await _all_stored(live, run_id)
    assert [e["sequence"] for e in stored] == list(range(1, 1005))
    logs = [e for e in stored if e["type"] == "log"]
    assert len(logs) == 1000
    assert len({(e["data"]["producer"], e["data"]["i"]) for e in logs}) == 1000

    assert _sequences(received) == list(range(1, 1005))
    assert [f.data for f in received[:-1]] == stored
    assert received[-1].event == "stream.end"
    assert received[-1].data == {"status": "completed", "last_sequence": 1004}


async def test_reconnect_with_last_event_id_continues_without_gap_or_duplicate(
    live: httpx.AsyncClient,
) -> None:
    await make_pipeline(live)
    run_id = (await make_run(live))["id"]
    await post_events(live, run_id, [{"type": "log", "data": {"i": i}} for i in range(10)])
    first_part: list[Frame] = []
    async with live.stream(
        "GET", f"/v1/runs/{run_id}/events", headers={"Accept": "text/event-stream"}
    ) as r:
        async for frame in SSEReader(r).frames():
            first_part.append(frame)
            if frame.id == 7:
                break  # the client drops the connection mid-stream
    await post_events(live, run_id, [{"type": "log", "data": {"i": i}} for i in range(10, 15)])
    finisher = asyncio.create_task(_complete(live, run_id))
    rest = await read_until_end(
        live, f"/v1/runs/{run_id}/events?stream=true", headers={"Last-Event-ID": "7"}
    )
    await finisher
    assert _sequences(first_part) == list(range(1, 8))
    assert _sequences(rest) == list(range(8, 20))
    assert rest[-1].event == "stream.end" and rest[-1].id is None

    query_wins = await read_until_end(
        live,
        f"/v1/runs/{run_id}/events?stream=true&after_sequence=17",
        headers={"Last-Event-ID": "3"},
    )
    assert _sequences(query_wins) == [18, 19]


async def test_a_finished_runs_stream_replays_to_stream_end_with_the_protocol_headers(
    live: httpx.AsyncClient,
) -> None:
    await make_pipeline(live)
    run_id = (await make_run(live))["id"]
    await post_events(
        live, run_id, [{"type": "log", "data": {"text": "a\n\nevent: run.completed\ndata: x"}}]
    )
    await _complete(live, run_id)
    async with live.stream("GET", f"/v1/runs/{run_id}/events?stream=true") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        raw = (await response.aread()).decode()
    assert raw.startswith("retry: 2000\n\n")
    blocks = [b for b in raw.split("\n\n") if b]
    assert blocks[-1] == 'event: stream.end\ndata: {"status":"completed","last_sequence":5}'
    assert [b.split("\n")[1] for b in blocks[1:-1]] == [
        "event: run.created",
        "event: run.queued",
        "event: log",
        "event: run.started",
        "event: run.completed",
    ]
    injected = blocks[3].split("\n")
    assert len(injected) == 3 and injected[2].startswith("data: {")  # newlines stay escaped


async def test_create_and_stream_answers_with_the_runs_stream(live: httpx.AsyncClient) -> None:
    await make_pipeline(live)
    frames: list[Frame] = []
    finishing: list[asyncio.Task[None]] = []
    async with live.stream(
        "POST", "/v1/runs", json={"pipeline": "deploy", "stream": True, "id": "run_streamedrun0001"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["location"] == "/v1/runs/run_streamedrun0001"
        async for frame in SSEReader(response).frames():
            frames.append(frame)
            if frame.event == "run.queued":
                finishing.append(asyncio.create_task(_complete(live, "run_streamedrun0001")))
            if frame.event == "stream.end":
                break
    await asyncio.gather(*finishing)
    assert [f.event for f in frames] == [
        "run.created",
        "run.queued",
        "run.started",
        "run.completed",
        "stream.end",
    ]
    async with live.stream(
        "POST", "/v1/runs", json={"pipeline": "deploy"}, headers={"Accept": "text/event-stream"}
    ) as response:
        reader = SSEReader(response)
        first = await anext(reader.frames())
        assert first.event == "run.created"


@pytest.mark.settings(sse_keepalive_seconds=0.2)
async def test_idle_streams_get_keep_alive_comments(live: httpx.AsyncClient) -> None:
    await make_pipeline(live)
    run_id = (await make_run(live))["id"]
    async with live.stream("GET", f"/v1/runs/{run_id}/events?stream=true") as response:
        reader = SSEReader(response)
        frames = reader.frames()
        for _ in range(2):
            await anext(frames)
        finisher = asyncio.get_running_loop().call_later(
            0.7, lambda: asyncio.ensure_future(_complete(live, run_id))
        )
        async for frame in frames:
            if frame.event == "stream.end":
                break
        finisher.cancel()
    assert reader.retry == 2000
    assert reader.comments.count("keep-alive") >= 2


async def test_streams_of_unknown_runs_and_bad_resume_points_are_problems(
    live: httpx.AsyncClient,
) -> None:
    await make_pipeline(live)
    run_id = (await make_run(live))["id"]
    assert_problem(
        await live.get("/v1/runs/run_0000000000none/events?stream=true"), 404, "run_not_found"
    )
    for bad in ("abc", "9" * 30):  # not a number; past any sequence
        assert_problem(
            await live.get(f"/v1/runs/{run_id}/events?stream=true", headers={"Last-Event-ID": bad}),
            400,
            "invalid_input",
        )
