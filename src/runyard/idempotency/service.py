"""Idempotency keys (DESIGN §3, §15): the first answer to a request, kept 24 h, is the answer
to every retry of it; a retry with another body is 409; a retry while the first is still being
handled is 409 ``idempotency_in_progress``.

A key is claimed (``in_progress``) in its own committed transaction before the request runs,
so of two concurrent requests with one key exactly one runs. A claim whose request never
finished (the server died mid-way) is taken over after :data:`ABANDONED_SECONDS`.
"""

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from runyard.clock import utcnow
from runyard.db.engine import Database
from runyard.idempotency.tables import idempotency_keys as keys

TTL = timedelta(hours=24)
ABANDONED_SECONDS = 60


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


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def begin(self, key_id: str, fingerprint: str) -> Outcome:
        now = utcnow()
        row = {
            "id": key_id,
            "fingerprint": fingerprint,
            "state": "in_progress",
            "created_at": now,
            "expires_at": now + TTL,
        }
        for _ in range(3):  # an insert race, or taking over an expired or abandoned claim
            try:
                async with self.db.write() as tx:
                    await tx.conn.execute(sa.insert(keys).values(**row))
                return Outcome("run")
            except IntegrityError:
                pass
            async with self.db.write() as tx:
                found = await tx.conn.execute(sa.select(keys).where(keys.c.id == key_id))
                existing = found.first()
                if existing is None:
                    continue
                stale = existing.expires_at <= now or (
                    existing.state == "in_progress"
                    and (now - existing.created_at).total_seconds() > ABANDONED_SECONDS
                )
                if stale:
                    await tx.conn.execute(sa.delete(keys).where(keys.c.id == key_id))
                    continue
                if existing.fingerprint != fingerprint:
                    return Outcome("mismatch")
                if existing.state != "done":
                    return Outcome("in_progress")
                return Outcome(
                    "replay",
                    Stored(
                        existing.status_code,
                        existing.content_type,
                        existing.location,
                        bytes(existing.body or b""),
                    ),
                )
        return Outcome("in_progress")

    async def complete(self, key_id: str, stored: Stored) -> None:
        async with self.db.write() as tx:
            await tx.conn.execute(
                sa.update(keys)
                .where(keys.c.id == key_id)
                .values(
                    state="done",
                    status_code=stored.status_code,
                    content_type=stored.content_type,
                    location=stored.location,
                    body=stored.body,
                )
            )

    async def abandon(self, key_id: str) -> None:
        """Forget a claim whose request did not produce a storable answer (a 5xx, a stream)."""
        async with self.db.write() as tx:
            await tx.conn.execute(sa.delete(keys).where(keys.c.id == key_id))

    async def purge_expired(self, limit: int = 1000) -> None:
        async with self.db.write() as tx:
            doomed = sa.select(keys.c.id).where(keys.c.expires_at < utcnow()).limit(limit)
            await tx.conn.execute(sa.delete(keys).where(keys.c.id.in_(doomed)))
