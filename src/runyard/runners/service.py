"""Runners: the registry, long-poll claims, heartbeats and tokens.

Run state stays with :class:`RunService`; this service decides *who* gets a run and hands
out the token that fences its callbacks.
"""

import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from runyard.broker import Broker, Subscription
from runyard.clock import isoformat, utcnow
from runyard.context import Caller
from runyard.db.engine import Database
from runyard.ids import new_id
from runyard.problems import StaleLease
from runyard.runners.schemas import ClaimRequest, RunnerSpec
from runyard.runners.tables import runners
from runyard.runners.tokens import RunnerTokens
from runyard.runs.service import RunService, claims_channel
from runyard.settings import Settings

#: how often a busy runner's ``last_seen_at`` is written
SEEN_WRITE_SECONDS = 2.0
HANGUP_CHECK_SECONDS = 1.0
#: what pull runners take; ``http`` runs are pushed by the server (runners/push.py)
PULLED_EXECUTORS = ("steps", "worker")


class RunnerService:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        runs: RunService,
        tokens: RunnerTokens,
        settings: Settings,
    ) -> None:
        self.db = db
        self.broker = broker
        self.runs = runs
        self.tokens = tokens
        self.settings = settings
        self._seen: dict[tuple[str, str], tuple[str, float, tuple[Any, ...]]] = {}

    async def register(self, caller: Caller, spec: RunnerSpec) -> str:
        """The runner's id, recording it (by name, per workspace) as seen now.

        A runner claims many times a second when busy; its record is rewritten at most once
        per :data:`SEEN_WRITE_SECONDS` (or when its labels or version change), which is far
        finer than the lease-long silence that makes it ``offline``.
        """
        remembered = self._seen.get((caller.workspace_id, spec.name))
        fingerprint = (tuple(spec.labels), spec.version)
        if remembered is not None:
            runner_id, written_at, known = remembered
            if known == fingerprint and time.monotonic() - written_at < SEEN_WRITE_SECONDS:
                return runner_id
        runner_id = await self._write_registration(caller, spec)
        self._seen[(caller.workspace_id, spec.name)] = (runner_id, time.monotonic(), fingerprint)
        return runner_id

    async def _write_registration(self, caller: Caller, spec: RunnerSpec) -> str:
        now = utcnow()
        values = {"labels": spec.labels, "version": spec.version, "last_seen_at": now}
        for _ in range(2):  # a concurrent first registration of the same name wins the insert
            async with self.db.write() as tx:
                found = await tx.conn.execute(
                    sa.select(runners.c.id).where(
                        runners.c.workspace_id == caller.workspace_id, runners.c.name == spec.name
                    )
                )
                runner_id: str | None = found.scalar_one_or_none()
                if runner_id is not None:
                    await tx.conn.execute(
                        sa.update(runners).where(runners.c.id == runner_id).values(**values)
                    )
                    return runner_id
                runner_id = new_id("rnr")
                try:
                    await tx.conn.execute(
                        sa.insert(runners).values(
                            id=runner_id,
                            workspace_id=caller.workspace_id,
                            name=spec.name,
                            created_at=now,
                            **values,
                        )
                    )
                except IntegrityError:
                    continue
                return runner_id
        raise RuntimeError("runner registration raced twice")  # pragma: no cover

    async def claim(
        self,
        caller: Caller,
        body: ClaimRequest,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> dict[str, Any] | None:
        """A run for this runner, waiting up to ``wait_seconds`` for one to be queued.

        The runner subscribes to its workspace's queue wake-ups *before* looking, so a run
        queued between a look and the wait still wakes it; there is no polling loop. A
        claimer that hung up (``gone``) takes nothing: a run leased to a closed connection
        would sit out its lease and lose an attempt. Waiting claimers check that after every
        wake-up and at least every :data:`HANGUP_CHECK_SECONDS`.
        """
        runner_id = await self.register(caller, body.runner)
        subscription = await self.broker.subscribe(claims_channel(caller.workspace_id), 16)
        deadline = time.monotonic() + body.wait_seconds
        try:
            while True:
                claimed = await self.runs.claim(
                    caller.workspace_id,
                    runner_id=runner_id,
                    pipelines=body.pipelines,
                    executors=PULLED_EXECUTORS,
                )
                if claimed is not None:
                    break
                if not await self._woken(subscription, deadline, gone):
                    return None
        finally:
            await self.broker.unsubscribe(subscription)
        run, lease = claimed
        token, _ = self.tokens.issue(
            run_id=run["id"],
            workspace_id=caller.workspace_id,
            attempt=lease["attempt"],
            lease_id=lease["id"],
        )
        return {
            "run": run,
            "lease": {
                "id": lease["id"],
                "attempt": lease["attempt"],
                "expires_at": isoformat(lease["expires_at"]),
                "duration_seconds": lease["duration_seconds"],
            },
            "token": token,
        }

    @staticmethod
    async def _woken(
        subscription: Subscription,
        deadline: float,
        gone: Callable[[], Awaitable[bool]] | None,
    ) -> bool:
        """Wait for a queue wake-up: True when one came, False when the deadline passed or
        the claimer hung up (checked after a wake-up and every ``HANGUP_CHECK_SECONDS``)."""
        while (remaining := deadline - time.monotonic()) > 0:
            woke = await subscription.wait(min(remaining, HANGUP_CHECK_SECONDS))
            if gone is not None and await gone():
                return False
            if woke:
                subscription.drain()
                return True
        return False

    async def heartbeat(self, caller: Caller, run_id: str, lease_id: str) -> dict[str, Any]:
        run, cancel_requested = await self.runs.heartbeat(caller, run_id, lease_id)
        if run["runner_id"]:
            async with self.db.write() as tx:
                await tx.conn.execute(
                    sa.update(runners)
                    .where(runners.c.id == run["runner_id"])
                    .values(last_seen_at=utcnow())
                )
        return {
            "lease_expires_at": isoformat(run["lease_expires_at"]),
            "cancel_requested": cancel_requested,
        }

    async def refresh_token(
        self, caller: Caller, run_id: str, lease_id: str | None
    ) -> dict[str, Any]:
        """A fresh token for the run's current lease (409 ``stale_lease`` for an old one)."""
        run = await self.runs.get(caller, run_id)
        current = await self.runs.current_lease(caller, run_id)
        if lease_id is not None and lease_id != current:
            raise StaleLease(
                f"lease {lease_id} no longer holds run {run_id}", current_status=run["status"]
            )
        token, expires_at = self.tokens.issue(
            run_id=run_id,
            workspace_id=caller.workspace_id,
            attempt=run["attempt"],
            lease_id=current,
        )
        return {"token": token, "expires_at": isoformat(expires_at)}

    async def list_runners(self, caller: Caller) -> list[dict[str, Any]]:
        """The workspace's runners; ``offline`` after a lease's worth of silence (three
        missed heartbeats)."""
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(runners)
                    .where(runners.c.workspace_id == caller.workspace_id)
                    .order_by(runners.c.name)
                )
            ).all()
        busy = await self.runs.active_by_runner(caller)
        online_since = utcnow() - timedelta(seconds=self.settings.lease_seconds)
        return [
            {
                "id": row.id,
                "name": row.name,
                "labels": row.labels,
                "version": row.version,
                "status": "online" if row.last_seen_at >= online_since else "offline",
                "current_runs": busy.get(row.id, 0),
                "last_seen_at": isoformat(row.last_seen_at),
                "created_at": isoformat(row.created_at),
            }
            for row in rows
        ]
