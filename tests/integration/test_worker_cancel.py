"""A running job whose row stops being RUNNING (deleted or expired) is dropped by its worker
within seconds, even if the cancel signal on NATS was missed: the heartbeat sees the row."""

import asyncio

import pytest_asyncio
from sqlalchemy import update

from kazru.adapters.bus import Bus
from kazru.db.job_repository import JobRepository
from kazru.db.models import Job, JobState
from services.transcriber.worker import TranscriptionWorker
from tests.conftest import SPEECH_CLIP
from tests.helpers import long_speech, queued_messages, remains_of, running
from tests.integration.test_transcriber import enqueue, wait_for_state

ACK_WAIT_SECONDS = 1.5


@pytest_asyncio.fixture(loop_scope="session")
async def quick_worker(infra, database, store, bus, pipeline, scratch):  # noqa: F811 - the imported fixture
    """A worker (and its consumer) with a short ack wait: heartbeats every half second."""
    settings = infra.settings(job_ack_wait_seconds=ACK_WAIT_SECONDS)
    worker_bus = await Bus.connect(settings, "quick-worker")  # `bus` is fresh: the consumer is made here
    worker = TranscriptionWorker(settings, JobRepository(database, settings), store, worker_bus, pipeline, scratch)
    async with running(worker, stop_timeout=60):
        yield worker
    await worker_bus.close()


async def test_a_job_gone_from_running_is_dropped_at_the_next_heartbeat(quick_worker, database, store, bus, settings,
                                                                        tmp_path):  # fmt: skip
    job_id = await enqueue(database, store, bus, long_speech(tmp_path / "long.flac"))
    await wait_for_state(database, job_id, {JobState.RUNNING})
    await asyncio.sleep(1.0)
    # Deleted behind the worker's back: no cancel signal, only the row changes.
    async with database.begin() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(state=JobState.DELETED))
    started = asyncio.get_running_loop().time()
    for _ in range(100):
        if await queued_messages(bus, settings) == 0:
            break
        await asyncio.sleep(0.1)
    assert await queued_messages(bus, settings) == 0, "the message is terminated"
    assert asyncio.get_running_loop().time() - started < 3 * ACK_WAIT_SECONDS

    # The worker is free: the next job runs at once.
    short = await enqueue(database, store, bus, SPEECH_CLIP.read_bytes())
    assert (
        await wait_for_state(database, short, {JobState.SUCCEEDED, JobState.FAILED}, timeout=60)
    ).state == "SUCCEEDED"
    await asyncio.sleep(1.0)
    remains = await remains_of(database, store, job_id)
    assert (remains["segments"], remains["words"], remains["speakers"]) == (0, 0, 0), "nothing written"
    async with database() as session:
        assert (await session.get(Job, job_id)).state == JobState.DELETED
