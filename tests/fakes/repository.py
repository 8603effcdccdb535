"""The job repository in memory, for unit tests of the use cases (upload, transcription, edit) without
PostgreSQL. It speaks the vocabulary of `kazru.db.job_repository.JobRepository` (ingest's and the
worker's steps) and `kazru.db.owned_jobs.OwnedJobs` (the gateway's reads and edits), keeps the same
rows (`transcript_rows`, the ORM classes unattached) and follows the same rules (`kazru.domain.lifecycle`,
`kazru.domain.transcript_edits`, owner isolation); the real ones are tested against PostgreSQL in
tests/integration."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from kazru.db import jobs
from kazru.db.job_repository import NewUpload, Outcome, transcript_rows
from kazru.db.models import Job, JobState, Segment, Speaker, Word
from kazru.db.owned_jobs import EditedSegment
from kazru.db.transcripts import StoredTranscript
from kazru.domain import errors, lifecycle
from kazru.domain.language_shares import language_shares
from kazru.domain.transcript_edits import check_speaker_label, text_after_edit
from kazru.settings import Settings


class InMemoryJobs:
    def __init__(self, settings: Settings):
        self._settings = settings
        self.jobs: dict[uuid.UUID, Job] = {}
        self.rows: dict[uuid.UUID, list[Segment | Word | Speaker]] = {}
        self.progress_reports: list[tuple[uuid.UUID, int]] = []

    # -- what ingest does (JobRepository)

    async def find_by_request_id(self, owner_id: str, request_id: str) -> Job | None:
        found = [job for job in self.jobs.values() if job.owner_id == owner_id and job.idempotency_key == request_id]
        return found[0] if found else None

    async def add_upload(self, upload: NewUpload) -> Job:
        if upload.request_id and (earlier := await self.find_by_request_id(upload.owner_id, upload.request_id)):
            return earlier  # the unique index's answer
        now = datetime.now(UTC)
        job = Job(
            id=upload.id, owner_id=upload.owner_id, state=JobState.PENDING, progress=0, filename=upload.filename,
            content_type=upload.content_type, size_bytes=upload.size_bytes, object_key=upload.object_key,
            container=upload.container, duration_seconds=upload.duration_seconds, codec=upload.codec,
            channels=upload.channels, sample_rate=upload.sample_rate, languages=list(upload.languages),
            max_speakers=upload.max_speakers or None, min_speakers=upload.min_speakers or None, attempts=0,
            created_at=now, updated_at=now, expires_at=now + timedelta(hours=self._settings.retention_hours),
            idempotency_key=upload.request_id or None, content_sha256=upload.content_sha256,
        )  # fmt: skip
        earlier = self._reusable_result(job) if self._settings.reuse_identical_uploads else None
        if earlier is not None:
            job.state, job.progress, job.reused_from = JobState.SUCCEEDED, 100, earlier.id
            job.detected_language, job.language_shares = earlier.detected_language, earlier.language_shares
            job.speaker_count, job.engine, job.engine_model = earlier.speaker_count, earlier.engine, earlier.engine_model
            job.started_at = job.finished_at = now
            self.rows[job.id] = [_copy_row(row, job.id) for row in self.rows[earlier.id]]
        self.jobs[job.id] = job
        return job

    def _reusable_result(self, job: Job) -> Job | None:
        same = [
            earlier for earlier in self.jobs.values()
            if earlier.owner_id == job.owner_id and earlier.content_sha256 == job.content_sha256
            and earlier.state == JobState.SUCCEEDED and earlier.engine == self._settings.engine
            and earlier.languages == job.languages and earlier.min_speakers == job.min_speakers
            and earlier.max_speakers == job.max_speakers and earlier.transcript_edited_at is None
        ]  # fmt: skip
        return max(same, key=lambda earlier: earlier.finished_at, default=None)

    async def record_enqueued(self, job_id: uuid.UUID, sequence: int) -> None:
        job = self.jobs[job_id]
        if job.queue_sequence is None:
            job.queue_sequence = sequence

    # -- what the worker does (JobRepository)

    def _legal(self, job_id: uuid.UUID, target: JobState) -> Job | None:
        job = self.jobs.get(job_id)
        return job if job is not None and lifecycle.is_legal(job.state, target) else None

    async def claim(self, job_id: uuid.UUID, delivery: int) -> Job | None:
        if (job := self._legal(job_id, JobState.RUNNING)) is None:
            return None
        job.state, job.progress = JobState.RUNNING, 0
        job.attempts = max(job.attempts + 1, delivery)
        job.started_at = datetime.now(UTC)
        return job

    async def heartbeat(self, job_id: uuid.UUID) -> bool:
        return self.jobs[job_id].state == JobState.RUNNING

    async def record_progress(self, job_id: uuid.UUID, percent: int) -> None:
        self.progress_reports.append((job_id, percent))
        if self.jobs[job_id].state == JobState.RUNNING:
            self.jobs[job_id].progress = percent

    async def record_duration(self, job_id: uuid.UUID, decoded: float, declared_if_truncated: float | None) -> None:
        self.jobs[job_id].duration_seconds = decoded
        self.jobs[job_id].declared_duration_seconds = declared_if_truncated

    async def record_external_copy(self, job_id: uuid.UUID, operation_id: str | None) -> None:
        self.jobs[job_id].external_operation_id = operation_id

    async def succeed(self, job_id: uuid.UUID, outcome: Outcome) -> bool:
        if (job := self._legal(job_id, JobState.SUCCEEDED)) is None:
            return False
        self.rows[job_id] = transcript_rows(job_id, outcome.transcript)
        job.state, job.progress = JobState.SUCCEEDED, 100
        job.detected_language, job.language_shares = outcome.detected_language, outcome.language_shares
        job.speaker_count, job.notices = outcome.speaker_count, outcome.notices
        job.engine, job.engine_model = outcome.engine, outcome.engine_model or None
        job.billed_seconds, job.external_operation_id = outcome.billed_seconds, outcome.external_operation_id
        job.finished_at = datetime.now(UTC)
        return True

    async def fail(self, job_id: uuid.UUID, code: str, message: str) -> Job | None:
        if (job := self._legal(job_id, JobState.FAILED)) is None:
            return None
        job.state, job.error_code, job.error_message = JobState.FAILED, code, message
        job.finished_at = datetime.now(UTC)
        return job

    async def hand_back(self, job_id: uuid.UUID) -> bool:
        if (job := self._legal(job_id, JobState.PENDING)) is None:
            return False
        job.state = JobState.PENDING
        return True

    # -- what the gateway reads and edits (OwnedJobs)

    async def get(self, owner_id: str, job_id: str) -> Job:
        job = self.jobs.get(jobs.parse_job_id(job_id))
        if job is None or job.owner_id != owner_id:
            raise errors.NotFound("job not found", code="JOB_NOT_FOUND", details={"job_id": job_id})
        return job

    async def transcript(self, owner_id: str, job_id: str) -> tuple[Job, StoredTranscript]:
        job = await self.get(owner_id, job_id)
        jobs.require_transcript(job)
        segments = [
            SimpleNamespace(**{name: getattr(segment, name) for name in (
                "position", "start_seconds", "end_seconds", "text", "language", "confidence", "speaker",
                "original_text")}, words_json=json.dumps([_word_json(word) for word in self._words(job, segment)]))
            for segment in self._segments(job)
        ]  # fmt: skip
        return job, StoredTranscript(segments, sorted(self._speakers(job).values(), key=lambda s: s.label))

    async def rename_speakers(self, owner_id: str, job_id: str, names: dict[str, str]) -> None:
        job = await self._editable(owner_id, job_id)
        speakers = self._speakers(job)
        for label in names:
            if label not in speakers:
                raise _speaker_not_found(job, label)
        for label, name in names.items():
            speakers[label].name = None if name == label else name

    async def merge_speaker(self, owner_id: str, job_id: str, speaker: str, into: str) -> None:
        job = await self._editable(owner_id, job_id)
        speakers = self._speakers(job)
        for label in (speaker, into):
            if label not in speakers:
                raise _speaker_not_found(job, label)
        for row in self.rows[job.id]:
            if isinstance(row, Segment | Word) and row.speaker == speaker:
                row.speaker = into
        speakers[into].speaking_seconds += speakers[speaker].speaking_seconds
        speakers[into].segment_count += speakers[speaker].segment_count
        self.rows[job.id].remove(speakers[speaker])
        job.speaker_count = len(speakers) - 1

    async def set_segment_text(self, owner_id: str, job_id: str, index: int, text: str | None) -> EditedSegment:
        job = await self._editable(owner_id, job_id)
        segment = self._segment(job, index)
        segment.text, segment.original_text = text_after_edit(segment.text, segment.original_text, text)
        return EditedSegment(segment, self._words(job, segment))

    async def set_segment_language(self, owner_id: str, job_id: str, index: int, language: str) -> EditedSegment:
        job = await self._editable(owner_id, job_id)
        segment = self._segment(job, index)
        segment.language = language
        spans = ((row.language, row.end_seconds - row.start_seconds) for row in self._segments(job))
        job.language_shares = language_shares(spans)
        job.detected_language = next(iter(job.language_shares), None)
        return EditedSegment(segment, self._words(job, segment))

    async def set_segment_speaker(self, owner_id: str, job_id: str, index: int, label: str) -> EditedSegment:
        job = await self._editable(owner_id, job_id)
        segment = self._segment(job, index)
        speakers = self._speakers(job)
        check_speaker_label(label, speakers)
        if segment.speaker != label:
            length = max(segment.end_seconds - segment.start_seconds, 0.0)
            if label not in speakers:
                speakers[label] = Speaker(job_id=job.id, label=label, speaking_seconds=0.0, segment_count=0)
                self.rows[job.id].append(speakers[label])
            speakers[label].speaking_seconds += length
            speakers[label].segment_count += 1
            if (source := speakers.get(segment.speaker)) is not None:
                source.speaking_seconds = max(source.speaking_seconds - length, 0.0)
                source.segment_count -= 1
                if source.segment_count <= 0:
                    self.rows[job.id].remove(source)
            segment.speaker = label
            for word in self._words(job, segment):
                word.speaker = label
            job.speaker_count = len(self._speakers(job))
        return EditedSegment(segment, self._words(job, segment))

    async def ping(self) -> None:
        return None

    async def _editable(self, owner_id: str, job_id: str) -> Job:
        job = await self.get(owner_id, job_id)
        jobs.require_transcript(job)
        job.transcript_edited_at = datetime.now(UTC)
        return job

    def _speakers(self, job: Job) -> dict[str, Speaker]:
        return {row.label: row for row in self.rows.get(job.id, []) if isinstance(row, Speaker)}

    def _segments(self, job: Job) -> list[Segment]:
        return sorted((row for row in self.rows[job.id] if isinstance(row, Segment)), key=lambda row: row.position)

    def _segment(self, job: Job, index: int) -> Segment:
        for segment in self._segments(job):
            if segment.position == index:
                return segment
        raise errors.NotFound(f"the transcript has no segment {index}", code="SEGMENT_NOT_FOUND")

    def _words(self, job: Job, segment: Segment) -> list[Word]:
        found = (row for row in self.rows[job.id] if isinstance(row, Word) and row.segment_position == segment.position)
        return sorted(found, key=lambda row: row.position)


def _speaker_not_found(job: Job, label: str) -> errors.NotFound:
    return errors.NotFound(f"the job has no speaker '{label[:32]}'", code="SPEAKER_NOT_FOUND")


def _word_json(word: Word) -> dict:
    return {"start": word.start_seconds, "end": word.end_seconds, "text": word.text,
            "probability": word.probability, "speaker": word.speaker}  # fmt: skip


def _copy_row(row: Segment | Word | Speaker, job_id: uuid.UUID) -> Segment | Word | Speaker:
    columns = {column.name: getattr(row, column.key) for column in type(row).__table__.columns}
    columns.update(id=None, job_id=job_id)
    return type(row)(**columns)
