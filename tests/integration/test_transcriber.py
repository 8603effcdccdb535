"""The worker on the real queue with the real model: progress, results, ack after commit, failures."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from sqlalchemy import select

from kazru.db.models import Job, JobState, Segment
from kazru.v1 import events_pb2
from services.transcriber.engine import WhisperEngine
from services.transcriber.worker import TranscriptionWorker
from tests.conftest import SPEECH_CLIP, SPEECH_WORDS
from tests.helpers import aiter_of, queued_messages


@pytest.fixture(scope="session")
def engine(settings) -> WhisperEngine:
    return WhisperEngine(settings)


@pytest_asyncio.fixture(loop_scope="session")
async def worker(settings, database, store, bus, engine):
    worker = TranscriptionWorker(settings, database, store, bus, engine)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    yield worker
    stop.set()
    await asyncio.wait_for(running, 30)


async def enqueue(database, store, bus, data: bytes, languages=("kk", "ru")) -> uuid.UUID:
    """What ingest does, minus validation: store the object, add the row, publish."""
    job_id = uuid.uuid4()
    key = f"jobs/{job_id}/original"
    await store.put_stream(key, aiter_of([data]), "application/octet-stream")
    now = datetime.now(UTC)
    async with database.begin() as session:
        session.add(Job(id=job_id, owner_id="owner-t", state=JobState.PENDING, progress=0, filename="x.flac",
                        content_type="audio/flac", size_bytes=len(data), object_key=key, container="flac",
                        languages=list(languages), created_at=now, expires_at=now + timedelta(hours=1)))  # fmt: skip
    await bus.publish_uploaded(events_pb2.JobUploaded(job_id=str(job_id), owner_id="owner-t"))
    return job_id


async def wait_for_state(database, job_id, states, timeout=60.0) -> Job:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with database() as session:
            job = await session.get(Job, job_id)
        if job.state in states:
            return job
        assert asyncio.get_running_loop().time() < deadline, f"job stuck in {job.state}"
        await asyncio.sleep(0.1)


async def segments_of(database, job_id) -> list[Segment]:
    async with database() as session:
        return list(await session.scalars(select(Segment).where(Segment.job_id == job_id).order_by(Segment.position)))


async def test_job_is_transcribed_with_the_real_model(worker, database, store, bus, settings):
    progress_seen = []

    async def record(msg) -> None:
        progress_seen.append(events_pb2.JobProgress.FromString(msg.data).progress)

    subscription = await bus.nc.subscribe("kazru.jobs.progress.*", cb=record)
    job_id = await enqueue(database, store, bus, SPEECH_CLIP.read_bytes())
    job = await wait_for_state(database, job_id, {JobState.SUCCEEDED, JobState.FAILED})
    await subscription.unsubscribe()

    assert job.state == JobState.SUCCEEDED, job.error_message
    # Free detection calls this robotic clip Polish or French; restricted to kk/ru it is Russian.
    assert job.progress == 100 and job.detected_language == "ru" and job.attempts == 1
    segments = await segments_of(database, job_id)
    text = " ".join(s.text for s in segments).lower()
    for word in SPEECH_WORDS:
        assert word in text, text
    assert all(0 <= s.start_seconds < s.end_seconds <= 3.5 and 0 < s.confidence <= 1 for s in segments)
    assert all(s.language == "ru" for s in segments)
    assert await queued_messages(bus, settings) == 0  # acked
    assert progress_seen == sorted(progress_seen) and all(0 < p < 100 for p in progress_seen)


async def test_undecodable_object_fails_the_job_with_a_reason(worker, database, store, bus, settings):
    job_id = await enqueue(database, store, bus, b"fLaC" + b"\x13" * 5000)
    job = await wait_for_state(database, job_id, {JobState.SUCCEEDED, JobState.FAILED})
    assert job.state == JobState.FAILED
    assert job.error_code == "AUDIO_UNDECODABLE" and job.error_message
    assert await segments_of(database, job_id) == []
    assert await queued_messages(bus, settings) == 0  # terminated, not redelivered forever


async def test_redelivery_of_a_finished_job_changes_nothing(worker, database, store, bus, settings):
    job_id = await enqueue(database, store, bus, SPEECH_CLIP.read_bytes())
    first = await wait_for_state(database, job_id, {JobState.SUCCEEDED})
    before = [(s.id, s.text) for s in await segments_of(database, job_id)]
    # The same event again, past the duplicate window's id (as after a crash between commit and ack).
    await bus.js.publish("kazru.jobs.uploaded", events_pb2.JobUploaded(job_id=str(job_id)).SerializeToString())
    for _ in range(50):
        if await queued_messages(bus, settings) == 0:
            break
        await asyncio.sleep(0.1)
    assert await queued_messages(bus, settings) == 0
    async with database() as session:
        again = await session.get(Job, job_id)
    assert again.finished_at == first.finished_at and again.attempts == 1
    assert [(s.id, s.text) for s in await segments_of(database, job_id)] == before


async def test_message_for_an_unknown_job_is_acked(worker, bus, settings):
    await bus.publish_uploaded(events_pb2.JobUploaded(job_id=str(uuid.uuid4())))
    for _ in range(50):
        if await queued_messages(bus, settings) == 0:
            break
        await asyncio.sleep(0.1)
    assert await queued_messages(bus, settings) == 0
