"""``AsyncClient`` against a served app, and the SDK's retry and error rules."""

import ast
import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from runyard.client import (
    AsyncClient,
    BadRequest,
    Client,
    InvalidTransition,
    NotFound,
    RunContext,
    ServerError,
    TransportError,
)
from runyard.client._base import SSEDecoder, StreamState
from tests.conftest import free_port
from tests.support import post_events, report

pytestmark = pytest.mark.anyio


async def test_runs_pipelines_and_events_round_trip(live: httpx.AsyncClient) -> None:
    async with AsyncClient(str(live.base_url)) as runyard:
        pipeline = await runyard.create_pipeline("etl", executor={"type": "worker"})
        assert (await runyard.get_pipeline(pipeline["id"]))["name"] == "etl"
        run = await runyard.create_run("etl", {"day": "2026-11-22"}, tags=["nightly"])
        assert (await runyard.get_run(run["id"]))["input"] == {"day": "2026-11-22"}
        page = await runyard.list_runs(tag="nightly", status="queued")
        assert [r["id"] for r in page["data"]] == [run["id"]]

        await report(live, run["id"], status="running")
        await post_events(live, run["id"], [{"type": "log", "data": {"n": i}} for i in range(5)])
        await report(live, run["id"], status="completed", output={"rows": 5})
        streamed = [e async for e in runyard.stream(run["id"], after_sequence=4)]
        assert [e["sequence"] for e in streamed] == list(range(5, streamed[-1]["sequence"] + 1))
        assert streamed[-1]["type"] == "run.completed"
        assert (await runyard.wait_for_run(run["id"]))["output"] == {"rows": 5}
        events = await runyard.list_events(run["id"], after_sequence=0, limit=2)
        assert [e["sequence"] for e in events["data"]] == [1, 2]

        replayed = await runyard.replay_run(run["id"], input={"day": "2026-11-23"})
        assert replayed["replay_of"] == run["id"]
        cancelled = await runyard.cancel_run(replayed["id"], reason="not today")
        assert cancelled["result"] == "cancelled"


async def test_problems_become_exceptions(live: httpx.AsyncClient) -> None:
    async with AsyncClient(str(live.base_url)) as runyard:
        with pytest.raises(NotFound) as missing:
            await runyard.get_run("run_missing")
        assert missing.value.status == 404
        assert missing.value.request_id
        with pytest.raises(BadRequest) as bad:
            await runyard.list_runs(limit=0)
        assert bad.value.errors[0]["loc"][-1] == "limit"
        await runyard.create_pipeline("gate", executor={"type": "worker"})
        run = await runyard.create_run("gate")
        with pytest.raises(InvalidTransition) as conflict:
            await runyard.approve_run(run["id"])
        assert conflict.value.current_status == "queued"
        assert conflict.value.code == "invalid_transition"


async def test_an_unreachable_server_is_a_transport_error() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", max_retries=1) as runyard:
        with pytest.raises(TransportError):
            await runyard.get_run("run_x")


def flaky_transport(answers: list[httpx.Response], seen: list[httpx.Request]) -> Any:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    return handle


async def test_retries_honour_retry_after_and_keep_one_idempotency_key() -> None:
    seen: list[httpx.Request] = []
    answers = [
        httpx.Response(503, headers={"retry-after": "0"}, json={"code": "unavailable"}),
        httpx.Response(429, headers={"retry-after": "0"}, json={"code": "rate_limited"}),
        httpx.Response(201, json={"id": "run_1"}),
    ]
    transport = httpx.MockTransport(flaky_transport(answers, seen))
    async with AsyncClient("http://runyard.test", transport=transport) as runyard:
        assert (await runyard.create_run("etl"))["id"] == "run_1"
    keys = {r.headers["idempotency-key"] for r in seen}
    assert len(seen) == 3 and len(keys) == 1


def test_the_sync_client_gives_up_after_its_retries() -> None:
    seen: list[httpx.Request] = []
    answers = [httpx.Response(502, text="bad gateway") for _ in range(3)]
    transport = httpx.MockTransport(flaky_transport(answers, seen))
    runyard = Client("http://runyard.test", transport=transport, max_retries=2)
    with runyard, pytest.raises(ServerError) as failed:
        runyard.get_run("run_1")
    assert failed.value.status == 502
    assert failed.value.detail == "bad gateway"
    assert len(seen) == 3
    assert "idempotency-key" not in seen[0].headers  # GETs are idempotent already


def test_stream_frames_resume_after_a_reset_and_skip_repeats() -> None:
    decoder, state = SSEDecoder(), StreamState(after_sequence=2)
    text = (
        "retry: 2000\n\n: keep-alive\n\n"
        'id: 2\nevent: log\ndata: {"sequence": 2}\n\n'
        'id: 3\nevent: log\ndata: {"sequence": 3}\n\n'
        'event: stream.reset\ndata: {"resume_after": 3}\n\n'
        'id: 3\nevent: log\ndata: {"sequence": 3}\n\n'
        'id: 4\nevent: run.completed\ndata: {"sequence": 4}\n\n'
        'event: stream.end\ndata: {"status": "completed", "last_sequence": 4}\n\n'
    )
    taken = []
    for line in text.split("\n"):
        frame = decoder.feed(line)
        if frame is not None:
            event, reconnect = state.take(frame)
            taken.append((event and event["sequence"], reconnect))
    assert taken == [
        (None, False),
        (3, False),
        (None, True),
        (None, False),
        (4, False),
        (None, True),
    ]
    assert state.ended and state.last == 4


def test_the_sdk_imports_nothing_of_the_server() -> None:
    code = (
        "import sys, runyard.client, runyard.cli.worker\n"
        "print(sorted(m for m in sys.modules if m.startswith('runyard')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(out.stdout)
    server_side = [
        m for m in loaded if m != "runyard" and not m.startswith(("runyard.client", "runyard.cli"))
    ]
    assert server_side == []


async def test_a_failed_event_batch_stays_queued_and_goes_first_next_time() -> None:
    posted: list[list[str]] = []
    answers = [503, 200, 200]

    def handle(request: httpx.Request) -> httpx.Response:
        posted.append([e["data"]["message"] for e in json.loads(request.content)["events"]])
        return httpx.Response(answers.pop(0), json={"code": "x"} if answers else {"ok": True})

    claim = {"run": {"id": "run_1"}, "lease": {"id": "lse_1", "attempt": 1}, "token": "t"}
    transport = httpx.MockTransport(handle)
    async with AsyncClient("http://runyard.test", transport=transport, max_retries=0) as api:
        ctx = RunContext(api, claim)
        ctx.log("one")
        with pytest.raises(ServerError):
            await ctx.flush()
        ctx.log("two")
        await ctx.flush()
        await ctx.close()
    assert posted == [["one"], ["one", "two"]]
