"""Approval gates (DESIGN §5.2-5.3, §7): a run waits in ``blocked`` until someone decides.

A runner (or the embedded worker at an ``approval`` step) requests the gate; the run leaves
its runner's hands (the lease ends) and waits. Approval queues it again, and it resumes after
the gate with its completed steps memoized; rejection ends it. A gate may expire, and then
its ``on_expire`` decides: ``reject``, ``approve`` or ``fail``.
"""

from datetime import datetime, timedelta
from typing import Any, Literal

from runyard.clock import isoformat, parse, utcnow
from runyard.context import Caller
from runyard.db.engine import Tx
from runyard.events.service import NewEvent
from runyard.problems import Forbidden, InvalidTransition
from runyard.runs import repo
from runyard.runs.core import check_lease
from runyard.runs.leasing import RunLeases
from runyard.runs.schemas import run_resource
from runyard.runs.states import RunStatus

S = RunStatus
OnExpire = Literal["reject", "approve", "fail"]


class RunApprovals(RunLeases):
    async def request_approval(
        self,
        caller: Caller,
        run_id: str,
        *,
        message: str,
        expires_in_seconds: int | None = None,
        on_expire: OnExpire = "reject",
        allow_self_approval: bool = True,
        step: str | None = None,
        lease_id: str | None = None,
    ) -> dict[str, Any]:
        """Block a running run at a gate."""
        async with self.db.write() as tx:
            run = await self._locked(tx, caller, run_id)
            check_lease(run, lease_id)
            now = utcnow()
            expires_at = now + timedelta(seconds=expires_in_seconds) if expires_in_seconds else None
            approval = {
                "state": "pending",
                "message": message,
                "step": step,
                "requested_at": isoformat(now),
                "expires_at": isoformat(expires_at),
                "on_expire": on_expire,
                "allow_self_approval": allow_self_approval,
                "decided_by": None,
                "decided_at": None,
                "comment": None,
            }
            await self._transition(
                tx,
                run,
                S.BLOCKED,
                data={"message": message, "step": step, "expires_at": approval["expires_at"]},
                lease_end="blocked",
                approval=approval,
            )
        return run_resource(run)

    async def approve(self, caller: Caller, run_id: str, comment: str | None) -> dict[str, Any]:
        async with self.db.write() as tx:
            run = await self._locked(tx, caller, run_id)
            await self._decide(tx, caller, run, "approved", comment)
        return run_resource(run)

    async def reject(self, caller: Caller, run_id: str, comment: str | None) -> dict[str, Any]:
        async with self.db.write() as tx:
            run = await self._locked(tx, caller, run_id)
            await self._decide(tx, caller, run, "rejected", comment)
        return run_resource(run)

    async def _decide(
        self,
        tx: Tx,
        caller: Caller,
        run: dict[str, Any],
        decision: Literal["approved", "rejected", "expired"],
        comment: str | None,
        *,
        outcome: OnExpire | None = None,
    ) -> None:
        if decision == "expired":
            target = {"approve": S.QUEUED, "reject": S.REJECTED, "fail": S.FAILED}[
                outcome or "reject"
            ]
        else:
            target = S.QUEUED if decision == "approved" else S.REJECTED
        if run["status"] != S.BLOCKED:
            raise InvalidTransition(
                f"run {run['id']} is {run['status']}, not waiting at a gate",
                current_status=run["status"],
                target_status=target.value,
            )
        approval = dict(run["approval"] or {})
        if (
            decision == "approved"
            and not approval.get("allow_self_approval", True)
            and caller.actor == run["created_by"]
        ):
            raise Forbidden(
                f"{caller.actor} created run {run['id']}; this gate needs someone else's approval"
            )
        now = utcnow()
        state = "approved" if target is S.QUEUED else decision  # an expiry may approve
        approval.update(
            state=state, decided_by=caller.actor, decided_at=isoformat(now), comment=comment
        )
        values: dict[str, Any] = {"approval": approval}
        if target is S.FAILED:
            values["error"] = {
                "code": "approval_expired",
                "step": approval.get("step"),
                "message": "the approval gate expired",
            }
        decided = {"actor": caller.actor, "comment": comment, "decision": decision}
        # approval resumes the run: run.approved, then its run.queued; run.rejected is itself
        # the entry event of `rejected`
        before = [NewEvent("run.approved", decided)] if target is S.QUEUED else []
        await self._transition(tx, run, target, before=before, data=decided, **values)
        await self.audit.record(
            tx,
            caller,
            f"run.{'approve' if target is S.QUEUED else 'reject'}",
            "run",
            run["id"],
            {"decision": decision, "comment": comment},
        )

    async def expire_approvals(self, now: datetime | None = None) -> int:
        """The sweeper's pass over gates whose ``expires_at`` has passed."""
        now = now or utcnow()
        async with self.db.read() as conn:
            blocked = await repo.blocked(conn, limit=500)
        expired = 0
        for run_id, workspace_id, approval in blocked:
            expires_at = (approval or {}).get("expires_at")
            if not expires_at or parse(expires_at) > now:
                continue
            caller = Caller(workspace_id=workspace_id, actor="runyard:approvals")
            async with self.db.write() as tx:
                run = await repo.get(tx.conn, workspace_id, run_id, for_update=True)
                if run is None or run["status"] != S.BLOCKED:
                    continue
                outcome = (run["approval"] or {}).get("on_expire", "reject")
                await self._decide(tx, caller, run, "expired", None, outcome=outcome)
                expired += 1
        return expired
