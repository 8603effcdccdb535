"""Enforce retention: expired jobs lose their audio and transcript and become tombstones.

Batches are claimed with FOR UPDATE SKIP LOCKED, so several janitors never
work on the same job. The object is removed before the rows: if S3 fails the
transaction rolls back and the next sweep tries again.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru.db.models import Job, JobState, Segment
from kazru.settings import Settings
from kazru.storage import ObjectStore

log = logging.getLogger(__name__)

TOMBSTONE_STATES = (JobState.EXPIRED, JobState.DELETED)
# An object without a job row younger than this may belong to an upload still being probed.
ORPHAN_GRACE = timedelta(hours=1)


class Janitor:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], store: ObjectStore):
        self._settings = settings
        self._sessions = sessions
        self._store = store

    async def expire_due_jobs(self) -> int:
        """Expire one batch of jobs past their expiry time; returns how many."""
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
                await self._store.delete(job.object_key)
                await session.execute(delete(Segment).where(Segment.job_id == job.id))
                job.state = JobState.EXPIRED
        for job in due:
            log.info("job expired", extra={"job_id": str(job.id)})
        return len(due)

    async def remove_orphan_objects(self) -> int:
        """Remove objects left by uploads whose job row never came to be (a crash mid-upload)."""
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
            known = set(await session.scalars(select(Job.id).where(Job.id.in_(candidates))))
        removed = 0
        for job_id, names in candidates.items():
            if job_id in known:
                continue
            for name in names:
                await self._store.delete(name)
                removed += 1
        return removed

    async def sweep(self) -> None:
        while await self.expire_due_jobs() == self._settings.janitor_batch_size:
            pass
        orphans = await self.remove_orphan_objects()
        if orphans:
            log.info("removed orphan objects", extra={"count": orphans})
