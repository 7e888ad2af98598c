"""A real ``runyard serve`` process for end-to-end tests."""

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
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runyard",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
                *worker,
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
        assert process.poll() is None, log.read_text()
    else:
        process.kill()
        pytest.fail("runyard serve did not become healthy in 30 s")
    yield base
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
    assert (tmp_path / "data" / "runyard.db").exists()
