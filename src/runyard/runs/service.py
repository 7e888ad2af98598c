"""Run use-cases: create, read, list, start, cancel, delete, and runner reports.

Every state change goes through :meth:`RunService._transition`, which checks the table in
:mod:`runyard.runs.states`, updates the row and appends the ``run.*`` event in one transaction.
"""

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from runyard.audit.service import AuditService
from runyard.broker import Broker
from runyard.clock import utcnow
from runyard.context import Caller
from runyard.db.engine import Database, Tx
from runyard.events.service import EventService, NewEvent
from runyard.http.pagination import decode_cursor, page_of
from runyard.ids import new_id
from runyard.observability.metrics import Metrics
from runyard.pipelines.service import PipelineService, validate_input
from runyard.problems import (
    Conflict,
    NotFound,
    PipelineNotFound,
    RunExists,
    RunNotFound,
    StaleLease,
)
from runyard.runs import repo
from runyard.runs.schemas import RunCreate, RunStatusReport, run_resource
from runyard.runs.states import ENTRY_EVENT, TERMINAL, RunStatus, check_transition, is_terminal
from runyard.settings import Settings

S = RunStatus


class RunFinished(Conflict):
    code = "run_finished"
    title = "Run has finished"


class RunService:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        events: EventService,
        pipelines: PipelineService,
        audit: AuditService,
        metrics: Metrics,
        settings: Settings,
    ) -> None:
        self.db = db
        self.broker = broker
        self.events = events
        self.pipelines = pipelines
        self.audit = audit
        self.metrics = metrics
        self.settings = settings

    # -- create and read ------------------------------------------------------------------

    async def create(self, caller: Caller, body: RunCreate) -> dict[str, Any]:
        try:
            async with self.db.write() as tx:
                pipeline = await self.pipelines.resolve(
                    tx, caller, name=body.pipeline, pipeline_id=body.pipeline_id
                )
                validate_input(pipeline, body.input)
                row = _new_run(caller, body, pipeline)
                if body.id is not None and await repo.exists(tx.conn, row["id"]):
                    raise RunExists(f"run {row['id']} already exists")
                items = [
                    NewEvent("run.created", {"status": row["status"], "pipeline": row["pipeline"]})
                ]
                if body.start:
                    items.append(
                        NewEvent("run.queued", {"status": "queued", "previous_status": None})
                    )
                    tx.after_commit(self._wake_claimers(caller.workspace_id))
                await repo.insert(tx.conn, row)
                await self.events.create_stream(
                    tx,
                    stream_id=row["id"],
                    workspace_id=caller.workspace_id,
                    kind="run",
                    reserved=len(items),
                )
                await self.events.write(
                    tx, row["id"], 1, items, run_id=row["id"], source="server", attempt=0
                )
                await self.audit.record(
                    tx,
                    caller,
                    "run.create",
                    "run",
                    row["id"],
                    {"pipeline": row["pipeline"], "status": row["status"]},
                )
        except IntegrityError as exc:
            raise RunExists(f"run {body.id} already exists") from exc
        row["last_sequence"] = len(items)
        return run_resource(row)

    async def get(self, caller: Caller, run_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await repo.get(conn, caller.workspace_id, run_id)
        if row is None:
            raise RunNotFound(f"run {run_id} not found")
        return run_resource(row)

    async def list_page(
        self,
        caller: Caller,
        *,
        limit: int,
        cursor: str | None,
        statuses: Sequence[str] = (),
        pipeline: str | None = None,
        tags: Sequence[str] = (),
        codename: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        session_id: str | None = None,
        input_filters: Sequence[tuple[list[str], str]] = (),
        q: str | None = None,
    ) -> dict[str, Any]:
        after = decode_cursor(cursor)
        async with self.db.read() as conn:
            rows = await repo.list_page(
                conn,
                caller.workspace_id,
                statuses=statuses,
                pipeline=pipeline,
                tags=tags,
                codename=codename,
                created_after=created_after,
                created_before=created_before,
                session_id=session_id,
                input_filters=input_filters,
                q=q,
                after=after,
                limit=limit + 1,
            )
        rows, next_cursor, has_more = page_of(rows, limit)
        return {
            "data": [run_resource(r, full=False) for r in rows],
            "next_cursor": next_cursor,
            "has_more": has_more,
        }

    async def audit_entries(self, caller: Caller, run_id: str) -> list[dict[str, Any]]:
        await self.get(caller, run_id)
        return await self.audit.for_target(caller, "run", run_id)

    # -- operations -----------------------------------------------------------------------

    async def start(self, caller: Caller, run_id: str) -> dict[str, Any]:
        async with self.db.write() as tx:
            run = await self._locked(tx, caller, run_id)
            await self._transition(tx, run, S.QUEUED)
            await self.audit.record(tx, caller, "run.start", "run", run_id)
        return run_resource(run)

    async def cancel(
        self, caller: Caller, run_id: str, *, reason: str | None, force: bool
    ) -> tuple[str, dict[str, Any]]:
        """Cancel as far as the run's state allows: ``cancelled``, ``cancelling`` or
        ``already_terminal``."""
        async with self.db.write() as tx:
            run = await self._locked(tx, caller, run_id)
            status = S(run["status"])
            data = {"reason": reason, "force": force, "actor": caller.actor}
            if status in TERMINAL:
                result = "already_terminal"
            elif status is S.RUNNING and not force:
                deadline = utcnow() + timedelta(seconds=self.settings.cancel_deadline_seconds)
                await self._transition(
                    tx, run, S.CANCELLING, data=data, cancel_deadline_at=deadline
                )
                result = "cancelling"
            elif status is S.CANCELLING and not force:
                result = "cancelling"
            else:
                await self._transition(tx, run, S.CANCELLED, data=data)
                result = "cancelled"
            await self.audit.record(
                tx,
                caller,
                "run.cancel",
                "run",
                run_id,
                {"reason": reason, "force": force, "result": result},
            )
        return result, run_resource(run)

    async def delete(self, caller: Caller, run_id: str) -> None:
        """Delete the run and its events; a run still in flight is cancelled first, so live
        streams see ``run.cancelled`` and end."""
        async with self.db.write() as tx:
            run = await self._locked(tx, caller, run_id)
            if not is_terminal(run["status"]):
                await self._transition(
                    tx, run, S.CANCELLED, data={"reason": "run deleted", "actor": caller.actor}
                )
            await self.events.delete_stream(tx, run_id)
            await repo.delete(tx.conn, run_id)
            await self.audit.record(
                tx, caller, "run.delete", "run", run_id, {"pipeline": run["pipeline"]}
            )

    # -- runner callbacks -----------------------------------------------------------------

    async def report(
        self, caller: Caller, run_id: str, body: RunStatusReport, *, lease_id: str | None = None
    ) -> dict[str, Any]:
        """A runner's status callback: progress, metrics, usage, output and transitions."""
        async with self.db.write() as tx:
            run = await self._locked(tx, caller, run_id)
            _check_lease(run, lease_id)
            if is_terminal(run["status"]):
                check_transition(run_id, run["status"], S(body.status or run["status"]))
            values: dict[str, Any] = {}
            if body.metrics:
                values["metrics"] = {**run["metrics"], **body.metrics}
            if body.usage:
                values["usage"] = {**run["usage"], **body.usage}
            if body.output is not None:
                values["output"] = body.output
            if body.current_step is not None:
                values["current_step"] = body.current_step
            progress_event = None
            if body.progress is not None:
                progress = min(1.0, max(0.0, body.progress))
                if progress != run["progress"]:
                    values["progress"] = progress
                    progress_event = NewEvent(
                        "run.progress",
                        {
                            "progress": progress,
                            "current_step": values.get("current_step", run["current_step"]),
                        },
                    )
            target = S(body.status) if body.status else None
            if target is not None and not (target is S.RUNNING and run["status"] == S.RUNNING):
                if target is S.RUNNING:
                    values["attempt"] = run["attempt"] + 1
                if target is S.FAILED:
                    values["error"] = _error(
                        body.error, values.get("current_step") or run["current_step"]
                    )
                before = [progress_event] if progress_event and target not in TERMINAL else []
                await self._transition(tx, run, target, before=before, **values)
                await self.audit.record(
                    tx, caller, "run.report", "run", run_id, {"status": target.value}
                )
            elif values:
                run.update(values, updated_at=utcnow())
                await repo.update(tx.conn, run_id, {**values, "updated_at": run["updated_at"]})
                if progress_event is not None:
                    await self._emit(tx, run, [progress_event])
        return run_resource(run)

    async def ingest(
        self, caller: Caller, run_id: str, items: list[NewEvent], *, lease_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Append a runner's events atomically; refused once the run has finished."""
        async with self.db.write() as tx:
            try:
                first = await self.events.reserve(
                    tx, run_id, len(items), workspace_id=caller.workspace_id
                )
            except NotFound as exc:
                raise RunNotFound(f"run {run_id} not found") from exc
            # read after taking the stream's lock, so a concurrent terminal transition is seen
            status, attempt, current_lease = await repo.status_attempt_lease(tx.conn, run_id)
            if lease_id is not None and lease_id != current_lease:
                raise StaleLease(
                    f"lease {lease_id} no longer holds run {run_id}", current_status=status
                )
            if is_terminal(status):
                raise RunFinished(
                    f"run {run_id} is {status}; it takes no more events", current_status=status
                )
            return await self.events.write(
                tx, run_id, first, items, run_id=run_id, source="runner", attempt=attempt
            )

    # -- leases (DESIGN §8) -----------------------------------------------------------------

    async def claim(
        self, caller: Caller, *, runner_id: str, pipelines: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Lease the oldest queued run of ``pipelines`` to a runner: ``(run, lease)`` or None."""
        async with self.db.write() as tx:
            run_id = await repo.next_queued(tx.conn, caller.workspace_id, pipelines)
            if run_id is None:
                return None
            run = await self._locked(tx, caller, run_id)
            now = utcnow()
            seconds = await self._lease_seconds(tx, caller, run)
            lease = {
                "id": new_id("lse"),
                "run_id": run_id,
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
        return run_resource(run), lease

    async def heartbeat(
        self, caller: Caller, run_id: str, lease_id: str
    ) -> tuple[dict[str, Any], bool]:
        """Extend a current lease; says whether the run's cancel was requested."""
        async with self.db.write() as tx:
            run = await self._locked(tx, caller, run_id)
            if lease_id != run["lease_id"]:
                raise StaleLease(
                    f"lease {lease_id} no longer holds run {run_id}", current_status=run["status"]
                )
            seconds = await repo.lease_duration(tx.conn, lease_id)
            expires_at = utcnow() + timedelta(seconds=seconds)
            await repo.update(tx.conn, run_id, {"lease_expires_at": expires_at})
            await repo.update_lease(tx.conn, lease_id, {"expires_at": expires_at})
            run["lease_expires_at"] = expires_at
        return run, run["status"] == S.CANCELLING

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
            retry = {
                "attempt": run["attempt"],
                "max_attempts": run["max_attempts"],
                "reason": "lease_expired",
                "lease_id": run["lease_id"],
            }
            if run["attempt"] < run["max_attempts"]:
                await self._transition(
                    tx,
                    run,
                    S.QUEUED,
                    before=[NewEvent("run.retrying", retry)],
                    data={"reason": "lease_expired"},
                    lease_end="expired",
                )
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

    async def _lease_seconds(self, tx: Tx, caller: Caller, run: dict[str, Any]) -> int:
        try:
            pipeline = await self.pipelines.resolve(
                tx, caller, name=None, pipeline_id=run["pipeline_id"]
            )
        except PipelineNotFound:
            return self.settings.lease_seconds
        return int(pipeline["spec"].get("lease_seconds") or self.settings.lease_seconds)

    # -- internals ------------------------------------------------------------------------

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
        **values: Any,
    ) -> None:
        """Move ``run`` to ``target`` (checked), persist it and emit the entry event."""
        previous = run["status"]
        check_transition(run["id"], previous, target)
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
            tx.after_commit(self._wake_claimers(run["workspace_id"]))
        elif target is S.RUNNING and run["started_at"] is None:
            values["started_at"] = now
        elif target in TERMINAL:
            values.update(completed_at=now, progress=1.0)
            start = run["started_at"] or run["created_at"]
            self.metrics.run_duration.observe((now - start).total_seconds())
        run.update(values)
        await repo.update(tx.conn, run["id"], values)
        payload = {"status": target.value, "previous_status": previous, **(data or {})}
        if target is S.FAILED and run["error"]:
            payload["error"] = run["error"]
        await self._emit(tx, run, [*before, NewEvent(ENTRY_EVENT[target], payload)])

    def _wake_claimers(self, workspace_id: str) -> Callable[[], Awaitable[None]]:
        async def wake() -> None:
            await self.broker.publish(claims_channel(workspace_id), b"queued")

        return wake

    async def _emit(self, tx: Tx, run: dict[str, Any], items: list[NewEvent]) -> None:
        envelopes = await self.events.append(
            tx, run["id"], items, run_id=run["id"], source="server", attempt=run["attempt"]
        )
        run["last_sequence"] = envelopes[-1]["sequence"]


def claims_channel(workspace_id: str) -> str:
    """Where runners waiting to claim in a workspace hear that a run was queued."""
    return f"claims:{workspace_id}"


def _check_lease(run: dict[str, Any], lease_id: str | None) -> None:
    """Fencing: a callback that names a lease must name the run's current one."""
    if lease_id is not None and lease_id != run["lease_id"]:
        raise StaleLease(
            f"lease {lease_id} no longer holds run {run['id']}", current_status=run["status"]
        )


def _new_run(caller: Caller, body: RunCreate, pipeline: dict[str, Any]) -> dict[str, Any]:
    spec = pipeline["spec"]
    now = utcnow()
    status = S.QUEUED if body.start else S.PENDING
    return {
        "id": body.id or new_id("run"),
        "workspace_id": caller.workspace_id,
        "pipeline": pipeline["name"],
        "pipeline_id": pipeline["id"],
        "pipeline_version": pipeline["version"],
        "status": status.value,
        "input": body.input,
        "output": None,
        "error": None,
        "progress": 0.0,
        "current_step": None,
        "steps": [],
        "tags": body.tags,
        "codename": body.codename,
        "metadata": body.metadata,
        "require_approval": body.require_approval,
        "approval": None,
        "attempt": 0,
        "max_attempts": body.max_attempts or spec.get("max_attempts") or 1,
        "timeout_seconds": body.timeout_seconds or spec.get("timeout_seconds"),
        "metrics": {},
        "usage": {},
        "replay_of": None,
        "session_id": None,
        "runner_id": None,
        "lease_id": None,
        "lease_expires_at": None,
        "cancel_deadline_at": None,
        "created_by": caller.actor,
        "created_at": now,
        "queued_at": now if status is S.QUEUED else None,
        "started_at": None,
        "completed_at": None,
        "updated_at": now,
    }


def _error(error: str | dict[str, Any] | None, step: str | None) -> dict[str, Any]:
    if isinstance(error, dict):
        return {
            "code": str(error.get("code") or "runner_error"),
            "message": str(error.get("message") or ""),
            "step": error.get("step", step),
        }
    return {
        "code": "runner_error",
        "message": error or "the runner reported a failure",
        "step": step,
    }
