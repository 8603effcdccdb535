"""Exactly-once effect of an upload on real servers: a retried upload (same request id) is the
same job and leaves nothing of its own; a job whose publish failed after the commit is not
stranded: the janitor's outbox relay puts it on the queue, once."""

import asyncio
import uuid

import grpc
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from kazru.adapters.bus import Bus
from kazru.db.models import Job, JobState
from kazru.domain.external_copies import NO_EXTERNAL_COPIES
from kazru.grpc.errors import from_rpc_error
from kazru.v1 import events_pb2, ingest_service_pb2, job_pb2
from services.janitor.expiry import Janitor
from tests.conftest import SPEECH_CLIP
from tests.helpers import leftovers, queued_messages, wav_header
from tests.integration.test_ingest import ingest_server


@pytest_asyncio.fixture(loop_scope="session")
async def ingest(infra, database, store, bus):
    async with ingest_server(infra.settings(ingest_address="127.0.0.1:0"), database, store, bus) as stub:
        yield stub


async def upload(stub, owner="owner-i", request_id="", data=None):
    data = SPEECH_CLIP.read_bytes() if data is None else data

    async def stream():
        yield ingest_service_pb2.IngestUploadRequest(
            header=ingest_service_pb2.IngestUploadHeader(owner_id=owner, filename="a.flac", request_id=request_id)
        )
        for start in range(0, len(data), 16_384):
            yield ingest_service_pb2.IngestUploadRequest(chunk=data[start : start + 16_384])
        yield ingest_service_pb2.IngestUploadRequest(complete=job_pb2.UploadComplete(size_bytes=len(data)))

    return await stub.Upload(stream())


async def jobs_with_key(database, request_id) -> int:
    async with database() as session:
        return await session.scalar(select(func.count()).select_from(Job).where(Job.idempotency_key == request_id))


async def test_a_retried_upload_is_the_same_job(ingest, store, database, bus, settings):
    before = await leftovers(store, database)
    key = f"retry-{uuid.uuid4()}"
    first = await upload(ingest, request_id=key)
    second = await upload(ingest, request_id=key)
    assert second.job_id == first.job_id and second.create_time == first.create_time
    after = await leftovers(store, database)
    assert after["jobs"] == before["jobs"] + 1
    assert after["objects"] == sorted([*before["objects"], f"jobs/{first.job_id}/original"])
    assert after["multipart_uploads"] == before["multipart_uploads"]
    assert await queued_messages(bus, settings) == 1
    # The key belongs to its owner: another owner's upload with the same key is its own job.
    assert (await upload(ingest, owner="owner-other", request_id=key)).job_id != first.job_id


async def test_concurrent_uploads_with_one_key_make_one_job(ingest, store, database, bus, settings):
    before = await leftovers(store, database)
    key = f"race-{uuid.uuid4()}"
    jobs = await asyncio.gather(*(upload(ingest, request_id=key) for _ in range(4)))
    assert len({job.job_id for job in jobs}) == 1
    assert await jobs_with_key(database, key) == 1
    after = await leftovers(store, database)
    assert after["objects"] == sorted([*before["objects"], f"jobs/{jobs[0].job_id}/original"]), "losers' bytes dropped"
    assert after["multipart_uploads"] == before["multipart_uploads"]
    assert await queued_messages(bus, settings) == 1


@pytest.mark.parametrize("request_id", ["has space", "x" * 129, "ключ"], ids=["space", "too-long", "non-ascii"])
async def test_bad_request_id_is_refused_and_leaves_nothing(ingest, store, database, bus, settings, request_id):
    before = await leftovers(store, database)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(ingest, request_id=request_id)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert from_rpc_error(caught.value).code == "INVALID_IDEMPOTENCY_KEY"
    assert await leftovers(store, database) == before
    assert await queued_messages(bus, settings) == 0


async def test_a_job_whose_publish_fails_after_commit_is_republished_once(infra, database, store, bus, settings):
    # Ingest's bus publishes to a stream that does not exist: every publish fails, after the commit.
    broken_settings = infra.settings(ingest_address="127.0.0.1:0", jobs_stream="NO_SUCH_STREAM")
    broken_bus = await Bus.connect(broken_settings, "broken-ingest")
    async with ingest_server(broken_settings, database, store, broken_bus) as stub:
        accepted = await upload(stub)
    await broken_bus.close()
    job_id = uuid.UUID(accepted.job_id)
    assert accepted.state == job_pb2.Job.PENDING, "the job is committed: the client gets it"
    async with database() as session:
        row = await session.get(Job, job_id)
    assert row.state == JobState.PENDING and row.queue_sequence is None
    assert await queued_messages(bus, settings) == 0

    janitor = Janitor(
        infra.settings(enqueue_retry_after_seconds=0.01), database, store, bus, external_copies=NO_EXTERNAL_COPIES
    )
    await asyncio.sleep(0.05)
    await janitor.sweep()
    await janitor.sweep()  # confirmed now: not published again

    assert await queued_messages(bus, settings) == 1
    message = await bus.js.get_msg(settings.jobs_stream, seq=1)
    assert message.headers["Nats-Msg-Id"] == accepted.job_id
    assert events_pb2.JobUploaded.FromString(message.data).job_id == accepted.job_id
    async with database() as session:
        row = await session.get(Job, job_id)
    assert row.queue_sequence == 1


async def test_the_relay_leaves_young_and_confirmed_jobs_alone(ingest, infra, database, store, bus, settings):
    accepted = await upload(ingest)
    async with database() as session:
        assert (await session.get(Job, uuid.UUID(accepted.job_id))).queue_sequence == 1
    await Janitor(
        infra.settings(enqueue_retry_after_seconds=0.01), database, store, bus, external_copies=NO_EXTERNAL_COPIES
    ).sweep()
    assert await queued_messages(bus, settings) == 1


async def test_a_key_reused_for_another_file_is_refused_and_leaves_nothing(ingest, store, database, bus, settings):
    key = f"reused-{uuid.uuid4()}"
    first = await upload(ingest, request_id=key)
    before = await leftovers(store, database)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await upload(ingest, request_id=key, data=wav_header(32000) + bytes(32000))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = from_rpc_error(refused.value)
    assert error.code == "IDEMPOTENCY_KEY_REUSED" and error.details["job_id"] == first.job_id
    assert await leftovers(store, database) == before
    assert (await upload(ingest, request_id=key)).job_id == first.job_id, "the same request is still the job"
