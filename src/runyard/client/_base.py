"""What the sync and async clients share: options, retry policy, answers, SSE framing."""

import json
import os
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from runyard import __version__
from runyard.client.errors import error_for

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
MAX_BACKOFF_SECONDS = 30.0
MAX_STREAM_RECONNECTS = 100  # in a row, without an event in between
STREAM_READ_SECONDS = 90.0  # the server sends a keep-alive every 10 s by default


@dataclass(frozen=True)
class Options:
    """Client options; each falls back to an environment variable, then a default."""

    base_url: str
    api_key: str | None
    workspace: str | None
    timeout: float
    max_retries: int
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        base_url: str | None,
        api_key: str | None,
        workspace: str | None,
        timeout: float,
        max_retries: int,
    ) -> "Options":
        url = (base_url or os.environ.get("RUNYARD_URL") or DEFAULT_URL).rstrip("/")
        key = api_key or os.environ.get("RUNYARD_API_KEY") or None
        ws = workspace or os.environ.get("RUNYARD_WORKSPACE") or None
        headers = {"user-agent": f"runyard-python/{__version__}"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        if ws:
            headers["x-workspace-id"] = ws
        return cls(url, key, ws, timeout, max_retries, headers)


def request_headers(method: str, given: dict[str, str] | None) -> dict[str, str]:
    """Per-request headers: a POST carries one ``Idempotency-Key`` across its retries."""
    headers = dict(given or {})
    if method == "POST" and not any(k.lower() == "idempotency-key" for k in headers):
        headers["Idempotency-Key"] = uuid.uuid4().hex
    return headers


def retry_delay(attempt: int, response: httpx.Response | None) -> float | None:
    """Seconds to wait before retry number ``attempt`` (1-based), or None to give up now.

    A 408/429/502/503/504 answer is retried, honouring ``Retry-After`` (seconds); transport
    errors (``response`` None) are retried; any other answer is final.
    """
    if response is not None and response.status_code not in RETRY_STATUSES:
        return None
    if response is not None:
        after = response.headers.get("retry-after")
        if after is not None and after.strip().isdigit():
            return min(float(after), MAX_BACKOFF_SECONDS)
    base: float = min(0.25 * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
    return base * (0.5 + random.random() / 2)


def answer(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer (None when empty), or the mapped error."""
    if response.is_success:
        if response.status_code == 204 or not response.content:
            return None
        return response.json()
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    problem.setdefault("status", response.status_code)
    problem.setdefault("detail", response.text[:500] or response.reason_phrase)
    raise error_for(response.status_code, problem, response.headers.get("x-request-id"))


def drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class SSEDecoder:
    """Turns SSE lines into ``(event, id, data)`` frames (comments and ``retry:`` skipped)."""

    def __init__(self) -> None:
        self._event: str | None = None
        self._id: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, str | None, Any] | None:
        if line == "":
            if not self._data and self._event is None:
                return None
            raw = "\n".join(self._data)
            frame = (self._event or "message", self._id, json.loads(raw) if raw else None)
            self._event, self._id, self._data = None, None, []
            return frame
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "data":
            self._data.append(value)
        return None


@dataclass(frozen=True)
class Call:
    """One API request, built once for both clients."""

    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None


class Calls:
    """The requests behind the clients' convenience methods."""

    @staticmethod
    def create_run(pipeline: str, input: dict[str, Any] | None, fields: dict[str, Any]) -> Call:
        return Call("POST", "/v1/runs", {"pipeline": pipeline, "input": input or {}, **fields})

    @staticmethod
    def get_run(run_id: str) -> Call:
        return Call("GET", f"/v1/runs/{run_id}")

    @staticmethod
    def list_runs(filters: dict[str, Any]) -> Call:
        return Call("GET", "/v1/runs", params=drop_none(filters))

    @staticmethod
    def cancel_run(run_id: str, force: bool, reason: str | None) -> Call:
        return Call(
            "POST", f"/v1/runs/{run_id}/cancel", drop_none({"force": force, "reason": reason})
        )

    @staticmethod
    def decide(run_id: str, verb: str, comment: str | None) -> Call:
        return Call("POST", f"/v1/runs/{run_id}/{verb}", drop_none({"comment": comment}))

    @staticmethod
    def replay_run(run_id: str, fields: dict[str, Any]) -> Call:
        return Call("POST", f"/v1/runs/{run_id}/replay", fields)

    @staticmethod
    def create_pipeline(name: str, fields: dict[str, Any]) -> Call:
        return Call("POST", "/v1/pipelines", {"name": name, **fields})

    @staticmethod
    def get_pipeline(pipeline_id: str) -> Call:
        return Call("GET", f"/v1/pipelines/{pipeline_id}")

    @staticmethod
    def list_events(run_id: str, after_sequence: int, limit: int | None) -> Call:
        params = drop_none({"after_sequence": after_sequence, "limit": limit})
        return Call("GET", f"/v1/runs/{run_id}/events", params=params)


def stream_request(run_id: str, last: int) -> dict[str, Any]:
    """Keyword arguments of the SSE request resuming after sequence ``last``."""
    return {
        "method": "GET",
        "url": f"/v1/runs/{run_id}/events",
        "params": {"stream": "true"},
        "headers": {"accept": "text/event-stream", "last-event-id": str(last)},
    }


class StreamState:
    """Follows SSE frames of one run: which to yield, where to resume, when it is over."""

    def __init__(self, after_sequence: int) -> None:
        self.last = after_sequence
        self.ended = False

    def take(self, frame: tuple[str, str | None, Any]) -> tuple[dict[str, Any] | None, bool]:
        """``(event to yield or None, reconnect now)`` for one frame."""
        event, _, data = frame
        if event == "stream.end":
            self.ended = True
            return None, True
        if event == "stream.reset":
            self.last = max(self.last, int(data["resume_after"]))
            return None, True
        if isinstance(data, dict) and int(data.get("sequence", 0)) > self.last:
            self.last = int(data["sequence"])
            return data, False
        return None, False
