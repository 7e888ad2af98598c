"""The outbox: a delivery row per matching subscription, written in the event's transaction.

:class:`EventService` hands every event appended to a run's stream to :meth:`Outbox.add`,
inside the transaction that inserts the event: a rolled-back event leaves no delivery, and a
committed one cannot lose its delivery. The hot path must not pay for webhooks it does not
have, so each workspace's enabled subscriptions are cached in memory: dropped here on every
change, on other replicas through a broker message (:data:`CHANGES`), and after
:data:`CACHE_SECONDS` in any case (a lost message). A workspace without subscriptions costs a
dictionary lookup per write.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from runyard.broker import Broker
from runyard.clock import isoformat, utcnow
from runyard.db.engine import Conn, Tx
from runyard.ids import new_ids
from runyard.webhooks import repo

log = logging.getLogger(__name__)

#: broker channel where a change of a workspace's subscriptions is announced (its id)
CHANGES = "webhooks:changed"
CACHE_SECONDS = 5.0
MAX_CACHED_WORKSPACES = 10_000

#: the run as the payload shows it, read in the event's transaction
RunLoader = Callable[[Conn, str, str], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class Patterns:
    """A subscription's ``events``: exact types, ``prefix.*`` and ``*``."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]
    everything: bool

    @classmethod
    def of(cls, patterns: Sequence[str]) -> "Patterns":
        return cls(
            exact=frozenset(p for p in patterns if not p.endswith("*")),
            prefixes=tuple(p[:-1] for p in patterns if p.endswith(".*")),
            everything="*" in patterns,
        )

    def match(self, event_type: str) -> bool:
        return self.everything or event_type in self.exact or event_type.startswith(self.prefixes)


@dataclass(frozen=True, slots=True)
class Subscription:
    webhook_id: str
    patterns: Patterns


class Outbox:
    def __init__(self, load_run: RunLoader) -> None:
        self.load_run = load_run
        #: set after a commit that wrote deliveries; the delivery loop waits on it
        self.wake = asyncio.Event()
        self._cache: dict[str, tuple[float, list[Subscription]]] = {}
        self._generation = 0  # bumped by every invalidation: a load that raced one is not kept

    def invalidate(self, workspace_id: str | None = None) -> None:
        """Forget a workspace's subscriptions (None: every workspace's)."""
        self._generation += 1
        if workspace_id is None:
            self._cache.clear()
        else:
            self._cache.pop(workspace_id, None)

    async def subscriptions(self, conn: Conn, workspace_id: str) -> list[Subscription]:
        cached = self._cache.get(workspace_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        generation = self._generation
        found = [
            Subscription(webhook_id, Patterns.of(patterns))
            for webhook_id, patterns in await repo.enabled_webhooks(conn, workspace_id)
        ]
        if generation == self._generation:
            if len(self._cache) >= MAX_CACHED_WORKSPACES:
                self._cache.clear()
            self._cache[workspace_id] = (now, found)
        return found

    async def add(
        self, tx: Tx, workspace_id: str, run_id: str, envelopes: Sequence[dict[str, Any]]
    ) -> None:
        """Deliveries of ``envelopes`` (events of run ``run_id``) to every matching
        subscription of the workspace, in ``tx``."""
        subscriptions = await self.subscriptions(tx.conn, workspace_id)
        if not subscriptions:
            return
        matches = [
            (subscription.webhook_id, envelope)
            for envelope in envelopes
            for subscription in subscriptions
            if subscription.patterns.match(envelope["type"])
        ]
        if not matches:
            return
        run = await self.load_run(tx.conn, workspace_id, run_id)
        now = utcnow()
        ts = isoformat(now)
        ids = new_ids("whd", len(matches))
        rows = []
        for delivery_id, (webhook_id, envelope) in zip(ids, matches, strict=True):
            body = {
                "event": envelope["type"],
                "payload": {
                    "run_id": run_id,
                    "workspace_id": workspace_id,
                    "event": envelope,
                    "run": run,
                },
                "ts": ts,
            }
            rows.append(
                {
                    "id": delivery_id,
                    "webhook_id": webhook_id,
                    "workspace_id": workspace_id,
                    "event": envelope["type"],
                    "event_id": envelope["id"],
                    "run_id": run_id,
                    "webhook_message_id": delivery_id,
                    "redelivery_of": None,
                    "body": orjson.dumps(body).decode(),
                    "status": "pending",
                    "attempts": 0,
                    "last_status_code": None,
                    "last_error": None,
                    "last_latency_ms": None,
                    "next_attempt_at": now,
                    "delivered_at": None,
                    "created_at": now,
                }
            )
        await repo.insert_deliveries(tx.conn, rows)
        tx.after_commit(self.notify)

    async def notify(self) -> None:
        self.wake.set()

    async def follow_changes(self, broker: Broker) -> None:
        """Drop what other replicas changed, until cancelled."""
        changes = await broker.subscribe(CHANGES, 1024)
        try:
            while True:
                if not await changes.wait(60.0):
                    continue
                messages, overflowed = changes.drain()
                if overflowed:
                    self.invalidate()
                for message in messages:
                    self.invalidate(message.decode())
        finally:
            with contextlib.suppress(Exception):
                await broker.unsubscribe(changes)
