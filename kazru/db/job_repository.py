"""Every write of a job's row once it exists, and the one place its state changes.

A state change is `move` on a row locked FOR UPDATE: it checks `kazru.domain.lifecycle`'s rules and
refuses an illegal change before anything is written, so a race (a job deleted while its worker
saves, a message redelivered for a finished job) can never write one. The worker's steps
(claim … succeed, fail, hand back) each run in a transaction of their own and report a lost race
by returning None/False instead of raising; the janitor and the owner's delete, which work on
batches of rows they have locked themselves, call the `*_locked` forms inside their transaction.

Creation is ingest's (`JobRepository.add_upload`): a new row is PENDING, or SUCCEEDED at once when it
reuses an earlier identical upload's transcript (`add_reusing`, written here beside `succeed`). Services
hand the repository domain values (`NewUpload`, `Outcome` with its `Transcript`); every row is built here.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru.db import transcripts, usage
from kazru.db.models import Job, JobState, Segment, Speaker, Word
from kazru.domain import lifecycle
from kazru.domain.transcript import Transcript
from kazru.settings import Settings

TRANSCRIPT_TABLES = (Word, Segment, Speaker)


@dataclass(frozen=True)
class Outcome:
    """What a finished transcription writes: its transcript and what the job says of it."""

    transcript: Transcript
    engine: str
    # The engine's model ("whisper-base", "gigaam-multilingual-ctc"); empty when the engine names none.
    engine_model: str = ""
    notices: list[dict[str, str]] = field(default_factory=list)
    billed_seconds: float = 0.0
    external_operation_id: str | None = None

    @property
    def detected_language(self) -> str | None:
        return self.transcript.main_language

    @property
    def language_shares(self) -> dict[str, float]:
        return self.transcript.language_shares

    @property
    def speaker_count(self) -> int:
        return len(self.transcript.speakers)


@dataclass(frozen=True)
class NewUpload:
    """An accepted upload, as ingest knows it once its bytes are stored and probed: what the job row records."""

    id: uuid.UUID
    owner_id: str
    filename: str
    content_type: str
    size_bytes: int
    object_key: str
    container: str
    duration_seconds: float | None
    codec: str | None
    channels: int | None
    sample_rate: int | None
    languages: tuple[str, ...]
    # 0: found automatically
    min_speakers: int
    max_speakers: int
    content_sha256: str
    # The client's idempotency key; empty: none.
    request_id: str = ""


def transcript_rows(job_id: uuid.UUID, transcript: Transcript) -> list[Segment | Word | Speaker]:
    """The rows that store a transcript: its speakers, its segments in order and their words (numbered
    across the whole transcript); times to the millisecond, as every reader shows them."""
    rows: list[Segment | Word | Speaker] = [
        Speaker(job_id=job_id, label=speaker.label, speaking_seconds=speaker.speaking_seconds,
                segment_count=speaker.segment_count)
        for speaker in transcript.speakers
    ]  # fmt: skip
    word_position = 0
    for position, segment in enumerate(transcript.segments):
        rows.append(
            Segment(
                job_id=job_id,
                position=position,
                start_seconds=round(segment.start, 3),
                end_seconds=round(segment.end, 3),
                text=segment.text,
                language=segment.language,
                confidence=round(segment.confidence, 4),
                speaker=segment.speaker,
            )
        )
        for word in segment.words:
            rows.append(
                Word(job_id=job_id, segment_position=position, position=word_position,
                     start_seconds=round(word.start, 3), end_seconds=round(word.end, 3), text=word.text,
                     probability=round(word.probability, 4), speaker=word.speaker)
            )  # fmt: skip
            word_position += 1
    return rows


def move(job: Job, target: JobState) -> None:
    """Change a locked job's state; raises FAILED_PRECONDITION (409) if the lifecycle forbids it."""
    lifecycle.check_transition(job.state, target, job.id)
    job.state = target


async def delete_transcript(session: AsyncSession, job_id: uuid.UUID) -> None:
    """Remove a job's segments, words and speakers (before a new transcript, or when the job ends)."""
    for table in TRANSCRIPT_TABLES:
        await session.execute(delete(table).where(table.job_id == job_id))


def _take_result(job: Job, source: Outcome | Job, billed_seconds: float) -> None:
    """The summary a finished job shows: from its transcription's outcome, or from the earlier job whose
    transcript it reuses."""
    job.progress = 100
    job.detected_language = source.detected_language
    job.language_shares = source.language_shares
    job.speaker_count = source.speaker_count
    job.notices = source.notices
    job.engine = source.engine
    job.engine_model = source.engine_model or None
    job.billed_seconds = billed_seconds


async def add_reusing(session: AsyncSession, job: Job, earlier: Job, now: datetime, settings: Settings) -> None:
    """Add a new row that takes an identical earlier upload's result: SUCCEEDED at once, the engine not
    run (nothing billed), the earlier transcript copied as its own, its usage counted. Its own object
    and expiry; it says where its transcript came from."""
    job.state = JobState.SUCCEEDED
    _take_result(job, earlier, billed_seconds=0.0)
    job.reused_from = earlier.id
    job.started_at = job.finished_at = now
    job.duration_seconds = earlier.duration_seconds
    job.declared_duration_seconds = earlier.declared_duration_seconds
    session.add(job)
    await session.flush()
    await transcripts.copy_transcript(session, earlier.id, job.id)
    await usage.record_usage(session, job, settings)


async def _locked(session: AsyncSession, job_id: uuid.UUID) -> Job | None:
    return await session.scalar(select(Job).where(Job.id == job_id).with_for_update())


async def fail_locked(session: AsyncSession, job: Job, code: str, message: str, settings: Settings) -> None:
    """FAILED with a reason, counted in the usage figures."""
    move(job, JobState.FAILED)
    job.error_code, job.error_message = code, message
    job.finished_at = datetime.now(UTC)
    await usage.record_usage(session, job, settings)


async def end_locked(session: AsyncSession, job: Job, tombstone: JobState, settings: Settings) -> bool:
    """Make a locked job a tombstone (EXPIRED or DELETED) and remove its transcript rows; a pending
    or running job its owner deletes is CANCELLED on the way. Checks every step before writing any.
    Returns whether the job was pending or running (its worker must stop)."""
    current = JobState(job.state)
    was_active = current in (JobState.PENDING, JobState.RUNNING)
    path = (JobState.CANCELLED, tombstone) if was_active and tombstone is JobState.DELETED else (tombstone,)
    state = current
    for step in path:  # refuse before touching anything
        lifecycle.check_transition(state, step, job.id)
        state = step
    await delete_transcript(session, job.id)
    now = datetime.now(UTC)
    for step in path:
        if step is tombstone:
            # Counted with the state it finished in (SUCCEEDED, FAILED, CANCELLED, or never finished).
            await usage.record_usage(session, job, settings)
        move(job, step)
        job.finished_at = job.finished_at or now
    return was_active


class JobRepository:
    """Ingest's, the worker's and the janitor's reads and writes of job rows, each in its own transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings):
        self._sessions = sessions
        self._settings = settings

    async def find_by_request_id(self, owner_id: str, request_id: str) -> Job | None:
        """The owner's job made by an upload with this idempotency key, if any."""
        async with self._sessions() as session:
            return await session.scalar(select(Job).where(Job.owner_id == owner_id, Job.idempotency_key == request_id))

    async def add_upload(self, upload: NewUpload) -> Job:
        """The job of an accepted upload: PENDING, or SUCCEEDED at once with the transcript of the owner's
        identical earlier upload (`reuse_identical_uploads`). If a concurrent upload with the same request id
        committed first, that job is returned instead (its id differs from `upload.id`) and nothing is added."""
        now = datetime.now(UTC)
        job = Job(
            id=upload.id,
            owner_id=upload.owner_id,
            state=JobState.PENDING,
            progress=0,
            filename=upload.filename,
            content_type=upload.content_type,
            size_bytes=upload.size_bytes,
            object_key=upload.object_key,
            container=upload.container,
            duration_seconds=upload.duration_seconds,
            codec=upload.codec,
            channels=upload.channels,
            sample_rate=upload.sample_rate,
            languages=list(upload.languages),
            max_speakers=upload.max_speakers or None,
            min_speakers=upload.min_speakers or None,
            attempts=0,
            created_at=now,
            expires_at=now + timedelta(hours=self._settings.retention_hours),
            idempotency_key=upload.request_id or None,
            content_sha256=upload.content_sha256,
        )
        try:
            async with self._sessions.begin() as session:
                earlier = await self._reusable_result(session, job) if self._settings.reuse_identical_uploads else None
                if earlier is None:
                    session.add(job)
                else:
                    await add_reusing(session, job, earlier, now, self._settings)
        except IntegrityError:
            earlier = await self.find_by_request_id(upload.owner_id, upload.request_id) if upload.request_id else None
            if earlier is None:
                raise
            return earlier
        return job

    async def _reusable_result(self, session: AsyncSession, job: Job) -> Job | None:
        """The owner's latest finished job of the same bytes and options on this engine and model (another
        model would write another transcript, and the copy would name a model that did not run), whose
        transcript is still there as the machine left it; locked (FOR SHARE) so that it cannot be deleted while
        its transcript is copied. Never another owner's."""
        return await session.scalar(
            select(Job)
            .where(
                Job.owner_id == job.owner_id,
                Job.content_sha256 == job.content_sha256,
                Job.state == JobState.SUCCEEDED,
                Job.engine == self._settings.engine,
                Job.engine_model == self._settings.engine_model,
                Job.languages == job.languages,
                Job.min_speakers.is_not_distinct_from(job.min_speakers),
                Job.max_speakers.is_not_distinct_from(job.max_speakers),
                Job.expires_at > datetime.now(UTC),
                Job.transcript_edited_at.is_(None),  # the machine's result, not a person's edits of it
            )
            .order_by(Job.finished_at.desc())
            .limit(1)
            .with_for_update(read=True)
        )

    async def record_enqueued(self, job_id: uuid.UUID, sequence: int) -> None:
        """The job's message is on the queue at this stream sequence (`kazru.jobs.outbox`)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Job).where(Job.id == job_id, Job.queue_sequence.is_(None)).values(queue_sequence=sequence)
            )

    async def claim(self, job_id: uuid.UUID, delivery: int) -> Job | None:
        """RUNNING for this delivery (JetStream's count, this one included); None for a job that is
        gone or already finished (its message is then simply acked)."""
        async with self._sessions.begin() as session:
            job = await _locked(session, job_id)
            if job is None or not lifecycle.is_legal(job.state, JobState.RUNNING):
                return None
            move(job, JobState.RUNNING)
            job.progress = 0
            # At least the delivery count: a delivery whose worker died before this commit (or whose claim
            # failed and was nak'ed) used up one of max_deliver without being counted here, and the janitor
            # takes attempts >= job_max_deliver for "on its last delivery". Counting only our own claims,
            # a job whose worker then died on the real last delivery would stay RUNNING for ever.
            job.attempts = max(job.attempts + 1, delivery)
            job.started_at = datetime.now(UTC)
            return job

    async def heartbeat(self, job_id: uuid.UUID) -> bool:
        """Mark a running job alive (the janitor fails jobs whose worker died on their last delivery);
        False if it is no longer RUNNING (deleted, expired: its work must stop)."""
        async with self._sessions.begin() as session:
            still_running = await session.scalar(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.RUNNING)
                .values(updated_at=datetime.now(UTC))
                .returning(Job.id)
            )
        return still_running is not None

    async def record_progress(self, job_id: uuid.UUID, percent: int) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING).values(progress=percent)
            )

    async def record_duration(self, job_id: uuid.UUID, decoded: float, declared_if_truncated: float | None) -> None:
        """The job's duration is what decodes; a header's larger claim is kept only for a truncated file."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Job).where(Job.id == job_id).values(
                    duration_seconds=decoded, declared_duration_seconds=declared_if_truncated
                )
            )  # fmt: skip

    async def record_external_copy(self, job_id: uuid.UUID, operation_id: str | None) -> None:
        """The copy the engine's provider keeps of this job (None: none left)."""
        async with self._sessions.begin() as session:
            await session.execute(update(Job).where(Job.id == job_id).values(external_operation_id=operation_id))

    async def succeed(self, job_id: uuid.UUID, outcome: Outcome) -> bool:
        """Replace the job's transcript and mark it SUCCEEDED, in one transaction. False (and nothing
        written) if the job is no longer RUNNING (deleted or expired meanwhile)."""
        async with self._sessions.begin() as session:
            job = await _locked(session, job_id)
            if job is None or not lifecycle.is_legal(job.state, JobState.SUCCEEDED):
                return False
            await delete_transcript(session, job_id)
            session.add_all(transcript_rows(job_id, outcome.transcript))
            move(job, JobState.SUCCEEDED)
            _take_result(job, outcome, outcome.billed_seconds)
            job.external_operation_id = outcome.external_operation_id
            job.finished_at = datetime.now(UTC)
            job.error_code = job.error_message = None
            await usage.record_usage(session, job, self._settings)
        return True

    async def fail(self, job_id: uuid.UUID, code: str, message: str) -> Job | None:
        """FAILED with a reason; None if the job may no longer fail (deleted or expired meanwhile)."""
        async with self._sessions.begin() as session:
            job = await _locked(session, job_id)
            if job is None or not lifecycle.is_legal(job.state, JobState.FAILED):
                return None
            await fail_locked(session, job, code, message, self._settings)
            return job

    async def hand_back(self, job_id: uuid.UUID) -> bool:
        """A running job back to PENDING (the worker stops or will retry); False if it is no longer RUNNING."""
        async with self._sessions.begin() as session:
            job = await _locked(session, job_id)
            if job is None or not lifecycle.is_legal(job.state, JobState.PENDING):
                return False
            move(job, JobState.PENDING)
            return True

    async def fail_lost_on_their_last_delivery(
        self, lost_after: timedelta, before_commit: Callable[[Job], Awaitable[None]]
    ) -> list[Job]:
        """FAILED (WORKER_LOST) for running jobs on their last delivery whose heartbeat stopped
        `lost_after` ago; `before_commit` runs for each inside the transaction (if it raises, none is failed)."""
        cutoff = datetime.now(UTC) - lost_after
        async with self._sessions.begin() as session:
            lost = list(
                await session.scalars(
                    select(Job)
                    .where(
                        Job.state == JobState.RUNNING,
                        Job.attempts >= self._settings.job_max_deliver,
                        Job.updated_at < cutoff,
                    )
                    .limit(self._settings.janitor_batch_size)
                    .with_for_update(skip_locked=True)
                )
            )
            for job in lost:
                message = f"the worker stopped on the last of {job.attempts} attempts"
                await fail_locked(session, job, "WORKER_LOST", message, self._settings)
                await before_commit(job)
        return lost
