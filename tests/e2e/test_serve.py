"""``runyard serve`` as a real process on a free port, driven over real sockets."""

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import cli_env
from tests.support import SSEReader, read_until_end

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.mark.anyio
async def test_create_events_stream_and_finish_over_sockets(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        assert (await client.post("/v1/pipelines", json={"name": "deploy"})).status_code == 201
        run = (await client.post("/v1/runs", json={"pipeline": "deploy", "input": {"v": 1}})).json()
        url = f"/v1/runner/runs/{run['id']}"
        frames: list = []

        async def watch() -> None:
            frames.extend(await read_until_end(client, f"/v1/runs/{run['id']}/events?stream=true"))

        watcher = asyncio.create_task(watch())
        await client.post(f"{url}/status", json={"status": "running"})
        for i in range(5):
            await client.post(
                f"{url}/events",
                json={"type": "console.line", "data": {"stream": "stdout", "text": f"line {i}"}},
            )
        await client.post(f"{url}/status", json={"status": "completed", "output": {"ok": True}})
        await asyncio.wait_for(watcher, 30)
        assert [f.id for f in frames[:-1]] == list(range(1, 10))
        assert frames[-2].event == "run.completed"
        assert frames[-1].event == "stream.end" and frames[-1].data["status"] == "completed"
        final = (await client.get(f"/v1/runs/{run['id']}")).json()
        assert final["status"] == "completed" and final["output"] == {"ok": True}
        log = (await client.get(f"/v1/runs/{run['id']}/logs?format=text")).text
        assert log.count("[stdout] line") == 5
        async with client.stream(
            "GET",
            f"/v1/runs/{run['id']}/events",
            headers={"Accept": "text/event-stream", "Last-Event-ID": "8"},
        ) as r:
            tail = [f async for f in SSEReader(r).frames()]
        assert [(f.id, f.event) for f in tail] == [(9, "run.completed"), (None, "stream.end")]


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runyard", "db", "upgrade", "--data-dir", str(tmp_path / "d")],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    assert (tmp_path / "d" / "runyard.db").stat().st_size > 0


def test_serve_refuses_a_public_bind_in_open_mode(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "runyard",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "d"),
        ],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--insecure" in result.stderr


@pytest.mark.with_worker
@pytest.mark.anyio
async def test_the_embedded_worker_runs_a_steps_pipeline_end_to_end(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        health = (await client.get("/health")).json()
        assert health["runner_mode"] == "embedded"
        pipeline = {
            "name": "hello",
            "input_schema": {"type": "object", "required": ["who"]},
            "steps": [
                {"name": "greet", "uses": "command", "with": {"run": "echo hello {{ input.who }}"}},
                {
                    "name": "write",
                    "uses": "command",
                    "with": {"run": 'echo done > "$RUNYARD_OUTPUT_DIR/result.txt"'},
                },
            ],
        }
        assert (await client.post("/v1/pipelines", json=pipeline)).status_code == 201
        frames = []
        async with client.stream(
            "POST",
            "/v1/runs",
            json={"pipeline": "hello", "input": {"who": "world"}, "stream": True},
        ) as response:
            async for frame in SSEReader(response).frames():
                frames.append(frame)
                if frame.event == "stream.end":
                    break
        assert frames[-1].data["status"] == "completed"
        lines = [f.data["data"]["text"] for f in frames if f.event == "console.line"]
        assert lines == ["hello world"]
        assert [f.id for f in frames[:-1]] == list(range(1, len(frames)))


RUNYARD = [sys.executable, "-m", "runyard"]


def test_runyard_keys_create_bootstraps_the_first_admin_key(server: str, tmp_path: Path) -> None:
    """The key the CLI prints works at once; requests without it are then refused."""
    result = subprocess.run(
        [*RUNYARD, "keys", "create", "--role", "admin", "--data-dir", str(tmp_path / "data")],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    secret = result.stdout.strip()
    assert secret.startswith("ryk_")
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{server}/v1/runs", headers=headers).status_code == 200
    time.sleep(1.1)  # the server trusts "no key yet" for at most a second
    assert httpx.get(f"{server}/v1/runs").status_code == 401
    keys = httpx.get(f"{server}/v1/api-keys", headers=headers).json()["data"]
    assert [(k["role"], k["created_by"]) for k in keys] == [("admin", "runyard:cli")]
