"""``AsyncClient``: the Runyard API from asyncio code.

    async with AsyncClient() as runyard:              # RUNYARD_URL, RUNYARD_API_KEY
        run = await runyard.create_run("deploy", input={"env": "staging"})
        async for event in runyard.stream(run["id"]):  # resumes by itself after a drop
            print(event["sequence"], event["type"])

Requests are retried on transport errors and on 408/429/502/503/504 (honouring
``Retry-After``), up to ``max_retries``; each POST carries one ``Idempotency-Key`` across its
retries. Errors are the classes of ``runyard.client.errors``.
"""

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

import httpx

from runyard.client._base import (
    MAX_STREAM_RECONNECTS,
    STREAM_READ_SECONDS,
    Call,
    Calls,
    Options,
    SSEDecoder,
    StreamState,
    answer,
    request_headers,
    retry_delay,
    stream_request,
)
from runyard.client.errors import RateLimited, ServerError, TransportError


class AsyncClient:
    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        workspace: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = Options.resolve(base_url, api_key, workspace, timeout, max_retries)
        self._http = httpx.AsyncClient(
            base_url=self.options.base_url,
            headers=self.options.headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        files: Any = None,
        data: dict[str, Any] | None = None,
        request_timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Any:
        """One API call with retries; the decoded JSON answer (None for 204)."""
        method = method.upper()
        sent_headers = request_headers(method, headers)
        retries = self.options.max_retries if max_retries is None else max_retries
        extra: dict[str, Any] = {} if request_timeout is None else {"timeout": request_timeout}
        for attempt in range(1, retries + 2):
            try:
                response = await self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers=sent_headers,
                    files=files,
                    data=data,
                    **extra,
                )
            except httpx.TransportError as exc:
                if attempt > retries:
                    raise TransportError(f"{method} {path}: {exc!r}") from exc
                await asyncio.sleep(retry_delay(attempt, None) or 0)
                continue
            delay = retry_delay(attempt, response) if attempt <= retries else None
            if delay is None:
                return answer(response)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(self, call: Call) -> Any:
        return await self.request(call.method, call.path, json=call.json, params=call.params)

    async def create_run(
        self, pipeline: str, input: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Create (and by default queue) a run; ``fields`` as ``POST /v1/runs`` takes them."""
        return dict(await self._call(Calls.create_run(pipeline, input, fields)))

    async def get_run(self, run_id: str) -> dict[str, Any]:
        return dict(await self._call(Calls.get_run(run_id)))

    async def list_runs(self, **filters: Any) -> dict[str, Any]:
        """One page ``{"data", "next_cursor", "has_more"}``; filters as the API's query."""
        return dict(await self._call(Calls.list_runs(filters)))

    async def cancel_run(
        self, run_id: str, *, force: bool = False, reason: str | None = None
    ) -> dict[str, Any]:
        """``{"result", "run"}``: what the cancel did (see the API's cancel)."""
        return dict(await self._call(Calls.cancel_run(run_id, force, reason)))

    async def approve_run(self, run_id: str, *, comment: str | None = None) -> dict[str, Any]:
        return dict(await self._call(Calls.decide(run_id, "approve", comment)))

    async def reject_run(self, run_id: str, *, comment: str | None = None) -> dict[str, Any]:
        return dict(await self._call(Calls.decide(run_id, "reject", comment)))

    async def replay_run(self, run_id: str, **fields: Any) -> dict[str, Any]:
        return dict(await self._call(Calls.replay_run(run_id, fields)))

    async def create_pipeline(self, name: str, **fields: Any) -> dict[str, Any]:
        return dict(await self._call(Calls.create_pipeline(name, fields)))

    async def get_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        return dict(await self._call(Calls.get_pipeline(pipeline_id)))

    async def list_events(
        self, run_id: str, *, after_sequence: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        return dict(await self._call(Calls.list_events(run_id, after_sequence, limit)))

    async def stream(
        self, run_id: str, *, after_sequence: int = 0
    ) -> AsyncIterator[dict[str, Any]]:
        """Every event of the run after ``after_sequence``, live, until the run ends.

        A dropped connection or a ``stream.reset`` resumes from the last sequence seen
        (``Last-Event-ID``): each event is yielded once, in order.
        """
        state = StreamState(after_sequence)
        timeout = httpx.Timeout(self.options.timeout, read=STREAM_READ_SECONDS)
        failures = 0
        while failures < MAX_STREAM_RECONNECTS:
            failures += 1
            try:
                async with self._http.stream(
                    **stream_request(run_id, state.last), timeout=timeout
                ) as response:
                    if not response.is_success:
                        await response.aread()
                        answer(response)
                    decoder = SSEDecoder()
                    async for line in response.aiter_lines():
                        frame = decoder.feed(line)
                        if frame is None:
                            continue
                        event, reconnect = state.take(frame)
                        if event is not None:
                            failures = 0
                            yield event
                        if reconnect:
                            break
            except (httpx.TransportError, ServerError, RateLimited):
                await asyncio.sleep(
                    min(0.2 * failures, 5.0)
                )  # dropped, or the server is restarting
            if state.ended:
                return
        raise TransportError(
            f"the stream of {run_id} failed {MAX_STREAM_RECONNECTS} times in a row"
        )

    async def wait_for_run(self, run_id: str) -> dict[str, Any]:
        """The run once it is terminal, following its event stream."""
        async for _ in self.stream(run_id):
            pass
        return await self.get_run(run_id)
