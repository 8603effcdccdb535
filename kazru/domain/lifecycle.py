"""The job lifecycle (AIP-216): the one place that knows which state may follow which.

    PENDING ─▶ RUNNING ─▶ SUCCEEDED / FAILED / CANCELLED ─▶ EXPIRED / DELETED
       │          │ ▲ ⟲ RUNNING again when the queue redelivers a job whose worker was lost
       │          └─┘ back to PENDING when a worker hands the job back (shutdown, transient failure)
       └─▶ FAILED / CANCELLED / EXPIRED

`JobState` is defined here and stored by name in `jobs.state` (`kazru.db.models` imports it).
EXPIRED and DELETED are tombstones: nothing leaves them. Every change of `jobs.state`
goes through `kazru.db.job_repository.move` on a locked row, which calls `check_transition`,
so an illegal change can never be written, even by a race.
"""

from __future__ import annotations

from enum import StrEnum

from kazru.domain import errors


class JobState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    DELETED = "DELETED"

    @property
    def is_terminal(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING)


PENDING, RUNNING = JobState.PENDING, JobState.RUNNING
SUCCEEDED, FAILED, CANCELLED = JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED
EXPIRED, DELETED = JobState.EXPIRED, JobState.DELETED

LEGAL_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    PENDING: frozenset({RUNNING, FAILED, CANCELLED, EXPIRED}),
    # RUNNING → RUNNING: the next worker claims a job whose worker died (JetStream redelivered it).
    RUNNING: frozenset({PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED, EXPIRED}),
    SUCCEEDED: frozenset({EXPIRED, DELETED}),
    FAILED: frozenset({EXPIRED, DELETED}),
    CANCELLED: frozenset({EXPIRED, DELETED}),
    EXPIRED: frozenset(),
    DELETED: frozenset(),
}

TOMBSTONES = frozenset({EXPIRED, DELETED})
# States in which a job's work is over (it counts once in the usage figures when it gets here).
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})


def is_legal(current: JobState | str, target: JobState | str) -> bool:
    return JobState(target) in LEGAL_TRANSITIONS[JobState(current)]


def sources_of(target: JobState | str) -> tuple[JobState, ...]:
    """Every state from which `target` may be reached (for a guarded UPDATE ... WHERE state IN ...)."""
    target = JobState(target)
    return tuple(state for state, targets in LEGAL_TRANSITIONS.items() if target in targets)


def check_transition(current: JobState | str, target: JobState | str, job_id: object = "") -> None:
    """Raise FAILED_PRECONDITION (HTTP 409) unless `current` may become `target`."""
    if not is_legal(current, target):
        current, target = JobState(current), JobState(target)
        raise errors.FailedPrecondition(
            f"a {current.value} job cannot become {target.value}",
            code=f"JOB_ALREADY_{current.value}" if current in TOMBSTONES else "ILLEGAL_STATE_TRANSITION",
            details={"job_id": str(job_id), "state": current.value, "requested": target.value},
        )
