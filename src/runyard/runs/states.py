"""The run state machine (DESIGN §5.2): every transition is checked here and only here."""

from enum import StrEnum

from runyard.problems import InvalidTransition


class RunStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    BLOCKED = "blocked"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


S = RunStatus
TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.REJECTED})

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    S.PENDING: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    # running → cancelled is a forced cancel; running → queued a lost lease with attempts left
    S.RUNNING: frozenset({S.BLOCKED, S.COMPLETED, S.FAILED, S.CANCELLING, S.CANCELLED, S.QUEUED}),
    S.BLOCKED: frozenset({S.QUEUED, S.REJECTED, S.CANCELLED, S.FAILED}),
    S.CANCELLING: frozenset({S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
}

#: the event the server emits when a run enters each state
ENTRY_EVENT: dict[RunStatus, str] = {
    S.QUEUED: "run.queued",
    S.RUNNING: "run.started",
    S.BLOCKED: "run.blocked",
    S.CANCELLING: "run.cancelling",
    S.COMPLETED: "run.completed",
    S.FAILED: "run.failed",
    S.CANCELLED: "run.cancelled",
    S.REJECTED: "run.rejected",
}


def check_transition(
    run_id: str,
    current: str,
    target: RunStatus,
    only_from: frozenset[RunStatus] | None = None,
) -> None:
    """Raise 409 ``invalid_transition`` unless ``current → target`` is in the table (and, for
    operations that mean one edge only — start, approve — ``current`` is in ``only_from``)."""
    if target not in TRANSITIONS[RunStatus(current)] or (
        only_from is not None and RunStatus(current) not in only_from
    ):
        raise InvalidTransition(
            f"run {run_id} cannot go from {current} to {target.value}",
            current_status=current,
            target_status=target.value,
        )


def is_terminal(status: str) -> bool:
    return RunStatus(status) in TERMINAL
