"""Behaviours a review found broken, each pinned by a test (both databases)."""

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from runyard.container import Services
from runyard.events.service import NewEvent
from runyard.events.streaming import TERMINAL_RUN_EVENTS, StreamReader
from tests.support import (
    assert_problem,
    frames_of,
    make_pipeline,
    make_run,
    read_until_end,
    report,
    wait_for_status,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_start_and_approve_only_act_on_their_own_state(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    running = await make_run(client)
    await client.post("/v1/runner/claim", json={})
    for action in ("start", "approve", "reject"):
        response = await client.post(f"/v1/runs/{running['id']}/{action}")
        assert_problem(response, 409, "invalid_transition")
        assert response.json()["current_status"] == "running"
    assert (await client.get(f"/v1/runs/{running['id']}")).json()["status"] == "running"
    pending = await make_run(client, start=False)
    assert_problem(
        await client.post(f"/v1/runs/{pending['id']}/approve"), 409, "invalid_transition"
    )


async def test_a_stream_resumed_after_the_terminal_event_ends(live: httpx.AsyncClient) -> None:
    await make_pipeline(live)
    run = await make_run(live)
    await report(live, run["id"], status="running")
    final = (await report(live, run["id"], status="completed")).json()["run"]
    frames = await read_until_end(
        live,
        f"/v1/runs/{run['id']}/events?stream=true",
        headers={"Last-Event-ID": str(final["last_sequence"])},
    )
    assert [(f.event, f.data) for f in frames] == [
        ("stream.end", {"status": "completed", "last_sequence": final["last_sequence"]})
    ]


@pytest.mark.settings(sse_queue_size=1)
async def test_a_lagging_stream_of_a_deleted_run_ends(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    services: Services = app.state.services
    await make_pipeline(client)
    run_id = (await make_run(client))["id"]

    async def status() -> str | None:
        response = await client.get(f"/v1/runs/{run_id}")
        return None if response.status_code == 404 else str(response.json()["status"])

    reader = StreamReader(
        events=services.events,
        broker=services.broker,
        settings=services.settings,
        metrics=services.metrics,
        stream_id=run_id,
        after=0,
        terminal=TERMINAL_RUN_EVENTS,
        run_status=status,
    )
    chunks = reader.frames()
    await anext(chunks)
    await anext(chunks)
    for _ in range(3):  # overflow the one-message buffer
        async with services.db.write() as tx:
            await services.events.append(
                tx, run_id, [NewEvent("log")], run_id=run_id, source="runner", attempt=0
            )
    assert (await client.delete(f"/v1/runs/{run_id}")).status_code == 204

    frames = await frames_of(chunks)
    assert frames[-1].event == "stream.end" and frames[-1].data["status"] == "deleted"


@pytest.mark.settings(max_request_bytes=2048)
async def test_chunked_bodies_are_held_to_the_size_limit(client: httpx.AsyncClient) -> None:
    async def body():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b" " * 1000

    response = await client.post(
        "/v1/runs", content=body(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


async def test_a_token_cannot_borrow_another_lease(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    run = await make_run(client)
    claim = (await client.post("/v1/runner/claim", json={})).json()
    headers = {
        "Authorization": f"Bearer {claim['token']}",
        "X-Runyard-Lease": "lse_01M8000000000000000000000A",
    }
    assert_problem(
        await client.post(f"/v1/runner/runs/{run['id']}/heartbeat", headers=headers),
        403,
        "forbidden",
    )


@pytest.mark.settings(lease_seconds=1)
async def test_a_run_started_without_a_claim_still_has_a_lease(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    run = await make_run(client, max_attempts=1)
    started = (await report(client, run["id"], status="running")).json()["run"]
    assert started["status"] == "running" and started["attempt"] == 1
    failed = await wait_for_status(client, run["id"], "failed")  # the silent runner's lease
    assert failed["error"]["code"] == "lease_expired"


async def test_a_later_file_at_the_same_path_keeps_the_earlier_artifact(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(client)
    run = await make_run(client)
    token = (await client.post("/v1/runner/claim", json={})).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    url = f"/v1/runner/runs/{run['id']}/artifacts"
    first = (
        await client.post(
            url, files={"file": ("a.txt", b"first version")}, data={"path": "a.txt"}, headers=auth
        )
    ).json()
    second = (
        await client.post(
            url, files={"file": ("a.txt", b"v2")}, data={"path": "a.txt"}, headers=auth
        )
    ).json()
    base = f"/v1/runs/{run['id']}/artifacts"
    assert (await client.get(f"{base}/{first['id']}/content")).content == b"first version"
    assert (await client.get(f"{base}/{second['id']}/content")).content == b"v2"
    assert (await client.get(f"/v1/runs/{run['id']}/outputs/a.txt")).content == b"v2"
    ignored = await client.get(f"{base}/{first['id']}/content", headers={"Range": "bytes=5-3"})
    assert ignored.status_code == 200 and ignored.content == b"first version"
    past = await client.get(f"{base}/{first['id']}/content", headers={"Range": "bytes=99-"})
    assert_problem(past, 416, "range_not_satisfiable")


@pytest.mark.settings(worker_enabled=True, lease_seconds=1)
async def test_deleting_a_run_stops_its_running_step(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    marker = tmp_path / "finished"
    await make_pipeline(
        client,
        steps=[
            {"name": "slow", "uses": "command", "with": {"run": f"sleep 2; touch {marker}"}},
        ],
    )
    run = await make_run(client)
    for _ in range(100):
        if (await client.get(f"/v1/runs/{run['id']}")).json()["current_step"] == "slow":
            break
        await asyncio.sleep(0.05)
    assert (await client.delete(f"/v1/runs/{run['id']}")).status_code == 204
    await asyncio.sleep(3)
    assert not marker.exists()


@pytest.mark.settings(worker_enabled=True)
async def test_steps_cannot_emit_reserved_events(client: httpx.AsyncClient) -> None:
    await make_pipeline(
        client,
        steps=[
            {
                "name": "sneaky",
                "uses": "python",
                "with": {"function": "tests.worker_steps:fake_end"},
            },
        ],
    )
    failed = await wait_for_status(client, (await make_run(client))["id"], "failed")
    assert failed["error"]["code"] == "step_error" and "reserved" in failed["error"]["message"]
