"""``RunContext``: what a runner handler gets for the run it executes.

Everything a handler reports goes through the runner API with the run's token, under the
lease of this attempt: a call after the lease was lost raises ``StaleLease``.
"""

import asyncio
import base64
import inspect
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from runyard.client.async_client import AsyncClient

EVENT_FLUSH_SECONDS = 0.05
EVENT_BATCH = 500
BATCH_BYTES = 2 * 1024 * 1024
log = logging.getLogger("runyard.runner")


class ApprovalPending(BaseException):
    """The run now waits at an approval gate: the handler stops here and runs again from the
    start once approved, with its completed steps memoized. (A ``BaseException``, so a
    handler's ``except Exception`` does not swallow it.)"""


class RunFailed(Exception):
    """Raise it from a handler to fail the run with this error ``code`` and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RunContext:
    """One attempt at one run: its input, memoized steps, events, artifacts and gates."""

    def __init__(self, client: AsyncClient, claim: dict[str, Any]) -> None:
        self.run: dict[str, Any] = claim["run"]
        self.lease: dict[str, Any] = claim["lease"]
        self.token: str = claim["token"]
        self.cancel_requested = False
        self.lease_lost = False
        self._client = client
        self._base = f"/v1/runner/runs/{self.run['id']}"
        self._done: dict[str, Any] = {
            s["name"]: s.get("output")
            for s in self.run.get("steps") or []
            if s.get("status") in ("completed", "skipped")
        }
        self._pending: list[dict[str, Any]] = []
        self._post_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    @property
    def run_id(self) -> str:
        return str(self.run["id"])

    @property
    def input(self) -> dict[str, Any]:
        return dict(self.run.get("input") or {})

    @property
    def attempt(self) -> int:
        return int(self.lease["attempt"])

    @property
    def require_approval(self) -> bool:
        return bool(self.run.get("require_approval"))

    @property
    def completed_steps(self) -> dict[str, Any]:
        """Outputs of the steps completed on earlier attempts (and this one), by name."""
        return dict(self._done)

    async def call(self, path: str, json: Any = None, **options: Any) -> Any:
        """A runner API call for this run (``path`` below ``/v1/runner/runs/{id}``)."""
        headers = {"authorization": f"Bearer {self.token}"}
        return await self._client.request(
            "POST", f"{self._base}{path}", json=json, headers=headers, **options
        )

    # steps
    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retries: int = 0,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` as the step ``name`` and return its result.

        Memoized: a step completed on an earlier attempt is not run again; its recorded output
        is returned. ``fn`` may be async; a plain function runs in a thread. A failure is
        recorded and retried up to ``retries`` times, then raised.
        """
        _check_name(name)
        if name in self._done:
            return self._done[name]
        for attempt in range(retries + 1):
            await self._record(name, "running")
            try:
                if inspect.iscoroutinefunction(fn):
                    output = await fn(*args, **kwargs)
                else:
                    output = await asyncio.to_thread(fn, *args, **kwargs)
                    if inspect.isawaitable(output):
                        output = await output
            except Exception as exc:
                error = {"code": "step_failed", "message": f"{type(exc).__name__}: {exc}"}
                await self._record(name, "failed", error=error)
                if attempt == retries:
                    raise
                continue
            await self._record(name, "completed", output=output)
            self._done[name] = output
            return output
        raise AssertionError("unreachable")  # pragma: no cover

    async def _record(self, name: str, status: str, **details: Any) -> None:
        await self.flush()  # the step's own events land before its end
        await self.call(f"/steps/{quote(name, safe='')}", {"status": status, **details})

    # gates
    async def approval(
        self,
        message: str,
        *,
        name: str = "approval",
        expires_in_seconds: int | None = None,
        on_expire: str = "reject",
        allow_self_approval: bool = True,
        always: bool = False,
    ) -> dict[str, Any] | None:
        """An approval gate named ``name``. It applies when the run requires approval (or
        ``always``); otherwise it is recorded as skipped and returns None.

        The first time, the run blocks and the handler stops (``ApprovalPending``); once
        approved the handler runs again and the gate returns ``{"approved_by", "comment"}``.
        A rejected run ends ``rejected`` and is not run again.
        """
        _check_name(name)
        if name in self._done:
            done: dict[str, Any] | None = self._done[name]
            return done
        if not (self.require_approval or always):
            await self._record(name, "skipped")
            self._done[name] = None
            return None
        decision = self.run.get("approval") or {}
        if decision.get("step") == name and decision.get("state") == "approved":
            output = {"approved_by": decision.get("decided_by"), "comment": decision.get("comment")}
            await self._record(name, "completed", output=output)
            self._done[name] = output
            return output
        await self._record(name, "running")
        body = {
            "message": message,
            "expires_in_seconds": expires_in_seconds,
            "on_expire": on_expire,
            "allow_self_approval": allow_self_approval,
            "step": name,
        }
        await self.call("/approval", body)
        raise ApprovalPending(name)

    # events, progress, artifacts
    def event(
        self, type: str, data: dict[str, Any] | None = None, *, step: str | None = None
    ) -> None:
        """Queue an event; queued events are sent in batches, in order, within 50 ms (and
        before any later step, progress, artifact or status call). Safe to call from a plain
        step function's thread."""
        item: dict[str, Any] = {"type": type, "data": data or {}}
        if step is not None:
            item["step"] = step
        if threading.get_ident() == self._loop_thread:
            self._queue(item)
        else:
            self._loop.call_soon_threadsafe(self._queue, item)

    def log(self, message: str, *, level: str = "info", **fields: Any) -> None:
        """A ``log`` event."""
        self.event("log", {"level": level, "message": message, **fields})

    def _queue(self, item: dict[str, Any]) -> None:
        self._pending.append(item)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(EVENT_FLUSH_SECONDS)
        try:
            await self.flush()
        except Exception as exc:  # kept queued: the next flush sends them again
            log.warning("run %s: events not sent yet (%s)", self.run_id, exc)

    async def flush(self) -> None:
        """Send every queued event now, in order. A batch that fails stays queued (at the
        front) for the next flush, and the error is raised."""
        async with self._post_lock:
            while self._pending:
                batch = self._next_batch()
                try:
                    await self.call("/events", {"events": batch})
                except BaseException:
                    self._pending[:0] = batch
                    raise

    def _next_batch(self) -> list[dict[str, Any]]:
        """The oldest queued events, at most ``EVENT_BATCH`` of them and about
        ``BATCH_BYTES`` (the server takes 1,000 events and 4 MiB)."""
        size, count = 0, 0
        for item in self._pending[:EVENT_BATCH]:
            size += len(json.dumps(item, default=str))
            if count and size > BATCH_BYTES:
                break
            count += 1
        batch, self._pending = self._pending[:count], self._pending[count:]
        return batch

    async def progress(self, value: float) -> None:
        """Report progress, from 0 to 1 (after the events queued before it)."""
        await self.flush()
        await self.call("/status", {"progress": value})

    async def artifact(
        self,
        path: str,
        content: bytes | str,
        *,
        artifact_type: str = "output",
        content_type: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Upload ``content`` as the artifact at ``path`` (served at ``/outputs/{path}``)."""
        body = content.encode() if isinstance(content, str) else content
        filename = path.rsplit("/", 1)[-1]
        form: dict[str, Any] = {"path": path, "artifact_type": artifact_type}
        if content_type is not None:
            form["content_type"] = content_type
        if metadata is not None:
            form["metadata"] = json.dumps(metadata)
        mime = content_type or "application/octet-stream"
        await self.flush()
        result: dict[str, Any] = await self.call(
            "/artifacts", files={"file": (filename, body, mime)}, data=form
        )
        return result

    def check_cancelled(self) -> None:
        """Raise ``CancelledError`` when a cancel was requested (for long synchronous work;
        an awaiting handler is cancelled at its next ``await`` by itself)."""
        if self.cancel_requested:
            raise asyncio.CancelledError("the run was cancelled")

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None

    def token_expires_in(self) -> float:
        """Seconds until the runner token expires (from its unverified ``exp`` claim)."""
        payload = self.token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"]) - time.time()


def _check_name(name: str) -> None:
    if not name or "/" in name:
        raise ValueError(f"a step name is not empty and has no '/': {name!r}")


Handler = Callable[[RunContext], Awaitable[Any]]
