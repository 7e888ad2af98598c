"""The transition table of DESIGN §5.2, checked pair by pair."""

import pytest

from runyard.problems import InvalidTransition
from runyard.runs.states import TERMINAL, RunStatus, check_transition

S = RunStatus
ALLOWED = {
    (S.PENDING, S.QUEUED),
    (S.PENDING, S.CANCELLED),
    (S.QUEUED, S.RUNNING),
    (S.QUEUED, S.CANCELLED),
    (S.QUEUED, S.FAILED),
    (S.RUNNING, S.BLOCKED),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLING),
    (S.RUNNING, S.QUEUED),
    (S.RUNNING, S.CANCELLED),
    (S.BLOCKED, S.QUEUED),
    (S.BLOCKED, S.REJECTED),
    (S.BLOCKED, S.CANCELLED),
    (S.BLOCKED, S.FAILED),
    (S.CANCELLING, S.CANCELLED),
}


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", list(S))
def test_each_pair_is_allowed_exactly_when_the_design_says(current: S, target: S) -> None:
    if (current, target) in ALLOWED:
        check_transition("run_x", current.value, target)
    else:
        with pytest.raises(InvalidTransition) as raised:
            check_transition("run_x", current.value, target)
        assert raised.value.extra["current_status"] == current.value
        assert raised.value.status == 409 and raised.value.code == "invalid_transition"


def test_terminal_states_lead_nowhere() -> None:
    assert {s for s in S if not any(c == s for c, _ in ALLOWED)} == set(TERMINAL)
