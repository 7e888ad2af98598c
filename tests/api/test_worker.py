"""The embedded worker executes ``steps`` pipelines (DESIGN §7) on both databases."""

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from runyard.app import create_app
from runyard.container import Services
from runyard.settings import Settings
from runyard.worker.execution import RunExecution, WorkerTools
from tests.support import make_pipeline, make_run, wait_for_status

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def finished(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    return await wait_for_status(client, run_id, "completed", "failed", "cancelled", "rejected")


async def events(client: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    return list((await client.get(f"/v1/runs/{run_id}/events?limit=1000")).json()["data"])


@pytest.mark.settings(worker_enabled=True)
async def test_steps_run_in_order_with_templates_conditions_and_outputs(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(
        client,
        steps=[
            {
                "name": "build",
                "uses": "command",
                "with": {"run": "echo building {{ input.target }}; echo careful >&2"},
            },
            {"name": "double", "uses": "python", "with": {"function": "tests.worker_steps:double"}},
            {"name": "huge", "uses": "command", "if": "input.n > 100", "with": {"run": "exit 1"}},
            {
                "name": "report",
                "uses": "command",
                "with": {"run": ["python", "-c", "print({{ steps.double.output.value }} + 1)"]},
            },
        ],
    )
    run = await make_run(client, input={"target": "prod", "n": 21})
    final = await finished(client, run["id"])
    assert final["status"] == "completed", final["error"]
    assert final["output"] == {
        "build": {"exit_code": 0},
        "double": {"value": 42},
        "huge": None,
        "report": {"exit_code": 0},
    }
    assert [(s["name"], s["status"]) for s in final["steps"]] == [
        ("build", "completed"),
        ("double", "completed"),
        ("huge", "skipped"),
        ("report", "completed"),
    ]
    stream = await events(client, run["id"])
    lines = [
        (e["step"], e["data"]["stream"], e["data"]["text"])
        for e in stream
        if e["type"] == "console.line"
    ]
    assert lines == [
        ("build", "stdout", "building prod"),
        ("build", "stderr", "careful"),
        ("report", "stdout", "43"),
    ]
    logs = [e for e in stream if e["type"] == "log"]
    assert logs[0]["data"]["message"] == "doubling 21" and logs[0]["source"] == "worker"
    step_events = [(e["type"], e["step"]) for e in stream if e["type"].startswith("step.")]
    assert step_events == [
        ("step.started", "build"),
        ("step.completed", "build"),
        ("step.started", "double"),
        ("step.completed", "double"),
        ("step.completed", "huge"),
        ("step.started", "report"),
        ("step.completed", "report"),
    ]
    assert stream[-1]["type"] == "run.completed"
    assert [e["sequence"] for e in stream] == list(range(1, len(stream) + 1))


@pytest.mark.settings(worker_enabled=True)
async def test_a_failing_step_is_retried_then_fails_the_run_with_its_step(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(
        client,
        steps=[
            {"name": "flaky", "uses": "command", "retries": 1, "with": {"run": "echo try; exit 3"}},
            {"name": "never", "uses": "command", "with": {"run": "echo unreachable"}},
        ],
    )
    final = await finished(client, (await make_run(client))["id"])
    assert final["status"] == "failed"
    assert final["error"] == {
        "code": "command_failed",
        "message": "exited with code 3",
        "step": "flaky",
    }
    flaky = final["steps"][0]
    assert flaky["status"] == "failed" and flaky["attempt"] == 2
    assert [s["name"] for s in final["steps"]] == ["flaky"]

    await make_pipeline(
        client,
        name="py",
        steps=[
            {"name": "boom", "uses": "python", "with": {"function": "tests.worker_steps:explode"}},
        ],
    )
    boom = await finished(client, (await make_run(client, "py"))["id"])
    assert boom["error"]["code"] == "step_error"
    assert boom["error"]["message"] == "ValueError: no such region"


@pytest.mark.settings(worker_enabled=True)
async def test_a_step_over_its_timeout_is_killed_and_fails(client: httpx.AsyncClient) -> None:
    await make_pipeline(
        client,
        steps=[
            {"name": "slow", "uses": "command", "timeout_seconds": 1, "with": {"run": "sleep 30"}},
        ],
    )
    started = time.monotonic()
    final = await finished(client, (await make_run(client))["id"])
    assert final["status"] == "failed" and final["error"]["code"] == "step_timeout"
    assert time.monotonic() - started < 10


@pytest.mark.settings(worker_enabled=True, lease_seconds=1)
async def test_cancelling_a_running_step_stops_it(client: httpx.AsyncClient) -> None:
    await make_pipeline(
        client,
        steps=[
            {"name": "forever", "uses": "command", "with": {"run": "sleep 60"}},
        ],
    )
    run = await make_run(client)
    for _ in range(200):
        if (await client.get(f"/v1/runs/{run['id']}")).json()["current_step"] == "forever":
            break
        await asyncio.sleep(0.05)
    cancel = await client.post(f"/v1/runs/{run['id']}/cancel", json={"reason": "enough"})
    assert cancel.json()["result"] == "cancelling"
    started = time.monotonic()
    final = await finished(client, run["id"])
    assert final["status"] == "cancelled"
    assert time.monotonic() - started < 5  # seen on a heartbeat, not at the deadline
    types = [e["type"] for e in await events(client, run["id"])]
    assert types[-2:] == ["run.cancelling", "run.cancelled"]


@pytest.mark.settings(worker_enabled=True)
async def test_step_kinds_the_worker_cannot_run_fail_honestly(client: httpx.AsyncClient) -> None:
    await make_pipeline(client, steps=[{"name": "gate", "uses": "teleport"}])
    final = await finished(client, (await make_run(client))["id"])
    assert final["status"] == "failed"
    assert final["error"]["code"] == "unsupported_step" and final["error"]["step"] == "gate"


@pytest.mark.settings(lease_seconds=1)
async def test_a_resumed_run_does_not_execute_completed_steps_again(
    app: FastAPI, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    services: Services = app.state.services
    await make_pipeline(
        client,
        steps=[
            {
                "name": "once",
                "uses": "python",
                "with": {"function": "tests.worker_steps:count_calls"},
            },
            {
                "name": "hang",
                "uses": "python",
                "with": {"function": "tests.worker_steps:wait_for_release"},
            },
        ],
    )
    counter, release = tmp_path / "counter", tmp_path / "release"
    run = await make_run(
        client, input={"counter": str(counter), "release": str(release)}, max_attempts=2
    )

    async def execute_attempt() -> asyncio.Task[None]:
        claimed = await services.runs.claim(None, runner_id="rnr_test", executors=["steps"])
        assert claimed is not None
        tools = WorkerTools(services.artifacts, services.tokens, http, "http://runyard.test")
        work = RunExecution(services.runs, services.pipelines, tools, *claimed, tmp_path / "work")
        return asyncio.create_task(work.execute())

    http = httpx.AsyncClient()
    first = await execute_attempt()
    for _ in range(200):
        steps = (await client.get(f"/v1/runs/{run['id']}")).json()["steps"]
        if steps and steps[0]["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    first.cancel()  # the worker stops mid-run: it hands the run back (a kill -9 of a worker
    # process, which cannot, is tests/e2e/test_worker_process.py)
    for _ in range(200):
        if (await client.get(f"/v1/runs/{run['id']}")).json()["status"] == "queued":
            break
        await asyncio.sleep(0.05)
    release.write_text("go")
    second = await execute_attempt()
    await asyncio.wait_for(second, 20)
    final = await finished(client, run["id"])
    assert final["status"] == "completed" and final["attempt"] == 2
    assert counter.read_text() == "x"  # the completed step ran once, across two attempts
    assert final["output"] == {"once": "counted", "hang": "released"}
    await http.aclose()
    types = [e["type"] for e in await events(client, run["id"])]
    assert types.count("run.retrying") == 1 and types.count("run.completed") == 1


async def test_a_server_that_stops_hands_its_runs_back(settings: Settings) -> None:
    """Stopping `runyard serve` (a deploy, a restart) queues the embedded worker's runs again
    at once, without spending their attempt: the next server finishes them."""
    first = create_app(settings.model_copy(update={"worker_enabled": True}))
    async with LifespanManager(first):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://a")
        async with client:
            steps = [
                {"name": "quick", "uses": "command", "with": {"run": "echo done"}},
                {"name": "slow", "uses": "command", "with": {"run": "sleep 60"}},
            ]
            await make_pipeline(client, steps=steps)
            run = await make_run(client)  # max_attempts 1
            for _ in range(200):
                current = (await client.get(f"/v1/runs/{run['id']}")).json()
                if current["current_step"] == "slow":
                    break
                await asyncio.sleep(0.05)
    second = create_app(settings.model_copy(update={"worker_enabled": True}))
    async with LifespanManager(second):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://b")
        async with client:
            after = (await client.get(f"/v1/runs/{run['id']}/events?type=run.retrying")).json()
            assert [e["data"]["reason"] for e in after["data"]] == ["released"]
            await make_pipeline(client, "other")  # the second server is up and working
            resumed = await wait_for_status(client, run["id"], "running")
            assert resumed["attempt"] == 2  # max_attempts 1: the released one did not count
            assert (resumed["steps"][0]["name"], resumed["steps"][0]["status"]) == (
                "quick",
                "completed",
            )
            await client.post(f"/v1/runs/{run['id']}/cancel", json={"force": True})
