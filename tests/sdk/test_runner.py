"""The SDK's ``Runner`` against a served app: handlers, memoized steps, gates, cancels."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from runyard.client import RunContext, RunFailed, Runner
from tests.support import make_pipeline, make_run, wait_for_status

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def serving_runner(runner: Runner, **options: Any) -> AsyncIterator[asyncio.Task[int]]:
    """``runner.serve()`` in the background; stopped (and awaited) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(runner.serve(stop=stop, grace_seconds=5, **options))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def runner_for(live: httpx.AsyncClient, **options: Any) -> Runner:
    return Runner(str(live.base_url), name="sdk-test", wait_seconds=2, **options)


async def events_of(live: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    page = (await live.get(f"/v1/runs/{run_id}/events", params={"limit": 1000})).json()
    return list(page["data"])


async def test_a_handler_reports_steps_events_progress_artifacts_and_output(
    live: httpx.AsyncClient,
) -> None:
    await make_pipeline(live, "hello", executor={"type": "worker"})
    runner = runner_for(live)

    @runner.pipeline("hello")
    async def hello(ctx: RunContext) -> dict[str, Any]:
        def shout(text: str) -> str:  # a plain function runs in a thread
            ctx.log("shouting")  # events may be queued from that thread
            return text.upper()

        loud = await ctx.step("shout", shout, ctx.input["name"])
        ctx.log(f"said {loud}")
        ctx.event("greeting.ready", {"text": loud}, step="shout")
        await ctx.progress(0.5)
        await ctx.artifact("out/greeting.txt", f"hello {loud}\n", content_type="text/plain")
        return {"greeting": f"hello {loud}", "attempt": ctx.attempt}

    run = await make_run(live, "hello", input={"name": "ada"})
    async with serving_runner(runner, max_runs=1) as served:
        assert await asyncio.wait_for(served, 15) == 1
    done = await wait_for_status(live, run["id"], "completed")
    assert done["output"] == {"greeting": "hello ADA", "attempt": 1}
    assert [(s["name"], s["status"], s["output"]) for s in done["steps"]] == [
        ("shout", "completed", "ADA")
    ]
    types = [e["type"] for e in await events_of(live, run["id"])]
    assert types == [
        "run.created",
        "run.queued",
        "run.started",
        "step.started",
        "log",
        "step.completed",
        "log",
        "greeting.ready",
        "run.progress",
        "artifact.created",
        "run.completed",
    ]
    content = await live.get(f"/v1/runs/{run['id']}/outputs/out/greeting.txt")
    assert content.text == "hello ADA\n"
    runners = (await live.get("/v1/runners")).json()["data"]
    assert [r["name"] for r in runners] == ["sdk-test"]


async def test_handler_failures_fail_the_run_with_their_code(live: httpx.AsyncClient) -> None:
    await make_pipeline(live, "fragile", executor={"type": "worker"})
    runner = runner_for(live)
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ValueError(f"try {len(calls)}")
        return "ok"

    @runner.pipeline("fragile")
    async def fragile(ctx: RunContext) -> None:
        assert await ctx.step("flaky", flaky, retries=2) == "ok"
        if ctx.input.get("veto"):
            raise RunFailed("vetoed", "the sentinel said no")
        raise KeyError("boom")

    vetoed = await make_run(live, "fragile", input={"veto": True})
    crashed = await make_run(live, "fragile")
    async with serving_runner(runner, max_runs=2) as served:
        await asyncio.wait_for(served, 15)
    first = await wait_for_status(live, vetoed["id"], "failed")
    assert first["error"] == {"code": "vetoed", "message": "the sentinel said no", "step": "flaky"}
    assert [s["status"] for s in first["steps"]] == ["completed"]
    second = await wait_for_status(live, crashed["id"], "failed")
    assert second["error"]["code"] == "handler_error"
    assert second["error"]["message"] == "KeyError: 'boom'"
    failures = [
        e["data"]["error"]["message"]
        for e in await events_of(live, vetoed["id"])
        if e["type"] == "step.failed"
    ]
    assert failures == ["ValueError: try 1", "ValueError: try 2"]


async def test_an_approval_blocks_then_resumes_with_earlier_steps_memoized(
    live: httpx.AsyncClient,
) -> None:
    await make_pipeline(live, "ship", executor={"type": "worker"})
    runner = runner_for(live)
    built: list[str] = []

    async def build() -> str:
        built.append("image")
        return "image:1"

    @runner.pipeline("ship", gate="handler")
    async def ship(ctx: RunContext) -> dict[str, Any]:
        image = await ctx.step("build", build)
        decision = await ctx.approval("Ship image:1?", name="ship-it")
        return {"image": image, "decision": decision}

    run = await make_run(live, "ship", require_approval=True)
    rejected = await make_run(live, "ship", require_approval=True)
    async with serving_runner(runner, max_runs=3):
        blocked = await wait_for_status(live, run["id"], "blocked")
        assert blocked["approval"]["message"] == "Ship image:1?"
        await wait_for_status(live, rejected["id"], "blocked")
        approved = await live.post(f"/v1/runs/{run['id']}/approve", json={"comment": "go"})
        assert approved.status_code == 200, approved.text
        done = await wait_for_status(live, run["id"], "completed")
        assert (await live.post(f"/v1/runs/{rejected['id']}/reject")).status_code == 200
    assert done["attempt"] == 2
    assert done["output"]["image"] == "image:1"
    assert done["output"]["decision"]["comment"] == "go"
    assert built == ["image", "image"]  # once per run: the approved run did not build again
    assert (await live.get(f"/v1/runs/{rejected['id']}")).json()["status"] == "rejected"


async def test_a_gate_before_the_handler_and_no_gate_without_approval(
    live: httpx.AsyncClient,
) -> None:
    await make_pipeline(live, "guarded", executor={"type": "worker"})
    runner = runner_for(live)
    started: list[str] = []

    @runner.pipeline("guarded")
    async def guarded(ctx: RunContext) -> Any:
        started.append(ctx.run_id)
        return await ctx.approval("Go?")  # the gate passed before the handler, or none

    run = await make_run(live, "guarded", require_approval=True)
    plain = await make_run(live, "guarded")
    async with serving_runner(runner, max_runs=3):
        await wait_for_status(live, run["id"], "blocked")
        assert (await wait_for_status(live, plain["id"], "completed"))["output"] is None
        assert started == [plain["id"]]
        await live.post(f"/v1/runs/{run['id']}/approve", json={"comment": "ok"})
        done = await wait_for_status(live, run["id"], "completed")
    assert started == [plain["id"], run["id"]]
    assert done["output"]["comment"] == "ok"
    assert [(s["name"], s["status"]) for s in done["steps"]] == [("approval", "completed")]


async def test_a_cancel_reaches_the_handler_through_the_heartbeat(
    live: httpx.AsyncClient,
) -> None:
    await make_pipeline(live, "long", executor={"type": "worker"}, lease_seconds=1)
    runner = runner_for(live)
    entered, cancelled = asyncio.Event(), asyncio.Event()

    @runner.pipeline("long")
    async def long(ctx: RunContext) -> None:
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    run = await make_run(live, "long")
    async with serving_runner(runner, max_runs=1):
        await asyncio.wait_for(entered.wait(), 10)
        answer = (await live.post(f"/v1/runs/{run['id']}/cancel")).json()
        assert answer["result"] == "cancelling"
        await asyncio.wait_for(cancelled.wait(), 5)
        done = await wait_for_status(live, run["id"], "cancelled")
    assert done["error"] is None
    ended = [e for e in await events_of(live, run["id"]) if e["type"] == "run.cancelled"]
    assert ended[0]["data"]["previous_status"] == "cancelling"
    assert "reason" not in ended[0]["data"]  # acknowledged by the runner, not the sweeper


async def test_a_lost_lease_stops_the_handler_without_a_report(live: httpx.AsyncClient) -> None:
    await make_pipeline(live, "doomed", executor={"type": "worker"}, lease_seconds=1)
    runner = runner_for(live)
    entered, stopped = asyncio.Event(), asyncio.Event()

    @runner.pipeline("doomed")
    async def doomed(ctx: RunContext) -> None:
        entered.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()

    run = await make_run(live, "doomed")
    async with serving_runner(runner, max_runs=1):
        await asyncio.wait_for(entered.wait(), 10)
        forced = (await live.post(f"/v1/runs/{run['id']}/cancel", json={"force": True})).json()
        assert forced["result"] == "cancelled"
        await asyncio.wait_for(stopped.wait(), 5)  # the next heartbeat got 409 stale_lease
    final = [e["type"] for e in await events_of(live, run["id"])]
    assert final[-1] == "run.cancelled"
    assert final.count("run.cancelled") == 1


async def test_serve_stops_on_request_and_returns_what_it_handled(
    live: httpx.AsyncClient,
) -> None:
    runner = runner_for(live)

    @runner.pipeline("idle")
    async def idle(ctx: RunContext) -> None:
        return None

    async with serving_runner(runner) as served:
        await asyncio.sleep(0.3)
    assert served.result() == 0
    with pytest.raises(TypeError, match="async def"):
        runner.pipeline("sync")(lambda ctx: None)
    with pytest.raises(RuntimeError, match="no pipelines"):
        await Runner(str(live.base_url)).serve()


async def test_a_stopping_runner_hands_unfinished_runs_back(live: httpx.AsyncClient) -> None:
    await make_pipeline(live, "endless", executor={"type": "worker"})
    runner = runner_for(live)
    entered = asyncio.Event()

    @runner.pipeline("endless")
    async def endless(ctx: RunContext) -> None:
        await ctx.step("first", lambda: "done")
        entered.set()
        await asyncio.sleep(60)

    run = await make_run(live, "endless")  # max_attempts 1: a lost lease would fail it
    stop = asyncio.Event()
    served = asyncio.create_task(runner.serve(stop=stop, grace_seconds=0.2))
    await asyncio.wait_for(entered.wait(), 10)
    stop.set()
    await asyncio.wait_for(served, 10)
    back = (await live.get(f"/v1/runs/{run['id']}")).json()
    assert (back["status"], back["attempt"]) == ("queued", 1)
    retrying = (await live.get(f"/v1/runs/{run['id']}/events?type=run.retrying")).json()
    assert [e["data"]["reason"] for e in retrying["data"]] == ["released"]
    assert [(s["name"], s["status"]) for s in back["steps"]] == [("first", "completed")]
