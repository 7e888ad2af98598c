"""Run use-cases: create, read, list, start, cancel, delete, and runner reports.

State changes go through :class:`runyard.runs.core.RunCore`; leases live in
:mod:`runyard.runs.leasing`.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from runyard.clock import isoformat, utcnow
from runyard.context import Caller
from runyard.db.engine import Tx
from runyard.events.service import NewEvent
from runyard.http.pagination import decode_cursor, page_of
from runyard.ids import new_id
from runyard.pipelines.service import BUILTIN_PIPELINES, STARTED_BY_SERVER, validate_input
from runyard.problems import (
    Conflict,
    NotFound,
    RunExists,
    RunFinished,
    RunNotFound,
)
from runyard.runs import repo
from runyard.runs.approvals import RunApprovals
from runyard.runs.core import check_lease, claims_channel
from runyard.runs.schemas import ReplayRequest, RunCreate, RunStatusReport, run_resource
from runyard.runs.states import TERMINAL, RunStatus, check_transition, is_terminal

S = RunStatus
log = logging.getLogger(__name__)


__all__ = ["RunService", "claims_channel"]


class RunService(RunApprovals):
    # -- create and read ------------------------------------------------------------------

    async def create(
        self,
        caller: Caller,
        body: RunCreate,
        *,
        replay_of: str | None = None,
        validate: bool = True,
    ) -> dict[str, Any]:
        if body.pipeline in BUILTIN_PIPELINES and body.pipeline not in STARTED_BY_SERVER:
            await self.pipelines.ensure_builtin(caller.workspace_id, body.pipeline)
        try:
            async with self.db.write() as tx:
                pipeline = await self.pipelines.resolve(
                    tx, caller, name=body.pipeline, pipeline_id=body.pipeline_id
                )
                if pipeline["name"] in STARTED_BY_SERVER:
                    raise Conflict(
                        f"runs of {pipeline['name']!r} are started by the server (an agent "
                        "turn starts with a session message)",
                        code="builtin_pipeline",
                    )
                if validate:
                    validate_input(pipeline, body.input)
                if (check := self.input_checks.get(pipeline["name"])) is not None:
                    body = body.model_copy(
                        update={"input": await check(tx.conn, caller, body.input)}
                    )
                return await self.create_in(tx, caller, pipeline, body, replay_of=replay_of)
        except IntegrityError as exc:
            raise RunExists(f"run {body.id} already exists") from exc

    async def create_in(
        self,
        tx: Tx,
        caller: Caller,
        pipeline: dict[str, Any],
        body: RunCreate,
        *,
        replay_of: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a run of ``pipeline`` in ``tx``; the quota check is its last statement, so
        ``tx`` should commit soon after. A session's turn run mirrors its events into the
        session's stream."""
        row = _new_run(caller, body, pipeline)
        row["replay_of"] = replay_of
        row["session_id"] = session_id
        if body.id is not None and await repo.exists(tx.conn, row["id"]):
            raise RunExists(f"run {row['id']} already exists")
        items = [NewEvent("run.created", {"status": row["status"], "pipeline": row["pipeline"]})]
        if body.start:
            items.append(NewEvent("run.queued", {"status": "queued", "previous_status": None}))
            tx.after_commit(self._wake_claimers(caller.workspace_id, row["executor"]))
        await repo.insert(tx.conn, row)
        await self.events.create_stream(
            tx,
            stream_id=row["id"],
            workspace_id=caller.workspace_id,
            kind="run",
            reserved=len(items),
            mirror_id=session_id,
        )
        await self.events.write(
            tx,
            row["id"],
            1,
            items,
            run_id=row["id"],
            source="server",
            attempt=0,
            workspace_id=caller.workspace_id,
        )
        await self.audit.record(
            tx,
            caller,
            "run.create",
            "run",
            row["id"],
            {"pipeline": row["pipeline"], "status": row["status"], "replay_of": replay_of},
        )
        await self.quotas.admit_run(tx.conn, caller.workspace_id)  # last: see Quotas
        row["last_sequence"] = len(items)
        return run_resource(row)

    async def replay(self, caller: Caller, run_id: str, body: ReplayRequest) -> dict[str, Any]:
        """A new run of the same pipeline and input (each optionally replaced), ``replay_of``
        pointing back. Any run may be replayed, finished or not."""
        original = await self.get(caller, run_id)
        return await self.create(
            caller,
            RunCreate(
                pipeline_id=original["pipeline_id"],
                input=original["input"] if body.input is None else body.input,
                tags=original["tags"] if body.tags is None else body.tags,
                metadata=original["metadata"] if body.metadata is None else body.metadata,
                codename=original["codename"],
                require_approval=original["require_approval"],
                max_attempts=original["max_attempts"],
                timeout_seconds=original["timeout_seconds"],
                start=body.start,
            ),
            replay_of=run_id,
        )

    async def rollback(self, caller: Caller, run_id: str) -> dict[str, Any] | None:
        """Queue the pipeline's ``rollback_steps`` as a new run (``replay_of`` and
        ``input.rollback_of`` point back), or, without them, only record the rollback."""
        original = await self.get(caller, run_id)
        spec = await self.pipelines.version_spec(
            original["pipeline_id"], original["pipeline_version"]
        )
        if not spec.get("rollback_steps"):
            async with self.db.write() as tx:
                await self.audit.record(
                    tx, caller, "run.rollback", "run", run_id, {"result": "recorded"}
                )
            return None
        rollback = await self.create(
            caller,
            RunCreate(
                pipeline_id=original["pipeline_id"],
                input={**original["input"], "rollback_of": run_id},
                tags=original["tags"],
                metadata=original["metadata"],
            ),
            replay_of=run_id,
            validate=False,
        )
        async with self.db.write() as tx:
            await self.audit.record(
                tx,
                caller,
                "run.rollback",
                "run",
                run_id,
                {"result": "queued", "rollback_run_id": rollback["id"]},
            )
        return rollback

    async def count_by_status(self, caller: Caller) -> dict[str, int]:
        async with self.db.read() as conn:
            return await repo.count_by_status(conn, caller.workspace_id)

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
            if run["session_id"] is not None:
                raise Conflict(
                    f"run {run_id} is a session's turn: it starts when the turn before it ends",
                    code="builtin_pipeline",
                )
            await self._transition(tx, run, S.QUEUED, only_from=frozenset({S.PENDING}))
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

    async def interrupt(
        self, tx: Tx, caller: Caller, turns: Sequence[dict[str, Any]], *, reason: str
    ) -> None:
        """Cancel a session's unfinished turns (locked by the caller) at once, waiting ones
        first, so none of them is started by the end of another. Their streams are locked
        first, in id order, so a turn writing its events (its stream, then the session's)
        cannot hold one of them while this waits for it."""
        await self.events.lock_streams(tx, [run["id"] for run in turns])
        for run in sorted(turns, key=lambda r: r["status"] != S.PENDING):
            await self._transition(
                tx, run, S.CANCELLED, data={"reason": reason, "force": True, "actor": caller.actor}
            )
            await self.audit.record(
                tx, caller, "run.cancel", "run", run["id"], {"reason": reason, "force": True}
            )

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
            check_lease(run, lease_id)
            if is_terminal(run["status"]):
                check_transition(run_id, run["status"], S(body.status or run["status"]))
            if lease_id is not None:
                await self._renew_if_due(tx, run)
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
            if target is S.RUNNING and run["status"] != S.RUNNING:
                # a runner that starts a run without claiming it (open mode) still gets a
                # lease, so a runner that then goes silent is handled by the lease rules
                if run["status"] == S.QUEUED and not await self.quotas.has_slot(
                    tx.conn, run["workspace_id"]
                ):
                    raise Conflict(
                        f"workspace {run['workspace_id']} is at its concurrent-run limit; "
                        "the run stays queued",
                        code="concurrency_limit",
                    )
                await self._grant_lease(tx, caller, run, None)
                if values:
                    run.update(values)
                    await repo.update(tx.conn, run_id, values)
                if progress_event is not None:
                    await self._emit(tx, run, [progress_event])
                await self.audit.record(
                    tx, caller, "run.report", "run", run_id, {"status": "running"}
                )
            elif target is not None and target is not S.RUNNING:
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
        self,
        caller: Caller,
        run_id: str,
        items: list[NewEvent],
        *,
        lease_id: str | None = None,
        source: str = "runner",
        also: Callable[[Tx], Awaitable[None]] | None = None,
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
            state = await repo.fencing_state(tx.conn, run_id)
            status = state["status"]
            check_lease({**state, "id": run_id}, lease_id)
            if is_terminal(status):
                raise RunFinished(
                    f"run {run_id} is {status}; it takes no more events", current_status=status
                )
            if also is not None:  # a record that belongs with these events (an artifact's)
                await also(tx)
            envelopes = await self.events.write(
                tx,
                run_id,
                first,
                items,
                run_id=run_id,
                source=source,
                attempt=state["attempt"],
                workspace_id=caller.workspace_id,
            )
            renew = lease_id is not None and await self._renewal_due(tx.conn, state)
        if renew:
            # its own transaction: this one holds the stream's lock, and run rows are always
            # locked before stream rows. Best effort: the events are committed either way.
            try:
                await self.renew_lease(caller, run_id, str(lease_id))
            except Exception:
                log.warning("run %s: renewing the lease after an event batch failed", run_id)
        return envelopes

    async def check_holder(self, tx: Tx, run_id: str, lease_id: str) -> None:
        """Inside ``tx``: ``StaleLease`` unless ``lease_id`` still holds the run. The run's
        stream is locked first, as every change of status writes to it: a cancel or end that
        commits meanwhile is seen, and none can commit before ``tx`` does."""
        await self.events.lock_streams(tx, [run_id])
        holder = await repo.lease_holder(tx.conn, run_id)
        check_lease({"id": run_id, "lease_id": holder, "status": None}, lease_id)

    async def ensure_reportable(self, caller: Caller, run_id: str, lease_id: str | None) -> None:
        """404 for an unknown run, 409 for a stale lease or a finished run."""
        async with self.db.read() as conn:
            run = await repo.get(conn, caller.workspace_id, run_id)
        if run is None:
            raise RunNotFound(f"run {run_id} not found")
        check_lease(run, lease_id)
        if is_terminal(run["status"]):
            raise RunFinished(f"run {run_id} is {run['status']}", current_status=run["status"])

    async def record_step(
        self,
        caller: Caller,
        run_id: str,
        name: str,
        status: str,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
        lease_id: str | None = None,
        source: str = "runner",
    ) -> dict[str, Any]:
        """Record a step's progress on the run (``steps``) and emit ``step.*``.

        ``running`` starts an attempt of the step; ``completed``, ``failed`` and ``skipped``
        finish it. A completed step is what a resumed run does not execute again.
        """
        async with self.db.write() as tx:
            run = await self._locked(tx, caller, run_id)
            check_lease(run, lease_id)
            if run["status"] not in (S.RUNNING, S.CANCELLING):
                raise RunFinished(
                    f"run {run_id} is {run['status']}; its steps cannot change",
                    current_status=run["status"],
                )
            if lease_id is not None:
                await self._renew_if_due(tx, run)
            now = utcnow()
            steps = [dict(step) for step in run["steps"]]
            step = next((s for s in steps if s["name"] == name), None)
            if step is None:
                step = {
                    "name": name,
                    "status": "pending",
                    "attempt": 0,
                    "started_at": None,
                    "completed_at": None,
                    "output": None,
                    "error": None,
                }
                steps.append(step)
            values: dict[str, Any] = {"steps": steps, "updated_at": now}
            if status == "running":
                step.update(
                    status="running",
                    attempt=step["attempt"] + 1,
                    error=None,
                    started_at=isoformat(now),
                    completed_at=None,
                )
                values["current_step"] = name
                event = NewEvent("step.started", {"attempt": step["attempt"]}, step=name)
            else:
                step.update(status=status, completed_at=isoformat(now), output=output, error=error)
                kind = "step.failed" if status == "failed" else "step.completed"
                event = NewEvent(
                    kind,
                    {
                        "status": status,
                        "attempt": step["attempt"],
                        "output": output,
                        "error": error,
                    },
                    step=name,
                )
            run.update(values)
            await repo.update(tx.conn, run_id, values)
            envelopes = await self.events.append(
                tx,
                run_id,
                [event],
                run_id=run_id,
                source=source,
                attempt=run["attempt"],
                workspace_id=run["workspace_id"],
            )
            run["last_sequence"] = envelopes[-1]["sequence"]
        return run_resource(run)


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
        "executor": spec.get("executor", {}).get("type", "steps"),
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
