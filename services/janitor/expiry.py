"""Enforce retention and sweep up after crashes.

Each sweep:
- expires jobs past their retention: audio objects, transcript rows and any copy at an
  external engine are removed and the row becomes an EXPIRED tombstone
  (`kazru.jobs.retention`); a job still running is told to stop;
- republishes jobs whose enqueue was never confirmed (`kazru.jobs.outbox`);
- fails jobs whose worker died on their last delivery (JetStream will not hand them out
  again, so nobody else would ever finish them) and takes their message off the stream;
- aborts multipart uploads abandoned by a crashed ingest;
- removes objects whose job never came to be, or is already a tombstone;
- deletes rate-limit events older than any limit's window.

Batches are claimed with FOR UPDATE SKIP LOCKED, so several janitors never
work on the same job. Objects are removed before the rows commit: if S3 fails
the transaction rolls back and the next sweep tries again.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru.adapters.bus import Bus
from kazru.adapters.storage import ObjectStore
from kazru.db.job_repository import JobRepository
from kazru.db.models import Job, JobState, RateLimitEvent
from kazru.domain import lifecycle
from kazru.domain.external_copies import ExternalCopies
from kazru.jobs import outbox, retention
from kazru.observability import metrics
from kazru.settings import Settings

log = logging.getLogger(__name__)

TOMBSTONE_STATES = tuple(lifecycle.TOMBSTONES)
# An object without a job row younger than this may belong to an upload still being probed.
ORPHAN_GRACE = timedelta(hours=1)
# A running job whose worker has not touched it for this many ack waits has lost its worker
# (workers heartbeat every third of an ack wait).
LOST_AFTER_ACK_WAITS = 3
# Longer than any rate limit's window (the gateway's upload limit counts per minute).
RATE_LIMIT_EVENTS_KEPT = timedelta(hours=1)


class Janitor:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        bus: Bus,
        *,
        external_copies: ExternalCopies,
    ):
        self._settings = settings
        self._sessions = sessions
        self._jobs = JobRepository(sessions, settings)
        self._store = store
        self._external_copies = external_copies
        self._bus = bus

    async def expire_due_jobs(self) -> int:
        """Expire one batch of jobs past their expiry time; returns how many."""
        stopped: list[uuid.UUID] = []
        async with self._sessions.begin() as session:
            due = list(
                await session.scalars(
                    select(Job)
                    .where(Job.expires_at <= datetime.now(UTC), Job.state.notin_(TOMBSTONE_STATES))
                    .order_by(Job.expires_at)
                    .limit(self._settings.janitor_batch_size)
                    .with_for_update(skip_locked=True)
                )
            )
            for job in due:
                if await retention.end_job(
                    session, self._store, self._bus, job, JobState.EXPIRED, self._settings, self._external_copies
                ):
                    stopped.append(job.id)
        for job_id in stopped:
            await self._tell_worker_to_stop(job_id)
        for job in due:
            log.info("job expired", extra={"job_id": str(job.id)})
        metrics.JANITOR_DELETIONS.labels("expired_jobs").inc(len(due))
        return len(due)

    async def _tell_worker_to_stop(self, job_id: uuid.UUID) -> None:
        await self._bus.announce_cancel(str(job_id))

    async def republish_unconfirmed(self) -> int:
        return await outbox.republish_unconfirmed(
            self._sessions,
            self._bus,
            timedelta(seconds=self._settings.enqueue_retry_after_seconds),
            self._settings.janitor_batch_size,
        )

    async def fail_jobs_lost_on_their_last_delivery(self) -> int:
        async def take_off_the_stream(job: Job) -> None:
            # A message JetStream stopped delivering (max_deliver reached) is never acked, and a work-queue
            # stream keeps it for ever: take it off, as for a deleted pending job, so the bus holds nothing of
            # a finished job. Before the commit: if NATS is down the row stays RUNNING and the next sweep retries.
            if job.queue_sequence is not None:
                await self._bus.remove_queued(job.queue_sequence)

        lost = await self._jobs.fail_lost_on_their_last_delivery(
            timedelta(seconds=self._settings.job_ack_wait_seconds * LOST_AFTER_ACK_WAITS), take_off_the_stream
        )
        for job in lost:
            log.error("job failed: its worker was lost on the last delivery", extra={"job_id": str(job.id)})
            await self._bus.announce_finished(str(job.id), job.state, job.error_code, job.error_message)
        return len(lost)

    async def abort_abandoned_uploads(self) -> int:
        """Abort multipart uploads older than the setting: a crashed ingest never finished or aborted them."""
        cutoff = datetime.now(UTC) - timedelta(hours=self._settings.abandoned_upload_hours)
        aborted = 0
        for key, upload_id, initiated in await self._store.list_multipart_uploads("jobs/"):
            if initiated is not None and initiated < cutoff:
                await self._store.abort_multipart_upload(key, upload_id)
                aborted += 1
        return aborted

    async def remove_orphan_objects(self) -> int:
        """Remove objects of uploads whose job row never came to be (a crash mid-upload), and any
        object of a tombstoned job (e.g. written by a worker that had not yet heard of the deletion)."""
        cutoff = datetime.now(UTC) - ORPHAN_GRACE
        objects = await self._store.list_objects("jobs/")
        candidates: dict[uuid.UUID, list[str]] = {}
        for name, modified in objects:
            try:
                job_id = uuid.UUID(name.split("/")[1])
            except (IndexError, ValueError):
                continue
            if modified < cutoff:
                candidates.setdefault(job_id, []).append(name)
        if not candidates:
            return 0
        async with self._sessions() as session:
            alive = set(
                await session.scalars(select(Job.id).where(Job.id.in_(candidates), Job.state.notin_(TOMBSTONE_STATES)))
            )
        removed = 0
        for job_id, names in candidates.items():
            if job_id in alive:
                continue
            for name in names:
                await self._store.delete(name)
                removed += 1
        return removed

    async def delete_old_rate_limit_events(self) -> int:
        cutoff = (datetime.now(UTC) - RATE_LIMIT_EVENTS_KEPT).timestamp()
        async with self._sessions.begin() as session:
            result = await session.execute(delete(RateLimitEvent).where(RateLimitEvent.at < cutoff))
        return result.rowcount or 0

    async def sweep(self) -> None:
        while await self.expire_due_jobs() == self._settings.janitor_batch_size:
            pass
        while await self.republish_unconfirmed() == self._settings.janitor_batch_size:
            pass
        for name, step in (("failed jobs lost on their last delivery", self.fail_jobs_lost_on_their_last_delivery),
                           ("aborted abandoned uploads", self.abort_abandoned_uploads),
                           ("removed orphan objects", self.remove_orphan_objects),
                           ("deleted old rate-limit events", self.delete_old_rate_limit_events)):  # fmt: skip
            count = await step()
            if count:
                log.info(name, extra={"count": count})
                metrics.JANITOR_DELETIONS.labels(step.__name__).inc(count)
