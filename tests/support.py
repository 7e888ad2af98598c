"""Helpers for tests: creating pipelines and runs, and a small SSE reader."""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "error", "request_id"}


async def make_pipeline(
    client: httpx.AsyncClient,
    name: str = "deploy",
    *,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    response = await client.post("/v1/pipelines", json={"name": name, **fields}, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def make_run(
    client: httpx.AsyncClient,
    pipeline: str = "deploy",
    *,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    response = await client.post("/v1/runs", json={"pipeline": pipeline, **fields}, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def post_events(
    client: httpx.AsyncClient, run_id: str, events: list[dict[str, Any]]
) -> dict[str, Any]:
    response = await client.post(f"/v1/runner/runs/{run_id}/events", json={"events": events})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def report(client: httpx.AsyncClient, run_id: str, **body: Any) -> httpx.Response:
    return await client.post(f"/v1/runner/runs/{run_id}/status", json=body)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = dict(response.json())
    assert body.keys() >= PROBLEM_KEYS, body
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://runyard.dev/problems/{code}"
    assert body["error"] == body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@dataclass
class Frame:
    event: str
    data: Any
    id: int | None = None


@dataclass
class SSEReader:
    """Parses frames from a streaming httpx response; remembers comments and retry hints."""

    response: httpx.Response
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    async def frames(self) -> AsyncIterator[Frame]:
        buffer = b""
        async for chunk in self.response.aiter_bytes():
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                frame = self._parse(block.decode())
                if frame is not None:
                    yield frame

    def _parse(self, block: str) -> Frame | None:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif line.startswith("retry: "):
                self.retry = int(line[len("retry: ") :])
            elif ": " in line:
                name, value = line.split(": ", 1)
                fields[name] = value
        if "event" not in fields:
            return None
        return Frame(
            event=fields["event"],
            data=orjson.loads(fields["data"]),
            id=int(fields["id"]) if "id" in fields else None,
        )


async def read_until_end(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None
) -> list[Frame]:
    """Every frame of an SSE stream up to and including ``stream.end``/``stream.reset``."""
    frames = []
    async with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        async for frame in SSEReader(response).frames():
            frames.append(frame)
            if frame.event in ("stream.end", "stream.reset"):
                break
    return frames


async def wait_for_status(
    client: httpx.AsyncClient, run_id: str, *statuses: str, seconds: float = 20
) -> dict[str, Any]:
    """The run once it is in one of ``statuses`` (polling, bounded by ``seconds``)."""
    deadline = time.monotonic() + seconds
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = dict((await client.get(f"/v1/runs/{run_id}")).json())
        if run["status"] in statuses:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} is {run.get('status')}, not one of {statuses}")


async def frames_of(chunks: AsyncIterator[bytes]) -> list[Frame]:
    """Every frame in a stream of SSE bytes (a :class:`StreamReader`'s, read directly)."""

    class Source:
        def aiter_bytes(self) -> AsyncIterator[bytes]:
            return chunks

    return [frame async for frame in SSEReader(Source()).frames()]  # type: ignore[arg-type]
