"""`runyard worker` processes against a real `runyard serve`: a worker killed with SIGKILL
mid-run loses its lease, and a second worker completes the run without redoing finished steps."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runyard.client import Client
from tests.e2e.conftest import cli_env

pytestmark = pytest.mark.e2e

HANDLERS = textwrap.dedent(
    """
    import asyncio
    import os
    import pathlib

    from runyard.client import RunContext, Runner

    runner = Runner()
    here = pathlib.Path(__file__).parent


    def record(step: str) -> None:
        with (here / "steps.log").open("a") as log:
            log.write(f"{step} {os.getpid()}\\n")


    def prepare() -> str:
        record("prepare")
        return "prepared"


    async def deploy(attempt: int) -> str:
        record("deploy")
        if attempt == 1:
            await asyncio.sleep(3600)  # the first worker is killed here
        return "deployed"


    @runner.pipeline("killable")
    async def killable(ctx: RunContext) -> dict:
        (here / f"token-{ctx.attempt}").write_text(ctx.token)
        prepared = await ctx.step("prepare", prepare)
        ctx.log(f"attempt {ctx.attempt} after prepare")
        deployed = await ctx.step("deploy", deploy, ctx.attempt)
        return {"prepare": prepared, "deploy": deployed, "attempt": ctx.attempt}
    """
)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    return tmp_path


def start_worker(server: str, workdir: Path, name: str) -> subprocess.Popen[bytes]:
    with (workdir / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "runyard", "worker", "--import", "handlers", "--name", name],
            cwd=workdir,
            env={**cli_env(), "RUNYARD_URL": server},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def wait_until(check: "object", what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def step_log(workdir: Path) -> list[tuple[str, str]]:
    path = workdir / "steps.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(line.split()[0], line.split()[1]) for line in lines]


@pytest.mark.server_env(RUNYARD_LEASE_SECONDS="2")
def test_a_killed_worker_is_replaced_and_the_run_completes_exactly_once(
    server: str, workdir: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    with Client(server) as runyard:
        runyard.create_pipeline("killable", executor={"type": "worker"})
        run = runyard.create_run("killable", max_attempts=3)
        first = start_worker(server, workdir, "first")
        workers.append(first)
        wait_until(lambda: ("deploy", str(first.pid)) in step_log(workdir), "the first deploy")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)

        wait_until(lambda: runyard.get_run(run["id"])["status"] == "queued", "the re-queue")
        second = start_worker(server, workdir, "second")
        workers.append(second)
        done = runyard.wait_for_run(run["id"])

        assert done["status"] == "completed"
        assert done["attempt"] == 2
        assert done["output"] == {"prepare": "prepared", "deploy": "deployed", "attempt": 2}
        assert step_log(workdir) == [
            ("prepare", str(first.pid)),
            ("deploy", str(first.pid)),
            ("deploy", str(second.pid)),  # prepare was memoized, not run again
        ]

        # the dead attempt's late callbacks change nothing
        stale = {"authorization": f"Bearer {(workdir / 'token-1').read_text()}"}
        base = f"{server}/v1/runner/runs/{run['id']}"
        for path, body in [
            ("/status", {"status": "failed", "error": {"code": "x", "message": "late"}}),
            ("/events", {"type": "log", "data": {"message": "late"}}),
            ("/heartbeat", None),
            ("/steps/deploy", {"status": "failed"}),
        ]:
            late = httpx.post(base + path, json=body, headers=stale)
            assert late.status_code == 409, late.text
            assert late.json()["code"] == "stale_lease"

        events = list(runyard.stream(run["id"]))
        types = [e["type"] for e in events]
        assert types.count("run.completed") == 1
        assert types.count("run.retrying") == 1
        assert types[-1] == "run.completed"
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
        logs = [e["data"]["message"] for e in events if e["type"] == "log"]
        assert logs == ["attempt 1 after prepare", "attempt 2 after prepare"]
        assert runyard.get_run(run["id"]) == done  # nothing changed after the end
