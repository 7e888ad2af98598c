"""Idempotency keys (DESIGN §3, §15): the first answer to a request, kept 24 h, is the answer
to every retry of it; a retry with another body is 409; a retry while the first is still being
handled is 409 ``idempotency_in_progress``.

On PostgreSQL (replicas share keys) a key is claimed (``in_progress``) in its own committed
transaction before the request runs, so of two concurrent requests with one key exactly one
runs; a claim whose request never finished (the server died mid-way) is taken over after
:data:`ABANDONED_SECONDS`. On SQLite the server is the only writer, so claims are held in
memory and finished answers are written in batches (group commit): a key costs the request
one read and a share of one write instead of two writes. The price: answers finished within
a few milliseconds before a crash are forgotten, and their retries run again — the same as a
claim abandoned mid-way on PostgreSQL.
"""

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from runyard.clock import utcnow
from runyard.db.engine import Database
from runyard.idempotency.tables import idempotency_keys as keys

TTL = timedelta(hours=24)
ABANDONED_SECONDS = 300
WRITE_ATTEMPTS = 5
GROUP_COMMIT_SECONDS = 0.01
_BY_ID = sa.select(keys).where(keys.c.id == sa.bindparam("_id"))  # built once: it runs a lot
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stored:
    status_code: int
    content_type: str | None
    location: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with a request: ``run`` it, ``replay`` a stored answer, or refuse it
    (``mismatch``, ``in_progress``)."""

    action: str
    stored: Stored | None = None
    token: str = ""  # the claim's own token: only its holder may complete or abandon it


def _decide(fingerprint: str, known: str, stored: Stored | None) -> Outcome:
    if known != fingerprint:
        return Outcome("mismatch")
    return Outcome("replay", stored) if stored is not None else Outcome("in_progress")


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.local = db.is_sqlite
        self._running: dict[str, tuple[str, str]] = {}  # key -> (fingerprint, token) (SQLite)
        self._finished: dict[str, tuple[str, Stored]] = {}  # answered, not yet written
        self._writer: asyncio.Task[None] | None = None

    async def begin(self, key_id: str, fingerprint: str) -> Outcome:
        if not self.local:
            return await self._begin_shared(key_id, fingerprint)
        if key_id in self._running:
            return _decide(fingerprint, self._running[key_id][0], None)
        if key_id in self._finished:
            known, stored = self._finished[key_id]
            return _decide(fingerprint, known, stored)
        token = uuid.uuid4().hex
        self._running[key_id] = (fingerprint, token)  # claimed before the read: no second one
        try:
            async with self.db.read() as conn:
                existing = (await conn.execute(_BY_ID, {"_id": key_id})).first()
        except BaseException:
            del self._running[key_id]
            raise
        if existing is None or existing.expires_at <= utcnow() or existing.state != "done":
            return Outcome("run", token=token)
        del self._running[key_id]
        stored = Stored(
            existing.status_code,
            existing.content_type,
            existing.location,
            bytes(existing.body or b""),
        )
        return _decide(fingerprint, existing.fingerprint, stored)

    async def _begin_shared(self, key_id: str, fingerprint: str) -> Outcome:
        """Claim the key with a committed row; take over an expired or abandoned claim only
        if it is still the one that was read (compare-and-set on its token)."""
        for _ in range(3):
            now = utcnow()
            token = uuid.uuid4().hex
            claim = {
                "fingerprint": fingerprint,
                "state": "in_progress",
                "claim_token": token,
                "status_code": None,
                "content_type": None,
                "location": None,
                "body": None,
                "created_at": now,
                "expires_at": now + TTL,
            }
            try:
                async with self.db.write() as tx:
                    await tx.conn.execute(sa.insert(keys).values(id=key_id, **claim))
                return Outcome("run", token=token)
            except IntegrityError:
                pass
            async with self.db.write() as tx:
                existing = (await tx.conn.execute(_BY_ID, {"_id": key_id})).first()
                if existing is None:
                    continue
                stale = existing.expires_at <= now or (
                    existing.state == "in_progress"
                    and (now - existing.created_at).total_seconds() > ABANDONED_SECONDS
                )
                if stale:
                    taken = await tx.conn.execute(
                        sa.update(keys)
                        .where(keys.c.id == key_id, keys.c.claim_token == existing.claim_token)
                        .values(**claim)
                        .returning(keys.c.id)
                    )
                    if taken.first() is not None:
                        return Outcome("run", token=token)
                    continue
                if existing.fingerprint != fingerprint:
                    return Outcome("mismatch")
                if existing.state != "done":
                    return Outcome("in_progress")
                stored = Stored(
                    existing.status_code,
                    existing.content_type,
                    existing.location,
                    bytes(existing.body or b""),
                )
                return Outcome("replay", stored)
        return Outcome("in_progress")

    async def complete(self, key_id: str, token: str, stored: Stored) -> None:
        if self.local:
            fingerprint, held = self._running.get(key_id, ("", ""))
            if held != token:
                return
            del self._running[key_id]
            self._finished[key_id] = (fingerprint, stored)
            if self._writer is None or self._writer.done():
                self._writer = asyncio.create_task(self._write_finished())
            return
        async with self.db.write() as tx:
            await tx.conn.execute(
                sa.update(keys)
                .where(keys.c.id == key_id, keys.c.claim_token == token)
                .values(
                    state="done",
                    status_code=stored.status_code,
                    content_type=stored.content_type,
                    location=stored.location,
                    body=stored.body,
                )
            )

    async def abandon(self, key_id: str, token: str) -> None:
        """Forget a claim whose request did not produce a storable answer (a 5xx, a stream)."""
        if self.local:
            if self._running.get(key_id, ("", ""))[1] == token:
                del self._running[key_id]
            return
        async with self.db.write() as tx:
            await tx.conn.execute(
                sa.delete(keys).where(keys.c.id == key_id, keys.c.claim_token == token)
            )

    async def purge_expired(self, limit: int = 1000) -> None:
        async with self.db.write() as tx:
            doomed = sa.select(keys.c.id).where(keys.c.expires_at < utcnow()).limit(limit)
            await tx.conn.execute(sa.delete(keys).where(keys.c.id.in_(doomed)))

    async def _write_finished(self) -> None:
        """Write the answers finished so far in one transaction, until none are left (after
        :data:`GROUP_COMMIT_SECONDS`, so that answers arriving together share a write)."""
        await asyncio.sleep(GROUP_COMMIT_SECONDS)
        failures = 0
        while self._finished:
            batch = dict(self._finished)
            now = utcnow()
            rows: list[dict[str, Any]] = [
                {
                    "id": key_id,
                    "fingerprint": fingerprint,
                    "state": "done",
                    "status_code": stored.status_code,
                    "content_type": stored.content_type,
                    "location": stored.location,
                    "body": stored.body,
                    "claim_token": "",
                    "created_at": now,
                    "expires_at": now + TTL,
                }
                for key_id, (fingerprint, stored) in batch.items()
            ]
            try:
                async with self.db.write() as tx:  # an expired row of the same key goes first
                    await tx.conn.execute(sa.delete(keys).where(keys.c.id.in_(list(batch))))
                    await tx.conn.insert_many(keys, rows)
            except Exception:
                failures += 1
                if failures < WRITE_ATTEMPTS:
                    log.exception("writing %d idempotency answers failed; retrying", len(rows))
                    await asyncio.sleep(1)
                    continue
                log.exception("dropping %d idempotency answers that cannot be written", len(rows))
            failures = 0
            for key_id, entry in batch.items():
                if self._finished.get(key_id) is entry:
                    del self._finished[key_id]

    async def close(self) -> None:
        """Write what is still in memory (at shutdown)."""
        if self._writer is not None:
            await self._writer
        if self._finished:
            await self._write_finished()
