"""Ending a job's life: deletion by its owner, expiry by the janitor (both count the job's usage, kazru/usage.py).

Both remove the same things, at once: every object under the job's prefix (the
original and anything derived), its transcript rows (segments, words, speakers),
any copy an external engine keeps, and its message if it still waits in the
queue. Only a tombstone row stays (id, owner, times, state EXPIRED/DELETED), so
the API can answer 410 Gone. Objects go before the transaction commits: if the
object store fails, the rows roll back and the next attempt starts over.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru import lifecycle, usage
from kazru.bus import Bus
from kazru.db import jobs
from kazru.db.models import Job, JobState, Segment, Speaker, Word
from kazru.settings import Settings
from kazru.storage import ObjectStore

log = logging.getLogger(__name__)


def job_prefix(job_id: uuid.UUID | str) -> str:
    return f"jobs/{job_id}/"


async def _forget_at_external_engine(job: Job, settings: Settings) -> None:
    if not job.external_operation_id or settings.engine != "speechkit":
        return
    # Imported here: the janitor and gateway run without the SpeechKit client installed or configured.
    from services.transcriber.speechkit import SpeechKitEngine

    engine = SpeechKitEngine(settings)
    try:
        await engine.forget(job.external_operation_id)
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            await close()
    job.external_operation_id = None


async def purge(session: AsyncSession, store: ObjectStore, bus: Bus | None, job: Job, settings: Settings) -> None:
    """Remove everything of a locked job but its row. Raises (and the caller rolls back) if anything fails."""
    if job.queue_sequence is not None and job.state == JobState.PENDING and bus is not None:
        # Still waiting in the queue: take the message off it so the bus holds nothing of the job.
        await bus.remove_queued(job.queue_sequence)
    for table in (Word, Segment, Speaker):
        await session.execute(delete(table).where(table.job_id == job.id))
    await store.delete_prefix(job_prefix(job.id))
    await _forget_at_external_engine(job, settings)


async def end_job(
    session: AsyncSession, store: ObjectStore, bus: Bus | None, job: Job, tombstone: JobState, settings: Settings
) -> bool:
    """Move a locked job to `tombstone` and remove its content; a pending or running job the owner
    deletes is CANCELLED on the way. Returns whether it was pending or running (its worker must stop)."""
    current = JobState(job.state)
    was_active = current in (JobState.PENDING, JobState.RUNNING)
    path = (JobState.CANCELLED, tombstone) if was_active and tombstone is JobState.DELETED else (tombstone,)
    state = current
    for step in path:  # refuse before touching anything
        lifecycle.check_transition(state, step, job.id)
        state = step
    await purge(session, store, bus, job, settings)
    now = datetime.now(UTC)
    for step in path:
        if step is tombstone:
            # Counted with the state it finished in (SUCCEEDED, FAILED, CANCELLED, or never finished).
            await usage.record_usage(session, job, settings)
        job.state = step
        job.finished_at = job.finished_at or now
    return was_active


async def delete_job(
    sessions: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    bus: Bus,
    settings: Settings,
    owner_id: str,
    job_id: str,
) -> Job:
    """The owner's DELETE: cancel if pending or running, remove everything now, keep a DELETED tombstone."""
    async with sessions.begin() as session:
        owned = await jobs.get_owned_job(session, job_id, owner_id)
        job = await session.scalar(select(Job).where(Job.id == owned.id).with_for_update())
        # Deleting what is already gone answers as every other route on it does: 410, not a state conflict.
        jobs.require_not_removed(job)
        was_active = await end_job(session, store, bus, job, JobState.DELETED, settings)
    if was_active:
        # After the commit: a worker that hears this finds the row already changed.
        try:
            await bus.publish_cancel(str(job.id))
        except Exception:  # the worker's heartbeat also checks the row, within seconds
            log.warning("could not publish the cancel signal", extra={"job_id": str(job.id)}, exc_info=True)
    log.info("job deleted by its owner", extra={"job_id": str(job.id), "was_active": was_active})
    return job
