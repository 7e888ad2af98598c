"""A real webhook receiver on loopback, verifying every request with ``standardwebhooks``,
and helpers for the webhook API tests."""

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from standardwebhooks.webhooks import Webhook

from tests.conftest import free_port

# -- a receiver on loopback -----------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def verify(self, secret: str) -> dict[str, Any]:
        """The body, once its signature checks out with ``secret``."""
        payload: dict[str, Any] = Webhook(secret).verify(self.body, self.headers)
        return payload


@dataclass
class Receiver:
    """An ASGI app that records every request and answers with the next scripted status
    (then ``status``), after ``delay`` seconds."""

    status: int = 204
    script: list[int] = field(default_factory=list)
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(Received(headers, body))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.script.pop(0) if self.script else self.status
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def wait_for(self, count: int, seconds: float = 15) -> list[Received]:
        deadline = time.monotonic() + seconds
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} requests came"
            await asyncio.sleep(0.02)
        return self.requests


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    """``receiver`` served by uvicorn on a free loopback port; its URL in ``receiver.url``."""
    port = free_port()
    config = uvicorn.Config(
        receiver, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(250):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    assert server.started, "the receiver did not start"
    receiver.url = f"http://127.0.0.1:{port}/hooks/runyard"
    try:
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


# -- helpers --------------------------------------------------------------------------------


async def subscribe(
    client: httpx.AsyncClient,
    url: str,
    events: list[str],
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    response = await client.post(
        "/v1/webhooks", json={"url": url, "events": events, **fields}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def deliveries(client: httpx.AsyncClient, webhook_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": 200})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def wait_for_deliveries(
    client: httpx.AsyncClient,
    webhook_id: str,
    done: Callable[[list[dict[str, Any]]], bool],
    seconds: float = 15,
) -> list[dict[str, Any]]:
    """The webhook's deliveries once ``done`` holds for them (polling, bounded)."""
    deadline = time.monotonic() + seconds
    while True:
        found = await deliveries(client, webhook_id)
        if done(found):
            return found
        assert time.monotonic() < deadline, f"deliveries never got there: {found}"
        await asyncio.sleep(0.05)


def all_status(status: str, count: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda found: len(found) == count and all(d["status"] == status for d in found)


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def key(client: httpx.AsyncClient, role: str, headers: dict[str, str] | None = None) -> str:
    response = await client.post("/v1/api-keys", json={"name": role, "role": role}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["secret"])


def metric(text: str, result: str) -> float:
    found = re.search(rf'^runyard_webhook_deliveries_total{{result="{result}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


# -- subscriptions --------------------------------------------------------------------------
