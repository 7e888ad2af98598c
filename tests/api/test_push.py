"""Push runners (executor.type http, DESIGN §7, §15): jobs delivered over real HTTP to a
receiver the test serves on loopback."""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import free_port
from tests.support import make_pipeline, make_run, wait_for_status

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@dataclass
class Receiver:
    url: str = ""
    jobs: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # status codes to give, then 202


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def job(request: Request) -> Response:
        state.jobs.append(await request.json())
        state.headers.append(dict(request.headers))
        return Response(status_code=state.answers.pop(0) if state.answers else 202)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/job", job, methods=["POST"])]),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(250):
        if server.started:
            break
        await asyncio.sleep(0.02)
    state.url = f"http://127.0.0.1:{port}/job"
    yield state
    server.should_exit = True
    await asyncio.wait_for(task, 10)


@pytest.mark.settings(push_retry_base_seconds=0.05)
async def test_a_delivered_job_reports_back_through_the_runner_api(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.answers = [503, 503]  # two failures, then accepted
    await make_pipeline(
        client,
        executor={
            "type": "http",
            "url": receiver.url,
            "headers": {"X-Api-Key": "s3cret"},
        },
    )
    run = await make_run(client, input={"image": "cat.png"})
    running = await wait_for_status(client, run["id"], "running")
    assert running["runner_id"] == "rnr_push"
    for _ in range(100):
        if len(receiver.jobs) == 3:
            break
        await asyncio.sleep(0.05)
    job = receiver.jobs[-1]
    assert len(receiver.jobs) == 3 and receiver.headers[-1]["x-api-key"] == "s3cret"
    assert job["input"] == {"image": "cat.png"} and job["run"]["id"] == run["id"]
    assert job["callback_url"].endswith(f"/v1/runner/runs/{run['id']}")
    auth = {"Authorization": f"Bearer {job['runner_token']}"}
    path = f"/v1/runner/runs/{run['id']}"
    assert (await client.post(f"{path}/heartbeat", headers=auth)).status_code == 200
    await client.post(
        f"{path}/events", json={"type": "log", "data": {"message": "hi"}}, headers=auth
    )
    done = await client.post(f"{path}/status", json={"status": "completed"}, headers=auth)
    assert done.json()["run"]["status"] == "completed"


@pytest.mark.settings(push_retry_base_seconds=0.02)
async def test_an_unreachable_target_fails_the_run_with_trigger_failed(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(
        client, executor={"type": "http", "url": f"http://127.0.0.1:{free_port()}/"}
    )
    started = time.monotonic()
    failed = await wait_for_status(client, (await make_run(client))["id"], "failed")
    assert failed["error"]["code"] == "trigger_failed"
    assert "ConnectError" in failed["error"]["message"]
    assert time.monotonic() - started < 15


@pytest.mark.settings(push_retry_base_seconds=0.5)
async def test_a_target_that_refuses_the_job_fails_it_at_once(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.answers = [422]
    await make_pipeline(client, executor={"type": "http", "url": receiver.url})
    started = time.monotonic()
    failed = await wait_for_status(client, (await make_run(client))["id"], "failed")
    assert failed["error"]["code"] == "trigger_failed" and "HTTP 422" in failed["error"]["message"]
    assert len(receiver.jobs) == 1 and time.monotonic() - started < 5


async def wait_for_jobs(receiver: Receiver, count: int) -> None:
    for _ in range(200):
        if len(receiver.jobs) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(receiver.jobs)} jobs arrived, not {count}")


@pytest.mark.settings(worker_enabled=True)
async def test_an_http_step_waits_for_the_remote_to_report_it(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await make_pipeline(
        client,
        steps=[
            {"name": "render", "uses": "http", "with": {"url": receiver.url, "quality": "high"}},
            {
                "name": "count",
                "uses": "command",
                "with": {"run": "echo {{ steps.render.output.pages }}"},
            },
        ],
    )
    run = await make_run(client, input={"doc": "a.md"})
    await wait_for_jobs(receiver, 1)
    job = receiver.jobs[0]
    assert job["step"] == "render" and job["with"]["quality"] == "high"
    assert job["input"] == {"doc": "a.md"}
    await asyncio.sleep(0.5)
    assert (await client.get(f"/v1/runs/{run['id']}")).json()["status"] == "running"
    reported = await client.post(
        f"/v1/runner/runs/{run['id']}/steps/render",
        json={"status": "completed", "output": {"pages": 3}},
        headers={"Authorization": f"Bearer {job['runner_token']}"},
    )
    assert reported.status_code == 200
    final = await wait_for_status(client, run["id"], "completed", "failed")
    assert final["status"] == "completed", final["error"]
    assert final["output"]["render"] == {"pages": 3}
    lines = (await client.get(f"/v1/runs/{run['id']}/logs?format=text")).text
    assert "[stdout] count 3" in lines
    completed = (await client.get(f"/v1/runs/{run['id']}/events?type=step.completed")).json()
    assert [e["step"] for e in completed["data"]] == ["render", "count"]


@pytest.mark.settings(worker_enabled=True)
async def test_an_http_step_the_remote_fails_fails_the_run(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await make_pipeline(
        client, steps=[{"name": "scan", "uses": "http", "with": {"url": receiver.url}}]
    )
    run = await make_run(client)
    await wait_for_jobs(receiver, 1)
    await client.post(
        f"/v1/runner/runs/{run['id']}/steps/scan",
        json={"status": "failed", "error": {"code": "virus_found", "message": "eicar"}},
        headers={"Authorization": f"Bearer {receiver.jobs[0]['runner_token']}"},
    )
    failed = await wait_for_status(client, run["id"], "failed")
    assert failed["error"] == {"code": "virus_found", "message": "eicar", "step": "scan"}
