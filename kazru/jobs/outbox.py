"""Getting every committed job onto the queue: the job row is the outbox.

Ingest commits the job with `queue_sequence` NULL, publishes JobUploaded
(Nats-Msg-Id = job id) and then records the stream sequence. If the process
dies, or NATS or the database fails, between the commit and that record, the
job is still PENDING with no sequence, and `republish_unconfirmed` (run by the
janitor) publishes it again. Republishing is safe: inside JetStream's duplicate
window the server drops the copy, and a worker skips a job that is no longer
PENDING or RUNNING.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru.adapters.bus import Bus
from kazru.db.job_repository import JobRepository
from kazru.db.models import Job, JobState
from kazru.v1 import events_pb2

log = logging.getLogger(__name__)


def job_uploaded_event(job: Job) -> events_pb2.JobUploaded:
    upload_time = Timestamp()
    upload_time.FromDatetime(job.created_at)
    return events_pb2.JobUploaded(job_id=str(job.id), owner_id=job.owner_id, upload_time=upload_time)


async def publish_job(jobs: JobRepository, bus: Bus, job: Job) -> None:
    """Publish a committed job's JobUploaded and record that it is on the queue."""
    sequence = await bus.publish_uploaded(job_uploaded_event(job))
    await jobs.record_enqueued(job.id, sequence)
    job.queue_sequence = sequence


async def republish_unconfirmed(
    sessions: async_sessionmaker[AsyncSession], bus: Bus, older_than: timedelta, batch_size: int
) -> int:
    """Publish PENDING jobs whose message was never confirmed; returns how many.

    Rows are taken FOR UPDATE SKIP LOCKED, so several janitors never publish the same job twice at once.
    """
    cutoff = datetime.now(UTC) - older_than
    async with sessions.begin() as session:
        stranded = list(
            await session.scalars(
                select(Job)
                .where(Job.state == JobState.PENDING, Job.queue_sequence.is_(None), Job.created_at < cutoff)
                .order_by(Job.created_at)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            )
        )
        for job in stranded:
            job.queue_sequence = await bus.publish_uploaded(job_uploaded_event(job))
            log.warning("republished a job whose enqueue was never confirmed", extra={"job_id": str(job.id)})
    return len(stranded)
