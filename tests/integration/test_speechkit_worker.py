"""The worker with the SpeechKit engine (against the local fake): a stored transcript with our speakers,
billing recorded, Yandex's copy deleted; bad answers fail the job with nothing half-written."""

from __future__ import annotations

import asyncio

import grpc
import pytest_asyncio
from sqlalchemy import func, select

from kazru.db.job_repository import JobRepository
from kazru.db.models import Job, JobState, Segment, Speaker, Word
from kazru.settings import Settings
from services.transcriber.engines.speechkit import SpeechKitEngine
from services.transcriber.pipeline import TranscriptionPipeline, create_diarizer
from services.transcriber.worker import TranscriptionWorker
from tests.conftest import SPEECH_CLIP
from tests.fakes.speechkit_server import FakeSpeechKit, Scenario, Utterance
from tests.helpers import messages_left_after_acks, running
from tests.integration.test_speechkit import API_KEY, engine_settings
from tests.integration.test_transcriber import enqueue, wait_for_state

WEATHER = Utterance(
    words=[("погода", 0.3, 0.8), ("в", 0.85, 0.9), ("алматы", 0.95, 1.5), ("сегодня", 1.6, 2.1)],
    languages=[("ru-RU", 0.95)],
    confidence=0.9,
)


@pytest_asyncio.fixture(loop_scope="session")
async def speechkit_worker(settings, database, store, bus, scratch):
    fake = FakeSpeechKit(api_key=API_KEY, scenario=Scenario(utterances=[WEATHER]))
    address = await fake.start()
    # The test servers' settings, with the SpeechKit engine pointed at the fake.
    worker_settings = settings.model_copy(
        update={name: value for name, value in engine_settings(address) if name.startswith(("speechkit", "engine"))}
    )
    engine = SpeechKitEngine(worker_settings.speechkit, ffmpeg_path=worker_settings.ffmpeg_path)
    pipeline = TranscriptionPipeline(engine, create_diarizer(Settings()))
    worker = TranscriptionWorker(worker_settings, JobRepository(database, worker_settings), store, bus, pipeline, scratch)
    async with running(worker, stop_timeout=30):
        yield fake
    await engine.close()
    await fake.stop()


async def rows(database, table, job_id) -> int:
    async with database() as session:
        return await session.scalar(select(func.count()).select_from(table).where(table.job_id == job_id))


async def test_speechkit_job_is_stored_billed_and_deleted_at_yandex(speechkit_worker, database, store, bus, settings):
    fake = speechkit_worker
    job_id = await enqueue(database, store, bus, SPEECH_CLIP.read_bytes())
    job = await wait_for_state(database, job_id, {JobState.SUCCEEDED, JobState.FAILED})
    assert job.state == JobState.SUCCEEDED, job.error_message
    assert job.engine == "speechkit" and job.billed_seconds == 15  # a 2.9 s clip bills the 15 s minimum
    assert job.speaker_count == 1 and job.language_shares == {"ru": 1.0}
    async with database() as session:
        segments = list(await session.scalars(select(Segment).where(Segment.job_id == job_id)))
    assert " ".join(s.text for s in segments).lower().split() == ["погода", "в", "алматы", "сегодня"]
    assert await rows(database, Word, job_id) == 4
    assert fake.problems == []
    # Yandex keeps results for 3 days unless deleted: deleted once ours is committed.
    for _ in range(50):
        async with database() as session:
            refreshed = await session.get(type(job), job_id)
        if refreshed.external_operation_id is None:
            break
        await asyncio.sleep(0.1)
    assert refreshed.external_operation_id is None and len(fake.deleted) == 1


async def test_bad_speechkit_answers_fail_the_job_without_a_partial_transcript(
    speechkit_worker, database, store, bus, settings
):
    fake = speechkit_worker
    cases = {
        "SPEECHKIT_EMPTY_RESULT": Scenario(utterances=[WEATHER], empty_result=True),
        "SPEECHKIT_RESULT_FAILED": Scenario(
            utterances=[WEATHER, WEATHER], stream_error_after=1, stream_error_code=grpc.StatusCode.INTERNAL
        ),
        "SPEECHKIT_UNAUTHENTICATED": Scenario(utterances=[WEATHER], recognize_errors=[grpc.StatusCode.UNAUTHENTICATED]),
    }
    for expected_code, scenario in cases.items():
        fake.scenario = scenario
        job_id = await enqueue(database, store, bus, SPEECH_CLIP.read_bytes())
        job = await wait_for_state(database, job_id, {JobState.SUCCEEDED, JobState.FAILED})
        assert job.state == JobState.FAILED
        assert job.error_code == expected_code and job.error_message
        for table in (Segment, Word, Speaker):
            assert await rows(database, table, job_id) == 0
        assert await messages_left_after_acks(bus, settings) == 0  # terminated, not looping


async def test_the_job_names_yandexs_copy_while_it_is_being_recognised(speechkit_worker, database, store, bus):
    """Recorded before the wait, not after: a worker killed now leaves an id to delete."""
    fake = speechkit_worker
    fake.scenario = Scenario(utterances=[WEATHER], processing_seconds=3.0)
    job_id = await enqueue(database, store, bus, SPEECH_CLIP.read_bytes())
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        async with database() as session:
            job = await session.get(Job, job_id)
        if job.external_operation_id:
            break
        assert job.state in (JobState.PENDING, JobState.RUNNING) and asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert job.state == JobState.RUNNING  # still being recognised at Yandex
    recorded = job.external_operation_id
    assert recorded in fake.operation_ids() and fake.deleted == []
    job = await wait_for_state(database, job_id, {JobState.SUCCEEDED, JobState.FAILED})
    assert job.state == JobState.SUCCEEDED, job.error_message
    for _ in range(50):
        if fake.deleted:
            break
        await asyncio.sleep(0.1)
    assert fake.deleted == [recorded]


async def test_a_copy_left_by_a_dead_worker_is_deleted_before_the_retry(speechkit_worker, database, store, bus):
    fake = speechkit_worker
    fake.scenario = Scenario(utterances=[WEATHER])
    stale = fake.leave_a_finished_recognition()
    job_id = await enqueue(database, store, bus, SPEECH_CLIP.read_bytes(), external_operation_id=stale)
    job = await wait_for_state(database, job_id, {JobState.SUCCEEDED, JobState.FAILED})
    assert job.state == JobState.SUCCEEDED, job.error_message
    for _ in range(50):
        if len(fake.deleted) == 2:
            break
        await asyncio.sleep(0.1)
    assert fake.deleted[0] == stale and len(fake.deleted) == 2  # the stale copy first, then this attempt's
    assert fake.operation_ids() == set()
