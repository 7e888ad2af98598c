"""Events a step produces, batched into the run's stream.

Lines and log calls arrive one by one (also from threads, for synchronous ``python`` steps);
they are written in batches every 50 ms, so a chatty command costs a few appends a second.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from runyard.events.service import NewEvent
from runyard.problems import DomainError

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.05
MAX_BATCH = 500


class EventBuffer:
    """``flush_seconds=0`` writes as soon as the writer is free, with everything that queued
    while it wrote (a model's tokens: the first one is not held back)."""

    def __init__(
        self,
        write: Callable[[list[NewEvent]], Awaitable[None]],
        *,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self._write = write
        self._flush_seconds = flush_seconds or None
        self._pending: list[NewEvent] = []
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()
        self._task = self._loop.create_task(self._run())

    def put(self, event: NewEvent) -> None:
        """Queue an event; safe to call from another thread."""
        if self._loop.is_running() and _on_loop(self._loop):
            self._add(event)
        else:
            self._loop.call_soon_threadsafe(self._add, event)

    def _add(self, event: NewEvent) -> None:
        self._pending.append(event)
        if self._flush_seconds is None or len(self._pending) >= MAX_BATCH:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_seconds)
            self._wake.clear()
            try:
                await self.flush()
            except DomainError as exc:  # the run was cancelled at once, or its lease expired
                log.info("dropping a batch of events: %s", exc.detail)
                self._pending.clear()
            except Exception:  # the database blinked: drop it
                log.exception("dropping a batch of step events")

    async def flush(self) -> None:
        """Write what is pending; one writer at a time, so batches keep their order."""
        async with self._writing:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                await self._write(batch)

    async def close(self) -> None:
        """Stop the background writer once no batch is in flight (a batch taken off the queue
        is written, not lost), then write what is left."""
        async with self._writing:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
