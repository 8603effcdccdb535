"""The one table of legal job state changes."""

import pytest

from kazru.db.models import JobState as S
from kazru.domain import errors, lifecycle


@pytest.mark.parametrize(
    ("current", "target"),
    [(S.PENDING, S.RUNNING), (S.RUNNING, S.RUNNING), (S.RUNNING, S.SUCCEEDED), (S.RUNNING, S.FAILED), (S.RUNNING, S.PENDING),
     (S.RUNNING, S.CANCELLED), (S.PENDING, S.CANCELLED), (S.SUCCEEDED, S.EXPIRED), (S.FAILED, S.DELETED),
     (S.CANCELLED, S.DELETED), (S.PENDING, S.EXPIRED)],
)  # fmt: skip
def test_legal_changes_pass(current, target):
    lifecycle.check_transition(current, target)
    assert current in lifecycle.sources_of(target)


@pytest.mark.parametrize(
    ("current", "target", "code"),
    [(S.SUCCEEDED, S.RUNNING, "ILLEGAL_STATE_TRANSITION"), (S.FAILED, S.SUCCEEDED, "ILLEGAL_STATE_TRANSITION"),
     (S.CANCELLED, S.RUNNING, "ILLEGAL_STATE_TRANSITION"), (S.PENDING, S.SUCCEEDED, "ILLEGAL_STATE_TRANSITION"),
     (S.PENDING, S.DELETED, "ILLEGAL_STATE_TRANSITION"), (S.DELETED, S.DELETED, "JOB_ALREADY_DELETED"),
     (S.EXPIRED, S.DELETED, "JOB_ALREADY_EXPIRED"), (S.EXPIRED, S.PENDING, "JOB_ALREADY_EXPIRED")],
)  # fmt: skip
def test_illegal_changes_are_failed_precondition(current, target, code):
    with pytest.raises(errors.FailedPrecondition) as caught:
        lifecycle.check_transition(current, target, "job-1")
    assert caught.value.code == code
    assert caught.value.details == {"job_id": "job-1", "state": current.value, "requested": target.value}
    assert current not in lifecycle.sources_of(target)


def test_tombstones_are_final_and_every_state_is_in_the_table():
    assert set(lifecycle.LEGAL_TRANSITIONS) == set(S)
    assert all(not lifecycle.LEGAL_TRANSITIONS[state] for state in lifecycle.TOMBSTONES)
    # Nothing ever returns to a state before RUNNING except a handed-back RUNNING job.
    assert lifecycle.sources_of(S.PENDING) == (S.RUNNING,)
