"""Ending a job's life: deletion by its owner, expiry by the janitor (the row's part, state,
transcript rows and usage, is `kazru.db.job_repository.end_locked`).

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

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru.adapters.bus import Bus
from kazru.adapters.storage import ObjectStore
from kazru.db import job_repository, jobs
from kazru.db.models import Job, JobState
from kazru.domain.external_copies import ExternalCopies
from kazru.settings import Settings

log = logging.getLogger(__name__)


def job_prefix(job_id: uuid.UUID | str) -> str:
    return f"jobs/{job_id}/"


async def end_job(
    session: AsyncSession,
    store: ObjectStore,
    bus: Bus,
    job: Job,
    tombstone: JobState,
    settings: Settings,
    external_copies: ExternalCopies,
) -> bool:
    """Make a locked job a tombstone (`job_repository.end_locked`: the state, its transcript rows,
    usage) and remove what it has outside the database. Raises (and the caller rolls back) if
    anything fails. Returns whether it was pending or running (its worker must stop)."""
    # Its message comes off the queue, so the bus holds nothing of the job: a pending job's waits there;
    # a running job's is held by its worker (whose later ack or term of a removed message does nothing),
    # or by nobody if that worker died on the last delivery (JetStream never drops such a message).
    queued = job.queue_sequence if job.state in (JobState.PENDING, JobState.RUNNING) else None
    was_active = await job_repository.end_locked(session, job, tombstone, settings)
    if queued is not None:
        await bus.remove_queued(queued)
    await store.delete_prefix(job_prefix(job.id))
    if job.external_operation_id and await external_copies.forget(job.external_operation_id):
        job.external_operation_id = None
    return was_active


class JobRemoval:
    """The owner's DELETE: cancel if pending or running, remove everything now, keep a DELETED tombstone."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        bus: Bus,
        settings: Settings,
        external_copies: ExternalCopies,
    ):
        self._sessions = sessions
        self._store = store
        self._bus = bus
        self._settings = settings
        self._external_copies = external_copies

    async def delete_owned(self, owner_id: str, job_id: str) -> Job:
        async with self._sessions.begin() as session:
            owned = await jobs.get_owned_job(session, job_id, owner_id)
            job = await session.scalar(select(Job).where(Job.id == owned.id).with_for_update())
            # Deleting what is already gone answers as every other route on it does: 410, not a state conflict.
            jobs.require_not_removed(job)
            was_active = await end_job(
                session, self._store, self._bus, job, JobState.DELETED, self._settings, self._external_copies
            )
        if was_active:
            # After the commit: a worker that hears this finds the row already changed.
            await self._bus.announce_cancel(str(job.id))
        log.info("job deleted by its owner", extra={"job_id": str(job.id), "was_active": was_active})
        return job
