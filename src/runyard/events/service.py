"""Appending to and reading from event streams.

Sequences come from the stream's counter row (see :func:`repo.reserve`); events are published
to the broker only after their transaction commits (:meth:`Tx.after_commit`).

A stream may have a **mirror**: every event written to it is also appended, in the same
transaction, to the mirror with the mirror's own sequences. A session's turn runs mirror into
the session's stream, so the session stream holds every event of every turn (DESIGN §15)
while each run keeps its own dense stream from 1.
"""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from runyard.broker import Broker
from runyard.clock import isoformat, utcnow
from runyard.db.engine import Database, Tx
from runyard.events import repo
from runyard.events.schemas import envelope, envelope_frame
from runyard.events.streaming import DELETED, channel, pack
from runyard.ids import new_ids
from runyard.observability.metrics import Metrics
from runyard.problems import NotFound

PAGE_SIZE = 1000
_MIRROR = "events.mirror"


@dataclass(slots=True)
class NewEvent:
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    step: str | None = None
    time: datetime | None = None


class Outbox(Protocol):
    """What else a run's events cause, written in their transaction (webhook deliveries)."""

    async def add(
        self, tx: Tx, workspace_id: str, run_id: str, envelopes: Sequence[dict[str, Any]]
    ) -> None: ...


class EventService:
    def __init__(
        self, db: Database, broker: Broker, metrics: Metrics, outbox: Outbox | None = None
    ) -> None:
        self.db = db
        self.broker = broker
        self.metrics = metrics
        self.outbox = outbox

    async def create_stream(
        self,
        tx: Tx,
        *,
        stream_id: str,
        workspace_id: str,
        kind: str,
        reserved: int = 0,
        mirror_id: str | None = None,
    ) -> None:
        """A new stream; ``reserved`` sequences (from 1) are taken for a first :meth:`write`.
        With ``mirror_id``, its events are also appended to that stream."""
        await repo.create_stream(
            tx.conn,
            stream_id=stream_id,
            workspace_id=workspace_id,
            kind=kind,
            created_at=utcnow(),
            last_sequence=reserved,
            mirror_id=mirror_id,
        )
        tx.memo[(_MIRROR, stream_id)] = mirror_id

    async def reserve(
        self, tx: Tx, stream_id: str, count: int, *, workspace_id: str | None = None
    ) -> int:
        """Take ``count`` sequences (holding the stream's lock until commit); the first one."""
        reserved = await repo.reserve(tx.conn, stream_id, count, workspace_id=workspace_id)
        if reserved is None:
            raise NotFound(f"event stream {stream_id} does not exist", code="stream_not_found")
        last, mirror_id = reserved
        tx.memo[(_MIRROR, stream_id)] = mirror_id
        return last - count + 1

    async def write(
        self,
        tx: Tx,
        stream_id: str,
        first: int,
        items: Sequence[NewEvent],
        *,
        run_id: str | None,
        source: str,
        attempt: int | None,
        workspace_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Insert ``items`` at the sequences reserved from ``first``; published after commit.
        A run's events also go to the outbox, in ``tx``; ``workspace_id`` (the stream's) saves
        looking it up."""
        now = utcnow()
        ids = new_ids("evt", len(items))
        rows = [
            {
                "id": ids[offset],
                "stream_id": stream_id,
                "sequence": first + offset,
                "run_id": run_id,
                "type": item.type,
                "time": item.time or now,
                "source": source,
                "step": item.step,
                "attempt": attempt,
                "data": item.data,
            }
            for offset, item in enumerate(items)
        ]
        await repo.insert(tx.conn, rows)
        envelopes = [
            {**row, "time": isoformat(now if item.time is None else item.time)}
            for row, item in zip(rows, items, strict=True)
        ]
        self._publish_after_commit(tx, stream_id, envelopes)
        mirror_id = tx.memo.get((_MIRROR, stream_id))
        if mirror_id is not None:
            await self._mirror(tx, mirror_id, rows, envelopes)
        if run_id is not None and self.outbox is not None:
            if workspace_id is None:
                workspace_id = await repo.stream_workspace(tx.conn, stream_id)
            await self.outbox.add(tx, workspace_id, run_id, envelopes)
        return envelopes

    def _publish_after_commit(
        self, tx: Tx, stream_id: str, envelopes: Sequence[dict[str, Any]]
    ) -> None:
        first, last = envelopes[0]["sequence"], envelopes[-1]["sequence"]
        frames = b"".join(map(envelope_frame, envelopes))
        message = pack(first, last, envelopes[-1]["type"], frames)

        async def publish() -> None:
            self.metrics.events_appended.inc(len(envelopes))
            await self.broker.publish(channel(stream_id), message)

        tx.after_commit(publish)

    async def _mirror(
        self,
        tx: Tx,
        mirror_id: str,
        rows: Sequence[dict[str, Any]],
        envelopes: Sequence[dict[str, Any]],
    ) -> None:
        """Copies of just-written events at the end of the mirror stream (own ids)."""
        first = await self.reserve(tx, mirror_id, len(rows))
        ids = new_ids("evt", len(rows))
        copies = [
            {**row, "id": ids[n], "stream_id": mirror_id, "sequence": first + n}
            for n, row in enumerate(rows)
        ]
        await repo.insert(tx.conn, copies)
        self._publish_after_commit(
            tx,
            mirror_id,
            [
                {**env, "id": ids[n], "stream_id": mirror_id, "sequence": first + n}
                for n, env in enumerate(envelopes)
            ],
        )

    async def append(
        self,
        tx: Tx,
        stream_id: str,
        items: Sequence[NewEvent],
        *,
        run_id: str | None,
        source: str,
        attempt: int | None,
        workspace_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Append ``items`` with contiguous sequences; published after ``tx`` commits."""
        first = await self.reserve(tx, stream_id, len(items))
        return await self.write(
            tx,
            stream_id,
            first,
            items,
            run_id=run_id,
            source=source,
            attempt=attempt,
            workspace_id=workspace_id,
        )

    async def counts(self, stream_id: str) -> list[tuple[str, str | None, int]]:
        """(type, level or console stream, count) over a stream."""
        async with self.db.read() as conn:
            return await repo.counts(conn, stream_id)

    async def first_time(self, stream_id: str, *, sources: Sequence[str]) -> datetime | None:
        async with self.db.read() as conn:
            return await repo.first_time(conn, stream_id, sources)

    async def latest_of_type(self, workspace_id: str, event_type: str) -> dict[str, Any] | None:
        """The newest event of a type in any of the workspace's streams."""
        async with self.db.read() as conn:
            row = await repo.latest_of_type(conn, workspace_id, event_type)
        return envelope(row) if row is not None else None

    async def lock_streams(self, tx: Tx, stream_ids: Sequence[str]) -> None:
        """Hold these streams' counters until commit, taken in id order."""
        if stream_ids:
            await repo.lock_streams(tx.conn, sorted(stream_ids))

    async def delete_stream(self, tx: Tx, stream_id: str) -> None:
        """Delete the stream's events; once committed, its live readers end."""
        await repo.delete_stream(tx.conn, stream_id)

        async def publish() -> None:
            await self.broker.publish(channel(stream_id), pack(0, 0, DELETED, b""))

        tx.after_commit(publish)

    async def page(
        self,
        stream_id: str,
        *,
        after: int,
        limit: int,
        types: Sequence[str] = (),
        until: int | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` events after ``after``, and whether more follow."""
        async with self.db.read() as conn:
            rows = await repo.page(
                conn, stream_id, after=after, limit=limit + 1, types=types, until=until
            )
        return [envelope(row) for row in rows[:limit]], len(rows) > limit

    async def iterate(
        self, stream_id: str, *, after: int = 0, types: Sequence[str] = (), limit: int | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of events after ``after`` until the end of what is committed (or ``limit``)."""
        remaining = limit
        while remaining is None or remaining > 0:
            size = PAGE_SIZE if remaining is None else min(PAGE_SIZE, remaining)
            batch, has_more = await self.page(stream_id, after=after, limit=size, types=types)
            if batch:
                yield batch
                after = batch[-1]["sequence"]
                if remaining is not None:
                    remaining -= len(batch)
            if not has_more:
                return


def dumps_line(env: dict[str, Any]) -> bytes:
    return orjson.dumps(env) + b"\n"
