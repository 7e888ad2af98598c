"""A real ``runyard serve`` process for end-to-end tests."""

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port


def cli_env() -> dict[str, str]:
    """The environment without RUNYARD_* variables, so the CLI runs on its defaults."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """`runyard serve` on its embedded defaults and a free port; yields its base URL.
    The embedded worker is off unless the test is marked ``with_worker``; a
    ``server_env(NAME=value)`` marker adds environment variables."""
    port = free_port()
    worker = [] if request.node.get_closest_marker("with_worker") else ["--no-worker"]
    extra = request.node.get_closest_marker("server_env")
    env = {**cli_env(), **(extra.kwargs if extra is not None else {})}
    process = start_serve(tmp_path / "data", port, env, tmp_path / "serve.log", *worker)
    yield f"http://127.0.0.1:{port}"
    stop(process)
    assert (tmp_path / "data" / "runyard.db").exists()


def start_serve(
    data_dir: Path, port: int, env: dict[str, str], log: Path, *args: str
) -> subprocess.Popen[bytes]:
    """`runyard serve` on ``data_dir`` and ``port`` (output in ``log``); returns once
    ``/health`` answers 200, and fails the test after 30 s."""
    serve = ["serve", "--port", str(port), "--data-dir", str(data_dir), *args]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "runyard", *serve],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        with contextlib.suppress(httpx.TransportError):
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1, trust_env=False)
            if health.status_code == 200:
                return process
        time.sleep(0.1)
    process.kill()
    pytest.fail("runyard serve did not become healthy in 30 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
