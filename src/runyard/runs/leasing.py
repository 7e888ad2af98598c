"""Leases (DESIGN §8): claiming runs, heartbeats, and the sweeper's expiries."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from runyard.clock import utcnow
from runyard.context import Caller
from runyard.db.engine import Conn, Tx
from runyard.events.service import NewEvent
from runyard.ids import new_id
from runyard.problems import (
    RunNotFound,
)
from runyard.runs import repo
from runyard.runs.core import RunCore, check_lease
from runyard.runs.schemas import run_resource
from runyard.runs.states import RunStatus

S = RunStatus
#: how many workspaces at their concurrency limit one claim looks past
FULL_WORKSPACES_SKIPPED = 100


class RunLeases(RunCore):
    async def claim(
        self,
        workspace_id: str | None,
        *,
        runner_id: str,
        pipelines: Sequence[str] = (),
        executors: Sequence[str] = (),
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Lease the oldest queued run matching the filters to a runner: ``(run, lease)`` or
        None. A ``workspace_id`` of None claims from every workspace (the embedded worker).

        A run of a workspace at its tier's concurrent-run limit stays queued (DESIGN §15);
        the claim passes over those known to be full and up to
        :data:`FULL_WORKSPACES_SKIPPED` more."""
        # a runner claiming in its own workspace always gets the exact answer
        full = [w for w in self.quotas.known_full() if w != workspace_id]
        async with self.db.write() as tx:
            for _ in range(FULL_WORKSPACES_SKIPPED + 1):
                run = await repo.next_queued(tx.conn, workspace_id, pipelines, executors, full)
                if run is None:
                    return None
                slot = await self.quotas.has_slot(tx.conn, run["workspace_id"])
                if slot:
                    break
                if slot is None or workspace_id is not None:
                    return None
                full.append(run["workspace_id"])
            else:
                return None
            caller = Caller(workspace_id=run["workspace_id"], actor=runner_id)
            lease = await self._grant_lease(tx, caller, run, runner_id)
        return run_resource(run), lease

    async def _grant_lease(
        self, tx: Tx, caller: Caller, run: dict[str, Any], runner_id: str | None
    ) -> dict[str, Any]:
        """Move a queued run to ``running`` under a new lease (attempt + 1)."""
        now = utcnow()
        seconds = await self._lease_seconds(tx.conn, run)
        lease = {
            "id": new_id("lse"),
            "run_id": run["id"],
            "runner_id": runner_id,
            "attempt": run["attempt"] + 1,
            "duration_seconds": seconds,
            "granted_at": now,
            "expires_at": now + timedelta(seconds=seconds),
            "ended_at": None,
            "end_reason": None,
        }
        await repo.insert_lease(tx.conn, lease)
        await self._transition(
            tx,
            run,
            S.RUNNING,
            data={"runner_id": runner_id, "lease_id": lease["id"]},
            attempt=lease["attempt"],
            runner_id=runner_id,
            lease_id=lease["id"],
            lease_expires_at=lease["expires_at"],
        )
        return lease

    async def heartbeat(
        self, caller: Caller, run_id: str, lease_id: str
    ) -> tuple[dict[str, Any], bool]:
        """Extend a current lease; says whether the run's cancel was requested."""
        async with self.db.write() as tx:
            run = await self._locked(tx, caller, run_id)
            check_lease(run, lease_id)
            await self._extend(tx, run)
        return run, run["status"] == S.CANCELLING

    async def release(self, caller: Caller, run_id: str, lease_id: str) -> dict[str, Any]:
        """A runner hands a run back unfinished (it is shutting down): the run is queued again
        at once instead of waiting out its lease, and the released attempt is not counted
        against ``max_attempts`` when a later lease expires. A run being cancelled is
        ``cancelled``: the runner stopped, as the cancel asked."""
        async with self.db.write() as tx:
            run = await self._locked(tx, caller, run_id)
            check_lease(run, lease_id)
            if run["status"] == S.CANCELLING:
                await self._transition(
                    tx, run, S.CANCELLED, data={"reason": "released"}, lease_end="released"
                )
            else:
                await self._requeue(tx, run, reason="released", lease_end="released")
            await self.audit.record(
                tx, caller, "run.release", "run", run_id, {"status": run["status"]}
            )
        return run_resource(run)

    async def renew_lease(self, caller: Caller, run_id: str, lease_id: str) -> None:
        """Renew a lease a callback showed alive, if it still holds the run (DESIGN §15)."""
        async with self.db.write() as tx:
            run = await self._locked(tx, caller, run_id)
            if run["lease_id"] == lease_id:
                await self._renew_if_due(tx, run)

    async def _renew_if_due(self, tx: Tx, run: dict[str, Any]) -> None:
        """Callbacks keep a lease alive like heartbeats; to spare the hot paths a write each,
        the lease is renewed only once a third of it has passed (the heartbeat rhythm)."""
        if run["lease_id"] is not None and await self._renewal_due(tx.conn, run):
            await self._extend(tx, run)

    async def _extend(self, tx: Tx, run: dict[str, Any]) -> None:
        """Move the run's lease to a full lease length from now."""
        seconds = await self._lease_seconds(tx.conn, run)
        expires_at = utcnow() + timedelta(seconds=seconds)
        await repo.update(tx.conn, run["id"], {"lease_expires_at": expires_at})
        await repo.update_lease(tx.conn, run["lease_id"], {"expires_at": expires_at})
        run["lease_expires_at"] = expires_at

    async def _requeue(self, tx: Tx, run: dict[str, Any], *, reason: str, lease_end: str) -> None:
        """Back to ``queued`` for another attempt, announced by ``run.retrying``."""
        retry = {
            "attempt": run["attempt"],
            "max_attempts": run["max_attempts"],
            "reason": reason,
            "lease_id": run["lease_id"],
        }
        await self._transition(
            tx,
            run,
            S.QUEUED,
            before=[NewEvent("run.retrying", retry)],
            data={"reason": reason},
            lease_end=lease_end,
        )

    async def _renewal_due(self, conn: Conn, run: dict[str, Any]) -> bool:
        expires_at = run["lease_expires_at"]
        if expires_at is None:
            return False
        seconds = await self._lease_seconds(conn, run)
        return bool((expires_at - utcnow()).total_seconds() < seconds * 2 / 3)

    async def expire_leases(self, limit: int = 200) -> int:
        """The sweeper's pass: re-queue or fail runs whose lease expired, and end cancels whose
        deadline passed. Each run in its own transaction, re-checked under its lock."""
        now = utcnow()
        async with self.db.read() as conn:
            due = await repo.expired(conn, now, limit)
        for run_id, workspace_id in due:
            caller = Caller(workspace_id=workspace_id, actor="runyard:sweeper")
            async with self.db.write() as tx:
                run = await repo.get(tx.conn, workspace_id, run_id, for_update=True)
                if run is not None:
                    await self._expire(tx, caller, run, now)
        return len(due)

    async def current_lease(self, caller: Caller, run_id: str) -> str | None:
        async with self.db.read() as conn:
            run = await repo.get(conn, caller.workspace_id, run_id)
        if run is None:
            raise RunNotFound(f"run {run_id} not found")
        lease: str | None = run["lease_id"]
        return lease

    async def active_by_runner(self, caller: Caller) -> dict[str, int]:
        async with self.db.read() as conn:
            return await repo.active_by_runner(conn, caller.workspace_id)

    async def _expire(self, tx: Tx, caller: Caller, run: dict[str, Any], now: datetime) -> None:
        lease_over = run["lease_expires_at"] is not None and run["lease_expires_at"] <= now
        deadline_over = run["cancel_deadline_at"] is not None and run["cancel_deadline_at"] <= now
        if run["status"] == S.CANCELLING and (lease_over or deadline_over):
            reason = "cancel deadline passed" if deadline_over else "lease expired while cancelling"
            await self._transition(
                tx, run, S.CANCELLED, data={"reason": reason}, lease_end="expired"
            )
        elif run["status"] == S.RUNNING and lease_over:
            released = await repo.released_leases(tx.conn, run["id"])
            if run["attempt"] - released < run["max_attempts"]:
                await self._requeue(tx, run, reason="lease_expired", lease_end="expired")
            else:
                error = {
                    "code": "lease_expired",
                    "step": run["current_step"],
                    "message": f"the runner stopped heartbeating on attempt {run['attempt']} "
                    f"of {run['max_attempts']}",
                }
                await self._transition(
                    tx,
                    run,
                    S.FAILED,
                    data={"reason": "lease_expired"},
                    lease_end="expired",
                    error=error,
                )
        else:
            return
        await self.audit.record(
            tx, caller, "run.lease_expired", "run", run["id"], {"status": run["status"]}
        )

    async def _lease_seconds(self, conn: Conn, run: dict[str, Any]) -> int:
        """The lease of the pipeline version the run was created with, else the default."""
        spec = await self.pipelines.cached_spec(conn, run["pipeline_id"], run["pipeline_version"])
        return int((spec or {}).get("lease_seconds") or self.settings.lease_seconds)
