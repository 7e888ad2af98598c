"""Webhook deliveries are rows: one still pending when `runyard serve` is killed with SIGKILL
is sent by the restarted server (DESIGN §11). The subscription comes from
`RUNYARD_WEBHOOK_URL` and is not made twice by the restart."""

import base64
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import free_port
from tests.e2e.conftest import cli_env, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


class Hooks(ThreadingHTTPServer):
    """A receiver on loopback that records every POST and answers 204."""

    def __init__(self, port: int) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Hooks

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def serve(tmp_path: Path, port: int, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    """`runyard serve` on the test's data directory; returns once it is healthy."""
    return start_serve(tmp_path / "data", port, env, tmp_path / f"{name}.log", "--no-worker")


def wait_until(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_a_delivery_pending_when_the_server_is_killed_is_sent_after_a_restart(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    hook_port = free_port()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    env = {
        **cli_env(),
        "RUNYARD_WEBHOOK_URL": f"http://127.0.0.1:{hook_port}/hooks",
        "RUNYARD_WEBHOOK_SECRET": secret,
        "RUNYARD_WEBHOOK_ALLOW_PRIVATE": "true",
        "RUNYARD_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
        "RUNYARD_WEBHOOK_TIMEOUT_SECONDS": "2",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = serve(tmp_path, port, env, "first")
    processes.append(first)
    with httpx.Client(base_url=base, timeout=10) as runyard:
        [hook] = runyard.get("/v1/webhooks").json()["data"]
        assert hook["events"] == ["run.*"]
        assert runyard.post("/v1/pipelines", json={"name": "deploy"}).status_code == 201
        created = runyard.post("/v1/runs", json={"pipeline": "deploy", "start": False})
        run = created.json()

        def failed_once() -> bool:  # the receiver is down: connection refused
            [delivery] = runyard.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
            return bool(delivery["status"] == "retrying" and delivery["attempts"] >= 1)

        wait_until(failed_once, "a failed first attempt")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)

    receiver = Hooks(hook_port)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        second = serve(tmp_path, port, env, "second")
        processes.append(second)
        wait_until(lambda: len(receiver.received) >= 1, "the delivery after the restart")
        with httpx.Client(base_url=base, timeout=10) as runyard:
            [again] = runyard.get("/v1/webhooks").json()["data"]
            assert again["id"] == hook["id"]  # the restart did not make a second one

            def delivered() -> bool:
                found = runyard.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
                return bool(found[0]["status"] == "delivered")

            wait_until(delivered, "the delivery record")
            [delivery] = runyard.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
        assert delivery["attempts"] >= 2 and delivery["last_status_code"] == 204
        time.sleep(0.3)
        [(headers, body)] = receiver.received  # sent once
        assert headers["webhook-id"] == delivery["webhook_message_id"]
        assert headers["x-runyard-event"] == "run.created"
        sent = Webhook(secret).verify(body, headers)
        assert sent["event"] == "run.created" and sent["payload"]["run_id"] == run["id"]
        second.terminate()
        second.wait(10)
    finally:
        receiver.shutdown()
        receiver.server_close()
