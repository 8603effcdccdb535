"""Job queries shared by the services that read jobs (gateway, exporter).

Owner isolation lives here: a job of another owner is NOT_FOUND, exactly like
a job that never existed, so ids leak nothing.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from kazru.db.models import Job, JobState
from kazru.domain import errors

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


def parse_job_id(job_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(job_id)
    except (ValueError, AttributeError, TypeError):
        raise errors.NotFound("job not found", code="JOB_NOT_FOUND", details={"job_id": str(job_id)[:64]}) from None


async def get_owned_job(session: AsyncSession, job_id: str, owner_id: str) -> Job:
    job = await session.get(Job, parse_job_id(job_id))
    if job is None or job.owner_id != owner_id:
        raise errors.NotFound("job not found", code="JOB_NOT_FOUND", details={"job_id": job_id})
    return job


def require_not_removed(job: Job) -> None:
    """Raise Gone when the job's audio and transcript were deleted (expired or deleted by its owner)."""
    state = job.job_state
    if state in (JobState.EXPIRED, JobState.DELETED):
        raise errors.Gone(
            "the job's audio and transcript have been deleted",
            code=f"JOB_{state.value}",
            details={"job_id": str(job.id)},
        )


def require_transcript(job: Job) -> None:
    """Raise unless the job has a transcript to read."""
    require_not_removed(job)
    state = job.job_state
    if state is not JobState.SUCCEEDED:
        raise errors.FailedPrecondition(
            f"the transcript is not ready: job is {state.value}",
            code="TRANSCRIPT_NOT_READY",
            details={"job_id": str(job.id), "state": state.value},
        )


def _encode_page_token(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_page_token(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, job_id = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except Exception:  # noqa: BLE001 - any garbage is the same client error
        raise errors.InvalidArgument("page_token is not valid", code="INVALID_PAGE_TOKEN") from None


async def list_owned_jobs(
    session: AsyncSession, owner_id: str, page_size: int, page_token: str
) -> tuple[list[Job], str]:
    """Newest first, keyset-paginated (AIP-158): stable while jobs are added. Jobs their owner deleted are
    not listed (they asked for them to go); their tombstone still answers GET by id, and expired jobs stay
    listed so their owner sees what happened to them."""
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        raise errors.InvalidArgument(f"page_size must be between 1 and {MAX_PAGE_SIZE}", code="INVALID_PAGE_SIZE")
    page_size = page_size or DEFAULT_PAGE_SIZE
    query = select(Job).where(Job.owner_id == owner_id, Job.state != JobState.DELETED)
    if page_token:
        created, job_id = _decode_page_token(page_token)
        query = query.where(tuple_(Job.created_at, Job.id) < tuple_(created, job_id))
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(page_size + 1)
    jobs = list(await session.scalars(query))
    if len(jobs) > page_size:
        return jobs[:page_size], _encode_page_token(jobs[page_size - 1])
    return jobs, ""
