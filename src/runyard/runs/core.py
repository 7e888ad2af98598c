"""The heart of the run state machine, shared by every run use-case.

Every state change goes through :meth:`RunCore._transition`, which checks the table in
:mod:`runyard.runs.states`, updates the row, ends a lease the run leaves behind, and appends
the ``run.*`` event, all in the caller's transaction.
"""

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from runyard.audit.service import AuditService
from runyard.broker import Broker
from runyard.clock import utcnow
from runyard.context import Caller
from runyard.db.engine import Conn, Database, Tx
from runyard.events.service import EventService, NewEvent
from runyard.observability.metrics import Metrics
from runyard.pipelines.service import PipelineService
from runyard.problems import RunNotFound, StaleLease
from runyard.runs import repo
from runyard.runs.states import ENTRY_EVENT, TERMINAL, RunStatus, check_transition
from runyard.settings import Settings
from runyard.workspaces.quotas import ACTIVE, Quotas

S = RunStatus


#: (the create transaction's connection, the caller, the input) → the input to record
InputCheck = Callable[[Conn, Caller, dict[str, Any]], Awaitable[dict[str, Any]]]


class RunCore:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        events: EventService,
        pipelines: PipelineService,
        audit: AuditService,
        metrics: Metrics,
        settings: Settings,
        quotas: Quotas,
    ) -> None:
        self.db = db
        self.broker = broker
        self.events = events
        self.pipelines = pipelines
        self.audit = audit
        self.metrics = metrics
        self.settings = settings
        self.quotas = quotas
        #: checks of a built-in pipeline's run input beyond its schema, by pipeline name
        #: (``extract``: its ids exist); each returns the input the run records
        self.input_checks: dict[str, InputCheck] = {}

    async def _locked(self, tx: Tx, caller: Caller, run_id: str) -> dict[str, Any]:
        run = await repo.get(tx.conn, caller.workspace_id, run_id, for_update=True)
        if run is None:
            raise RunNotFound(f"run {run_id} not found")
        return run

    async def _transition(
        self,
        tx: Tx,
        run: dict[str, Any],
        target: RunStatus,
        *,
        data: dict[str, Any] | None = None,
        before: Sequence[NewEvent] = (),
        lease_end: str | None = None,
        only_from: frozenset[RunStatus] | None = None,
        **values: Any,
    ) -> None:
        """Move ``run`` to ``target`` (checked), persist it and emit the entry event."""
        previous = run["status"]
        check_transition(run["id"], previous, target, only_from)
        now = utcnow()
        values.update(status=target.value, updated_at=now)
        if run["lease_id"] and target not in (S.RUNNING, S.CANCELLING):
            # leaving the runner's hands: its lease ends, so its late callbacks are stale
            await repo.update_lease(
                tx.conn, run["lease_id"], {"ended_at": now, "end_reason": lease_end or target.value}
            )
            values.update(lease_id=None, lease_expires_at=None)
        if target is S.QUEUED:
            values["queued_at"] = now
            tx.after_commit(self._wake_claimers(run["workspace_id"], run["executor"]))
        elif target is S.RUNNING and run["started_at"] is None:
            values["started_at"] = now
        if previous in ACTIVE and target.value not in ACTIVE:
            await self._free_slot(tx, run["workspace_id"])
        if target in TERMINAL:
            values.update(completed_at=now, progress=1.0)
            start = run["started_at"] or run["created_at"]
            self.metrics.run_duration.observe((now - start).total_seconds())
        run.update(values)
        await repo.update(tx.conn, run["id"], values)
        payload = {"status": target.value, "previous_status": previous, **(data or {})}
        if target is S.FAILED and run["error"]:
            payload["error"] = run["error"]
        waiting: list[dict[str, Any]] = []
        if target in TERMINAL and previous != S.PENDING and run.get("session_id"):
            # a session's turn ended: the oldest turn waiting behind it (``multitask:
            # enqueue``) is queued now; its row is locked before any stream, like every run's
            waiting = await repo.session_turns(
                tx.conn, run["workspace_id"], run["session_id"], [S.PENDING.value], lock=True
            )
        await self._emit(tx, run, [*before, NewEvent(ENTRY_EVENT[target], payload)])
        if waiting:
            await self._transition(tx, waiting[0], S.QUEUED, data={"after_turn": run["id"]})

    async def _free_slot(self, tx: Tx, workspace_id: str) -> None:
        """A run left its concurrent-run slot: where the tier limits them, queued runs of
        the workspace may now be claimed, by claimers of any executor."""
        if await self.quotas.limits_concurrency(workspace_id):
            self.quotas.slot_freed(workspace_id)
            tx.after_commit(self._wake_claimers(workspace_id, ANY_EXECUTOR))

    def _wake_claimers(self, workspace_id: str, executor: str) -> Callable[[], Awaitable[None]]:
        """Tell waiting claimers a run was queued; the message names its executor, so the
        server's own claimers (worker: ``steps``, pusher: ``http``) wake only for theirs."""
        message = executor.encode()

        async def wake() -> None:
            await self.broker.publish(claims_channel(workspace_id), message)
            await self.broker.publish(claims_channel(None), message)

        return wake

    async def _emit(self, tx: Tx, run: dict[str, Any], items: list[NewEvent]) -> None:
        envelopes = await self.events.append(
            tx,
            run["id"],
            items,
            run_id=run["id"],
            source="server",
            attempt=run["attempt"],
            workspace_id=run["workspace_id"],
        )
        run["last_sequence"] = envelopes[-1]["sequence"]


#: a wake-up for claimers of every executor
ANY_EXECUTOR = "*"


def claims_channel(workspace_id: str | None) -> str:
    """Where runners waiting to claim in a workspace (None: in any) hear that a run was
    queued."""
    return f"claims:{workspace_id or '*'}"


def check_lease(run: dict[str, Any], lease_id: str | None) -> None:
    """Fencing: a callback that names a lease must name the run's current one."""
    if lease_id is not None and lease_id != run["lease_id"]:
        raise StaleLease(
            f"lease {lease_id} no longer holds run {run['id']}", current_status=run["status"]
        )
