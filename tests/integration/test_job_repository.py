"""The job repository on real PostgreSQL: every pair of states, walked through it, is allowed
exactly when `lifecycle.LEGAL_TRANSITIONS` allows it, and nothing is written when it is not."""

from __future__ import annotations

import itertools

import pytest
import pytest_asyncio
from sqlalchemy import delete, func, select

from kazru.db import job_repository
from kazru.db.job_repository import JobRepository, Outcome
from kazru.db.models import Job, JobState, Segment
from kazru.domain import errors
from kazru.domain.lifecycle import LEGAL_TRANSITIONS
from kazru.domain.transcript import Transcript
from tests.helpers import store_finished_job

STATES = list(JobState)
CREATED: list = []


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def remove_the_rows_made_here(database, store):
    """The database is the session's: PENDING rows left here would be 'unconfirmed enqueues' to
    a later test's janitor (test_exactly_once counts what it republishes)."""
    yield
    async with database.begin() as session:
        for job_id in CREATED:
            await job_repository.delete_transcript(session, job_id)
        await session.execute(delete(Job).where(Job.id.in_(CREATED)))
    for job_id in CREATED:
        await store.delete_prefix(f"jobs/{job_id}/")
    CREATED.clear()


async def job_in(database, store, state: JobState) -> Job:
    job = await store_finished_job(database, store, state=state.value, extra_objects=())
    CREATED.append(job.id)
    return job


async def state_of(database, job_id) -> JobState:
    async with database() as session:
        return JobState((await session.get(Job, job_id)).state)


async def test_every_pair_of_states_is_allowed_through_the_repository_exactly_as_the_lifecycle_says(database, store):
    allowed = set()
    for source, target in itertools.product(STATES, STATES):
        job = await job_in(database, store, source)
        try:
            async with database.begin() as session:
                locked = await session.scalar(select(Job).where(Job.id == job.id).with_for_update())
                job_repository.move(locked, target)
        except errors.FailedPrecondition:
            assert await state_of(database, job.id) is source  # refused: nothing written
        else:
            assert await state_of(database, job.id) is target
            allowed.add((source, target))
    assert allowed == {(source, target) for source, targets in LEGAL_TRANSITIONS.items() for target in targets}


@pytest.mark.parametrize("source", STATES)
async def test_the_workers_steps_change_a_job_only_from_the_states_the_lifecycle_allows(
    database, store, settings, source
):
    repository = JobRepository(database, settings)
    steps = {
        JobState.RUNNING: lambda job_id: repository.claim(job_id, 1),
        JobState.PENDING: repository.hand_back,
        JobState.SUCCEEDED: lambda job_id: repository.succeed(
            job_id,
            Outcome(transcript=Transcript([], [], {"kk": 1.0}), engine="whisper"),
        ),
        JobState.FAILED: lambda job_id: repository.fail(job_id, "TRANSCRIPTION_FAILED", "failed"),
    }
    for target, step in steps.items():
        job = await job_in(database, store, source)
        done = await step(job.id)
        legal = target in LEGAL_TRANSITIONS[source]
        assert bool(done) is legal, (source, target)
        assert await state_of(database, job.id) is (target if legal else source)


@pytest.mark.parametrize("source", STATES)
@pytest.mark.parametrize("tombstone", [JobState.EXPIRED, JobState.DELETED])
async def test_ending_a_job_follows_the_lifecycle_and_removes_its_transcript_only_when_allowed(
    database, store, settings, source, tombstone
):
    job = await job_in(database, store, source)
    active = source in (JobState.PENDING, JobState.RUNNING)
    path = [JobState.CANCELLED, tombstone] if active and tombstone is JobState.DELETED else [tombstone]
    steps = list(zip([source, *path], path, strict=False))
    legal = all(target in LEGAL_TRANSITIONS[current] for current, target in steps)
    try:
        async with database.begin() as session:
            locked = await session.scalar(select(Job).where(Job.id == job.id).with_for_update())
            was_active = await job_repository.end_locked(session, locked, tombstone, settings)
    except errors.FailedPrecondition:
        assert not legal
        assert await state_of(database, job.id) is source
    else:
        assert legal and was_active is active
        assert await state_of(database, job.id) is tombstone
    async with database() as session:
        segments = await session.scalar(select(func.count()).select_from(Segment).where(Segment.job_id == job.id))
    assert segments == (0 if legal else 1)


async def test_a_redelivered_job_whose_worker_was_lost_is_claimed_again_and_counts_the_delivery(
    database, store, settings
):
    repository = JobRepository(database, settings)
    job = await job_in(database, store, JobState.PENDING)
    first = await repository.claim(job.id, 1)
    again = await repository.claim(job.id, 3)  # deliveries 2 and 3: the worker of delivery 2 died unclaimed
    assert first.attempts == 2 and again.attempts == 3  # the helper's row starts with one attempt
    assert await state_of(database, job.id) is JobState.RUNNING
    assert await repository.heartbeat(job.id)
    assert await repository.succeed(
        job.id, Outcome(transcript=Transcript([], [], {}), engine="whisper")
    )
    assert await repository.claim(job.id, 4) is None and not await repository.heartbeat(job.id)
