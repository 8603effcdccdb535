"""The three use cases, run on the repository in memory (tests/fakes/repository.py), a folder for a store
and a bus that records: no server. An upload is stored, recorded and announced; a delivered job is
transcribed and its transcript stored (or it fails, said on the bus); a person's edits change what is
stored. The same flows against PostgreSQL, NATS and MinIO are tests/integration's."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from kazru.db.job_repository import transcript_rows
from kazru.db.models import JobState, Segment, Speaker, Word
from kazru.domain import errors
from kazru.domain.transcript import SpeakerSummary, Transcript, TranscriptSegment, TranscriptWord
from kazru.settings import Settings
from kazru.v1 import events_pb2
from services.gateway.core import Gateway, SegmentChange
from services.ingest.uploads import UploadHeader, UploadOptions, UploadService
from services.transcriber.pipeline import TranscriptionResult
from services.transcriber.worker import TranscriptionWorker
from tests.conftest import SPEECH_CLIP
from tests.fakes.bus import RecordingBus
from tests.fakes.repository import InMemoryJobs
from tests.fakes.store import FolderStore

OWNER = "owner-a"


@pytest.fixture
def settings() -> Settings:
    return Settings(reuse_identical_uploads=True)


@pytest.fixture
def jobs(settings) -> InMemoryJobs:
    return InMemoryJobs(settings)


@pytest.fixture
def store(tmp_path) -> FolderStore:
    return FolderStore(tmp_path / "objects")


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def upload(service: UploadService, data: bytes, name: str = "meeting.flac", request_id: str = ""):
    header = UploadHeader(OWNER, name, UploadOptions(languages=("kk", "ru")), request_id)
    return await service.upload(header, chunks_of(data), lambda: None)


# -- upload


async def test_an_upload_is_stored_recorded_and_announced(settings, jobs, store):
    bus = RecordingBus()
    service = UploadService(settings, jobs, store, bus)
    data = SPEECH_CLIP.read_bytes()

    job = await upload(service, data, name="../отчёт\x00.flac", request_id="retry-1")

    stored = jobs.jobs[job.id]
    assert stored.state == JobState.PENDING and stored.owner_id == OWNER
    assert stored.filename == "отчёт.flac", "the name is cleaned before it is stored"
    assert (stored.container, stored.content_type, stored.size_bytes) == ("flac", "audio/flac", len(data))
    assert stored.duration_seconds == pytest.approx(3.0, abs=1.5) and stored.languages == ["kk", "ru"]
    assert store.keys() == [stored.object_key] and store.path(stored.object_key).read_bytes() == data
    assert bus.published == [str(job.id)] and stored.queue_sequence == 1, "announced, and the outbox knows it"

    again = await upload(service, data, name="../отчёт\x00.flac", request_id="retry-1")
    assert again.id == job.id and len(jobs.jobs) == 1 and bus.published == [str(job.id)], "a retry is the same job"
    assert store.keys() == [stored.object_key], "the retry's bytes are not kept"


async def test_an_upload_that_is_not_audio_leaves_nothing(settings, jobs, store):
    bus = RecordingBus()
    with pytest.raises(errors.KazruError) as refused:
        await upload(UploadService(settings, jobs, store, bus), b"RIFF" + b"\0" * 4000, name="fake.wav")
    assert refused.value.code == "NOT_AUDIO"
    assert jobs.jobs == {} and store.keys() == [] and bus.published == []


async def test_an_identical_upload_reuses_the_finished_transcript_without_the_engine(settings, jobs, store):
    bus = RecordingBus()
    service = UploadService(settings, jobs, store, bus)
    data = SPEECH_CLIP.read_bytes()
    first = await upload(service, data)
    await jobs.claim(first.id, 1)
    await jobs.succeed(first.id, outcome_of(TRANSCRIPT, settings))

    second = await upload(service, data)

    assert second.id != first.id and jobs.jobs[second.id].state == JobState.SUCCEEDED
    assert jobs.jobs[second.id].reused_from == first.id
    assert bus.published == [str(first.id)], "the engine is not asked again"
    assert texts(jobs.rows[second.id]) == texts(jobs.rows[first.id]) == ["Сәлем, бәрі.", "Привет всем."]


# -- transcription

WORDS = (TranscriptWord(0.2, 0.6, "Сәлем,", 0.9, "S1"), TranscriptWord(0.7, 1.2, "бәрі.", 0.8, "S1"))
RU_WORDS = (TranscriptWord(1.5, 1.9, "Привет", 0.95, "S2"), TranscriptWord(2.0, 2.4, "всем.", 0.85, "S2"))
TRANSCRIPT = Transcript(
    segments=[
        TranscriptSegment(0.1, 1.3, "S1", "kk", "Сәлем, бәрі.", 0.85, WORDS),
        TranscriptSegment(1.4, 2.5, "S2", "ru", "Привет всем.", 0.9, RU_WORDS),
    ],
    speakers=[SpeakerSummary("S1", 1.2, 1), SpeakerSummary("S2", 1.1, 1)],
    language_shares={"kk": 0.52, "ru": 0.48},
)


def outcome_of(transcript: Transcript, settings: Settings):
    from kazru.db.job_repository import Outcome

    return Outcome(transcript=transcript, engine=settings.engine, engine_model=settings.engine_model)


def texts(rows) -> list[str]:
    return [row.text for row in sorted((r for r in rows if isinstance(r, Segment)), key=lambda r: r.position)]


@dataclass
class ScriptedPipeline:
    """The transcriber's pipeline as the worker sees it: what it was asked, and the result (or error) it gives."""

    result: TranscriptionResult | None = None
    error: Exception | None = None
    asked: list[tuple[float, list[str]]] = field(default_factory=list)
    # A folder whose files are noted while the pipeline runs (the worker's scratch space).
    watched: Path | None = None
    files_while_running: list[str] = field(default_factory=list)

    async def run(self, recording, languages, *, min_speakers, max_speakers, on_progress, on_external_copy):
        self.asked.append((recording.duration, list(languages)))
        if self.watched is not None:
            self.files_while_running = sorted(path.name for path in self.watched.rglob("*") if path.is_file())
        on_progress(0.5)
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        return self.result


@dataclass
class Delivery:
    """A JetStream message as the worker handles it, recording its answer."""

    data: bytes
    num_delivered: int = 1
    answers: list[str] = field(default_factory=list)
    headers: dict = field(default_factory=dict)

    @property
    def metadata(self):
        return type("Metadata", (), {"num_delivered": self.num_delivered})()

    async def ack(self):
        self.answers.append("ack")

    async def nak(self, delay=None):
        self.answers.append("nak")

    async def term(self):
        self.answers.append("term")

    async def in_progress(self):
        pass


async def uploaded_job(settings, jobs, store):
    job = await upload(UploadService(settings, jobs, store, RecordingBus()), SPEECH_CLIP.read_bytes())
    return job, Delivery(events_pb2.JobUploaded(job_id=str(job.id), owner_id=OWNER).SerializeToString())


async def test_a_delivered_job_is_transcribed_and_its_transcript_stored(settings, jobs, store, scratch):
    job, delivery = await uploaded_job(settings, jobs, store)
    bus = RecordingBus()
    pipeline = ScriptedPipeline(
        TranscriptionResult(engine="whisper", transcript=TRANSCRIPT, model="whisper-base"), watched=scratch.folder
    )

    await TranscriptionWorker(settings, jobs, store, bus, pipeline, scratch).handle(delivery)

    stored = jobs.jobs[job.id]
    assert pipeline.asked == [(pytest.approx(stored.duration_seconds), ["kk", "ru"])], "the decoded audio, its languages"
    assert stored.state == JobState.SUCCEEDED and stored.progress == 100 and stored.attempts == 1
    assert (stored.detected_language, stored.language_shares, stored.speaker_count) == ("kk", TRANSCRIPT.language_shares, 2)
    assert (stored.engine, stored.engine_model) == ("whisper", "whisper-base")
    rows = jobs.rows[job.id]
    assert [(type(r).__name__, r.speaker if not isinstance(r, Speaker) else r.label) for r in rows] == [
        ("Speaker", "S1"), ("Speaker", "S2"), ("Segment", "S1"), ("Word", "S1"), ("Word", "S1"),
        ("Segment", "S2"), ("Word", "S2"), ("Word", "S2"),
    ]  # fmt: skip
    assert [(w.position, w.segment_position, w.text) for w in rows if isinstance(w, Word)] == [
        (0, 0, "Сәлем,"), (1, 0, "бәрі."), (2, 1, "Привет"), (3, 1, "всем."),
    ]  # fmt: skip
    assert texts(rows) == texts(transcript_rows(job.id, TRANSCRIPT)) == ["Сәлем, бәрі.", "Привет всем."]
    assert bus.finished == [(str(job.id), str(JobState.SUCCEEDED), "")] and delivery.answers == ["ack"]
    assert pipeline.files_while_running == [".lock", "audio.pcm"], "decoded into the worker's scratch space"
    assert [path.name for path in scratch.folder.iterdir()] == [".lock"], "and removed after the job"


async def test_a_job_whose_audio_the_engine_refuses_fails_and_says_so(settings, jobs, store, scratch):
    job, delivery = await uploaded_job(settings, jobs, store)
    bus = RecordingBus()
    refusal = errors.InvalidArgument("the engine cannot read this audio", code="AUDIO_UNREADABLE")

    await TranscriptionWorker(settings, jobs, store, bus, ScriptedPipeline(error=refusal), scratch).handle(delivery)

    stored = jobs.jobs[job.id]
    assert (stored.state, stored.error_code) == (JobState.FAILED, "AUDIO_UNREADABLE")
    assert job.id not in jobs.rows, "no transcript is stored"
    assert bus.finished == [(str(job.id), str(JobState.FAILED), "AUDIO_UNREADABLE")] and delivery.answers == ["term"]
    assert [path.name for path in scratch.folder.iterdir()] == [".lock"], "the job's decoded audio is removed"


async def test_a_job_deleted_before_its_delivery_is_acked_and_left_alone(settings, jobs, store, scratch):
    job, delivery = await uploaded_job(settings, jobs, store)
    jobs.jobs[job.id].state = JobState.DELETED
    pipeline = ScriptedPipeline(TranscriptionResult(engine="whisper", transcript=TRANSCRIPT))

    await TranscriptionWorker(settings, jobs, store, RecordingBus(), pipeline, scratch).handle(delivery)

    assert pipeline.asked == [] and delivery.answers == ["ack"] and jobs.jobs[job.id].state == JobState.DELETED


# -- edits


@pytest.fixture
async def finished(settings, jobs, store):
    job, _ = await uploaded_job(settings, jobs, store)
    await jobs.claim(job.id, 1)
    await jobs.succeed(job.id, outcome_of(TRANSCRIPT, settings))
    channel = grpc.aio.insecure_channel("127.0.0.1:9")  # never called by edits
    gateway = Gateway(jobs, None, None, None, RecordingBus(), store, {"ingest": channel, "exporter": channel},
                      settings=settings)  # fmt: skip
    yield gateway, str(job.id)
    await channel.close()


async def test_edits_change_what_is_stored(jobs, finished):
    gateway, job_id = finished
    segment = await gateway.edit_segment(OWNER, job_id, 1, SegmentChange("text", "  Привет\tвсем!  "))
    assert segment.text == "Привет всем!"
    stored = jobs._segment(jobs.jobs[uuid.UUID(job_id)], 1)
    assert (stored.text, stored.original_text) == ("Привет всем!", "Привет всем.")
    assert jobs.jobs[uuid.UUID(job_id)].transcript_edited_at is not None, "no longer the machine's to reuse"

    await gateway.edit_segment(OWNER, job_id, 1, SegmentChange("revert"))
    assert (stored.text, stored.original_text) == ("Привет всем.", None)

    await gateway.edit_segment(OWNER, job_id, 0, SegmentChange("language", " RU "))
    assert jobs.jobs[uuid.UUID(job_id)].language_shares == {"ru": 1.0}

    _, transcript = await gateway.rename_speakers(OWNER, job_id, {"S1": " Aigerim "})
    assert [(s.id, s.label) for s in transcript.speakers] == [("S1", "Aigerim"), ("S2", "S2")]

    await gateway.merge_speaker(OWNER, job_id, "S2", "S1")
    rows = jobs.rows[uuid.UUID(job_id)]
    assert {r.speaker for r in rows if not isinstance(r, Speaker)} == {"S1"}
    assert [(s.label, s.segment_count) for s in rows if isinstance(s, Speaker)] == [("S1", 2)]

    segment = await gateway.edit_segment(OWNER, job_id, 1, SegmentChange("speaker", "S2"))
    assert segment.speaker == "S2" and [w.speaker for w in segment.words] == ["S2", "S2"], "a merge split back"


async def test_refused_edits_store_nothing(jobs, finished):
    gateway, job_id = finished
    before = [(r.text, r.speaker) for r in jobs.rows[uuid.UUID(job_id)] if isinstance(r, Segment)]
    refusals = [
        (gateway.rename_speakers(OWNER, job_id, {"S1": "  "}), "SPEAKER_NAME_EMPTY"),
        (gateway.rename_speakers(OWNER, job_id, {"S9": "Dana"}), "SPEAKER_NOT_FOUND"),
        (gateway.merge_speaker(OWNER, job_id, "S1", "S1"), "MERGE_INTO_SELF"),
        (gateway.edit_segment(OWNER, job_id, 0, SegmentChange("text", "x" * 10_001)), "SEGMENT_TEXT_TOO_LONG"),
        (gateway.edit_segment(OWNER, job_id, 0, SegmentChange("language", "de")), "INVALID_LANGUAGE"),
        (gateway.edit_segment(OWNER, job_id, 0, SegmentChange("speaker", "Bob")), "SPEAKER_LABEL_INVALID"),
        (gateway.edit_segment(OWNER, job_id, 7, SegmentChange("text", "hi")), "SEGMENT_NOT_FOUND"),
        (gateway.edit_segment("owner-b", job_id, 0, SegmentChange("text", "hi")), "JOB_NOT_FOUND"),
    ]
    for edit, code in refusals:
        with pytest.raises(errors.KazruError) as refused:
            await edit
            pytest.fail(f"not refused: {code}")
        assert refused.value.code == code
    after = [(r.text, r.speaker) for r in jobs.rows[uuid.UUID(job_id)] if isinstance(r, Segment)]
    assert after == before
    assert all(s.name is None for s in jobs.rows[uuid.UUID(job_id)] if isinstance(s, Speaker))
