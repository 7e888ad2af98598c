"""Live SSE streams that never lose an event.

Algorithm (DESIGN §6.3): subscribe to the broker first, then replay from the database where
``sequence > resume``, then switch to live messages, dropping any sequence already sent. A live
message that jumps ahead (a gap) or a subscription that overflowed sends the reader back to the
database for the missing range; a subscriber that keeps falling behind gets ``stream.reset``.

Broker messages carry ready-made SSE frames for a contiguous range of sequences:
``b"<first> <last> <type of last>\\n" + frames``. A deleted stream's last message is
:data:`DELETED`: its readers end with ``stream.end`` ``{"status": "deleted"}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from runyard.events.schemas import envelope_frame
from runyard.http.sse import KEEPALIVE, frame, retry_hint

if TYPE_CHECKING:
    from runyard.broker import Broker
    from runyard.events.service import EventService
    from runyard.observability.metrics import Metrics
    from runyard.settings import Settings

TERMINAL_RUN_EVENTS = {
    "run.completed": "completed",
    "run.failed": "failed",
    "run.cancelled": "cancelled",
    "run.rejected": "rejected",
}
_FRAME_END = b"\n\n"
#: what a batch holding a model's first token contains (``text.start`` comes with it)
_FIRST_TOKEN = b"\nevent: text.start\n"


#: the type of the message published when a stream is deleted (no frames, no sequences)
DELETED = "stream.deleted"


def channel(stream_id: str) -> str:
    return f"events:{stream_id}"


def pack(first: int, last: int, last_type: str, frames: bytes) -> bytes:
    return b"%d %d %s\n" % (first, last, last_type.encode()) + frames


def unpack(message: bytes) -> tuple[int, int, str, bytes]:
    head, frames = message.split(b"\n", 1)
    first, last, last_type = head.split(b" ", 2)
    return int(first), int(last), last_type.decode(), frames


def _frames_after(frames: bytes, first: int, after: int) -> bytes:
    """The frames of a packed range whose sequence is greater than ``after``."""
    parts = frames.split(_FRAME_END)[:-1]
    return b"".join(part + _FRAME_END for part in parts[after - first + 1 :])


class StreamReader:
    """One subscriber's view of one stream, from ``after`` on. It ends after an event of a
    ``terminal`` type (a run's or a build's end; none for a session), or when ``run_status``
    (the status of what the stream is of) is one of the terminal statuses."""

    def __init__(
        self,
        *,
        events: EventService,
        broker: Broker,
        settings: Settings,
        metrics: Metrics,
        stream_id: str,
        after: int,
        terminal: Mapping[str, str],
        run_status: Callable[[], Awaitable[str | None]] | None = None,
    ) -> None:
        self.events = events
        self.broker = broker
        self.settings = settings
        self.metrics = metrics
        self.stream_id = stream_id
        self.last = after
        self.terminal = terminal  # the event types that end the stream, and their status
        self.run_status = run_status
        self.ended = False

    async def frames(self) -> AsyncIterator[bytes]:
        subscription = await self.broker.subscribe(
            channel(self.stream_id), self.settings.sse_queue_size
        )
        self.metrics.sse_subscribers.inc()
        try:
            yield retry_hint(self.settings.sse_retry_ms)
            async for chunk in self._from_database():
                yield chunk
            async for chunk in self._end_if_finished():
                yield chunk
            resyncs = 0
            window = self.settings.sse_batch_window_ms / 1000
            loop = asyncio.get_running_loop()
            last_write = -window
            while not self.ended:
                if not await subscription.wait(self.settings.sse_keepalive_seconds):
                    yield KEEPALIVE
                    continue
                # a busy stream is written at most once per window, with all that arrived;
                # the first event after a quiet spell, and a model's first token, go at once
                messages, overflowed = subscription.drain()
                delay = last_write + window - loop.time()
                if delay > 0 and not overflowed and not any(_FIRST_TOKEN in m for m in messages):
                    await asyncio.sleep(delay)
                    more, overflowed = subscription.drain()
                    messages += more
                last_write = loop.time()
                if overflowed:
                    resyncs += 1
                    if resyncs > self.settings.sse_max_resyncs:
                        yield frame("stream.reset", {"resume_after": self.last})
                        return
                    async for chunk in self._from_database():
                        yield chunk
                    async for chunk in self._end_if_finished():
                        yield chunk
                    continue
                chunk = await self._from_messages(messages)
                if chunk:
                    yield chunk
        finally:
            self.metrics.sse_subscribers.dec()
            await self.broker.unsubscribe(subscription)

    async def _from_database(self, until: int | None = None) -> AsyncIterator[bytes]:
        """Replay committed events after ``self.last`` (up to ``until``)."""
        while not self.ended:
            batch, has_more = await self.events.page(
                self.stream_id, after=self.last, limit=1000, until=until
            )
            if batch:
                chunks = []
                for env in batch:
                    chunks.append(envelope_frame(env))
                    self.last = env["sequence"]
                    if self._is_end(env["type"]):
                        chunks.append(self._end_frame(env["type"]))
                        break
                yield b"".join(chunks)
            if not has_more:
                return

    async def _end_if_finished(self) -> AsyncIterator[bytes]:
        """End a stream whose run is over although its terminal event was not sent here: the
        client resumed after it, or the run was deleted while this reader was catching up."""
        if self.ended or self.run_status is None:
            return
        status = await self.run_status()
        if status is not None and status not in self.terminal.values():
            return
        async for chunk in self._from_database():  # whatever committed in the meantime first
            yield chunk
        if not self.ended:
            self.ended = True
            yield frame("stream.end", {"status": status or "deleted", "last_sequence": self.last})

    async def _from_messages(self, messages: list[bytes]) -> bytes:
        out: list[bytes] = []
        for message in messages:
            first, last, last_type, frames = unpack(message)
            if last_type == DELETED:
                self.ended = True
                out.append(frame("stream.end", {"status": "deleted", "last_sequence": self.last}))
                break
            if last <= self.last:
                continue  # already sent (replay overlapped live)
            if first > self.last + 1:  # a gap: read this range and what precedes it from the db
                out.extend([chunk async for chunk in self._from_database(until=last)])
                if self.ended:
                    break
                continue
            out.append(
                frames if first == self.last + 1 else _frames_after(frames, first, self.last)
            )
            self.last = last
            if self._is_end(last_type):
                out.append(self._end_frame(last_type))
                break
        return b"".join(out)

    def _is_end(self, event_type: str) -> bool:
        if event_type in self.terminal:
            self.ended = True
        return self.ended

    def _end_frame(self, event_type: str) -> bytes:
        status = self.terminal[event_type]
        return frame("stream.end", {"status": status, "last_sequence": self.last})
