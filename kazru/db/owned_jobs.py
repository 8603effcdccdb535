"""Everything the gateway reads and changes of an owner's jobs, each call in a transaction of its own.

Another owner's job is NOT_FOUND, exactly like a job that never existed (`kazru/db/jobs.py`). Edits take
values already checked by `kazru.domain.transcript_edits` and lock the job's row first
(`kazru/db/transcript_edits.py`), so concurrent edits of one job queue up.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru.db import jobs, transcript_edits, transcripts, usage
from kazru.db.models import Job, Segment, Word


@dataclass(frozen=True)
class EditedSegment:
    """A segment as an edit left it, with its words in order."""

    segment: Segment
    words: list[Word]


class OwnedJobs:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._sessions = sessions

    async def get(self, owner_id: str, job_id: str) -> Job:
        async with self._sessions() as session:
            return await jobs.get_owned_job(session, job_id, owner_id)

    async def list(self, owner_id: str, page_size: int, page_token: str) -> tuple[list[Job], str]:
        """Newest first, a page at a time (`kazru.db.jobs.list_owned_jobs`)."""
        async with self._sessions() as session:
            return await jobs.list_owned_jobs(session, owner_id, page_size, page_token)

    async def transcript(self, owner_id: str, job_id: str) -> tuple[Job, transcripts.StoredTranscript]:
        """A finished job and its transcript; Gone once removed, FAILED_PRECONDITION until it is ready."""
        async with self._sessions() as session:
            job = await jobs.get_owned_job(session, job_id, owner_id)
            jobs.require_transcript(job)
            return job, await transcripts.load_transcript(session, job.id)

    async def rename_speakers(self, owner_id: str, job_id: str, names: dict[str, str]) -> None:
        async with self._sessions.begin() as session:
            await transcript_edits.rename_speakers(session, job_id, owner_id, names)

    async def merge_speaker(self, owner_id: str, job_id: str, speaker: str, into: str) -> None:
        async with self._sessions.begin() as session:
            await transcript_edits.merge_speaker(session, job_id, owner_id, speaker, into)

    async def set_segment_text(self, owner_id: str, job_id: str, index: int, text: str | None) -> EditedSegment:
        """New text, or with None the machine's text back."""
        async with self._sessions.begin() as session:
            segment = await transcript_edits.edit_segment(session, job_id, owner_id, index, text)
            return EditedSegment(segment, await transcript_edits.segment_words(session, segment))

    async def set_segment_language(self, owner_id: str, job_id: str, index: int, language: str) -> EditedSegment:
        async with self._sessions.begin() as session:
            segment = await transcript_edits.set_segment_language(session, job_id, owner_id, index, language)
            return EditedSegment(segment, await transcript_edits.segment_words(session, segment))

    async def set_segment_speaker(self, owner_id: str, job_id: str, index: int, label: str) -> EditedSegment:
        async with self._sessions.begin() as session:
            segment = await transcript_edits.set_segment_speaker(session, job_id, owner_id, index, label)
            return EditedSegment(segment, await transcript_edits.segment_words(session, segment))

    async def usage(self, owner_id: str, days: int) -> list[usage.UsageDay]:
        """The owner's figures per day of upload, newest first (`kazru.db.usage.usage_report`)."""
        async with self._sessions() as session:
            return await usage.usage_report(session, days, owner_id=owner_id)

    async def ping(self) -> None:
        async with self._sessions() as session:
            await session.execute(text("SELECT 1"))
