"""Start, probe, measure and stop the servers under test as real subprocesses.

Every server gets a fresh data directory and a free loopback port, writes its
output to a log file in that directory, and must answer ``GET /health`` with
200 within a bounded time.  Stopping sends SIGTERM to the process we started
(and to children it reported), then SIGKILL after a bounded wait.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNYARD_BIN = REPO_ROOT / ".venv" / "bin" / "runyard"


class ServerError(RuntimeError):
    """The server did not start or did not become healthy in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel considers free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def http_status(host: str, port: int, path: str, timeout: float = 2.0) -> int | None:
    """Status code of a GET, or None when the server cannot be reached."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


@dataclass
class Server:
    """A running server subprocess."""

    name: str
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path

    def _processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss_bytes(self) -> int:
        """Resident set size of the server process plus any children it spawned."""
        total = 0
        for proc in self._processes():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU seconds consumed so far (process and children)."""
        total = 0.0
        for proc in self._processes():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return total

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM our process (and the children it spawned), SIGKILL after ``timeout``."""
        procs = self._processes()
        for proc in procs:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(alive, timeout=5)
        if self.proc.poll() is None:  # pragma: no cover - psutil already reaped it
            self.proc.wait(timeout=5)


def start_server(
    name: str,
    argv: list[str],
    data_dir: Path,
    host: str,
    port: int,
    health_timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> Server:
    """Launch ``argv`` (with ``env`` added to this environment) and poll ``GET /health``
    (every 100 ms) until 200 or the timeout."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"{name}.log"
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Server(name, host, port, proc, data_dir, log_path)
    deadline = time.monotonic() + health_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{name} exited with {proc.returncode}:\n{server.log_tail()}")
        if http_status(host, port, "/health", timeout=1.0) == 200:
            return server
        time.sleep(0.1)
    server.stop()
    raise ServerError(f"{name} not healthy after {health_timeout:.0f}s:\n{server.log_tail()}")


def runyard_argv(
    binary: Path, host: str, port: int, data_dir: Path, *, worker: bool = False
) -> list[str]:
    """The documented way to start Runyard, without its built-in worker unless ``worker``."""
    argv = [str(binary), "serve", "--host", host, "--port", str(port), "--data-dir", str(data_dir)]
    return argv if worker else [*argv, "--no-worker"]


def bare_argv(host: str, port: int, data_dir: Path, driver: str = "thread") -> list[str]:
    """The bare comparison app (benchmarks/bare_app.py)."""
    return [
        sys.executable,
        "-m",
        "benchmarks.bare_app",
        "--host",
        host,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--driver",
        driver,
    ]


def probe_runyard(binary: Path, timeout: float = 20.0) -> str | None:
    """None when ``runyard serve --help`` works, else a one-line reason."""
    if not binary.exists():
        return f"{binary} does not exist"
    try:
        done = subprocess.run(
            [str(binary), "serve", "--help"], capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`runyard serve --help` failed: {exc}"
    if done.returncode != 0:
        last = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        return f"`runyard serve --help` exited {done.returncode}: {last[-1] if last else ''}"
    return None
