"""Ingest over real gRPC, S3, PostgreSQL and NATS: accepted uploads are complete,
rejected ones leave nothing behind (no object, no multipart upload, no row, no message)."""

import asyncio
import contextlib
import uuid

import grpc
import pytest
import pytest_asyncio

from kazru import grpc_server
from kazru.db.models import Job, JobState
from kazru.db.session import create_engine, create_sessionmaker
from kazru.devservers import free_port
from kazru.grpc_errors import from_rpc_error
from kazru.storage import ObjectStore
from kazru.v1 import events_pb2, ingest_service_pb2, ingest_service_pb2_grpc, job_pb2
from services.ingest.__main__ import create_server
from services.ingest.uploads import UploadService
from tests.conftest import SPEECH_CLIP
from tests.helpers import leftovers, queued_messages, silent_wav_chunks

SMALL_CAP = 2 * 1024 * 1024


@contextlib.asynccontextmanager
async def ingest_server(settings, database, store, bus):
    server = create_server(settings, UploadService(settings, database, store, bus))
    await server.start()
    channel = grpc_server.channel(f"127.0.0.1:{server.port}")
    try:
        yield ingest_service_pb2_grpc.IngestServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(0)


@pytest_asyncio.fixture(loop_scope="session")
async def ingest(infra, database, store, bus):
    settings = infra.settings(ingest_address="127.0.0.1:0", max_upload_bytes=SMALL_CAP)
    async with ingest_server(settings, database, store, bus) as stub:
        yield stub


def requests(pieces, filename="clip.flac", owner="owner-1", languages=(), max_speakers=0, late=None, complete=True):
    options = job_pb2.TranscriptionOptions(languages=languages, max_speakers=max_speakers)
    yield ingest_service_pb2.IngestUploadRequest(
        header=ingest_service_pb2.IngestUploadHeader(owner_id=owner, filename=filename, options=options)
    )
    for piece in pieces:
        yield ingest_service_pb2.IngestUploadRequest(chunk=piece)
    if late is not None:
        yield ingest_service_pb2.IngestUploadRequest(options=late)
    if complete is True:
        yield ingest_service_pb2.IngestUploadRequest(complete=job_pb2.UploadComplete(size_bytes=sum(map(len, pieces))))
    elif complete is not None:
        yield ingest_service_pb2.IngestUploadRequest(complete=job_pb2.UploadComplete(size_bytes=complete))


async def upload(stub, *args, **kwargs):
    async def stream():
        for request in requests(*args, **kwargs):
            yield request

    return await stub.Upload(stream())


async def test_accepted_upload_is_stored_recorded_and_queued(ingest, store, database, bus, settings):
    data = SPEECH_CLIP.read_bytes()
    job = await upload(ingest, [data[i : i + 10_000] for i in range(0, len(data), 10_000)], filename="../x/Сөз.flac")
    assert job.state == job_pb2.Job.PENDING
    assert job.filename == "Сөз.flac"
    assert job.size_bytes == len(data)
    assert (job.audio.container, job.audio.codec, job.audio.channels, job.audio.sample_rate) == (
        "flac",
        "flac",
        1,
        16000,
    )
    assert job.audio.duration_seconds == pytest.approx(2.92, abs=0.05)
    assert list(job.options.languages) == ["kk", "ru"]
    expires = job.expire_time.ToDatetime() - job.create_time.ToDatetime()
    assert expires.total_seconds() == pytest.approx(24 * 3600)

    async with database() as session:
        row = await session.get(Job, uuid.UUID(job.job_id))
    assert row.state == JobState.PENDING and row.owner_id == "owner-1"
    assert await store.exists(row.object_key)

    assert await queued_messages(bus, settings) == 1
    message = await bus.js.get_msg(settings.jobs_stream, seq=1)
    assert message.headers["Nats-Msg-Id"] == job.job_id
    assert events_pb2.JobUploaded.FromString(message.data).job_id == job.job_id


async def test_options_sent_after_the_file_are_applied(ingest):
    late = job_pb2.TranscriptionOptions(languages=["ru"], max_speakers=2)
    job = await upload(ingest, [SPEECH_CLIP.read_bytes()], late=late)
    assert list(job.options.languages) == ["ru"] and job.options.max_speakers == 2


TRUNCATED_FLAC = SPEECH_CLIP.read_bytes()[:1000]


@pytest.mark.parametrize(
    ("pieces", "kwargs", "code", "reason"),
    [
        ([], {}, grpc.StatusCode.INVALID_ARGUMENT, "EMPTY_FILE"),
        ([b"\x00"], {}, grpc.StatusCode.INVALID_ARGUMENT, "NOT_AUDIO"),
        ([b"this is plain text pretending to be an mp3\n" * 50], {"filename": "song.mp3"},
         grpc.StatusCode.INVALID_ARGUMENT, "NOT_AUDIO"),
        ([TRUNCATED_FLAC], {}, grpc.StatusCode.INVALID_ARGUMENT, "AUDIO_UNDECODABLE"),
        ([b"ID3\x04\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10], {}, grpc.StatusCode.INVALID_ARGUMENT, "AUDIO_UNDECODABLE"),
        (list(silent_wav_chunks(SMALL_CAP + 1, chunk=256 * 1024)), {}, grpc.StatusCode.INVALID_ARGUMENT,
         "UPLOAD_TOO_LARGE"),
        ([SPEECH_CLIP.read_bytes()], {"languages": ["de"]}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_LANGUAGE"),
        ([SPEECH_CLIP.read_bytes()], {"max_speakers": 11}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_MAX_SPEAKERS"),
        ([SPEECH_CLIP.read_bytes()], {"late": job_pb2.TranscriptionOptions(languages=["xx"])},
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_LANGUAGE"),
        ([SPEECH_CLIP.read_bytes()], {"owner": ""}, grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
        ([SPEECH_CLIP.read_bytes()], {"complete": None}, grpc.StatusCode.INVALID_ARGUMENT, "UPLOAD_INCOMPLETE"),
        ([SPEECH_CLIP.read_bytes()], {"complete": 10}, grpc.StatusCode.INVALID_ARGUMENT, "UPLOAD_SIZE_MISMATCH"),
    ],
    ids=["empty", "one-byte", "text-named-mp3", "truncated-flac", "id3-tag-only", "over-cap", "bad-language",
         "too-many-speakers", "bad-late-language", "no-owner", "no-complete", "wrong-size"],
)  # fmt: skip
async def test_rejected_upload_leaves_nothing(ingest, store, database, bus, settings, pieces, kwargs, code, reason):
    before = await leftovers(store, database)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(ingest, pieces, **kwargs)
    assert caught.value.code() == code
    assert from_rpc_error(caught.value).code == reason
    assert await leftovers(store, database) == before
    assert await queued_messages(bus, settings) == 0


async def test_upload_cancelled_by_the_client_leaves_nothing(ingest, store, database, bus, settings):
    before = await leftovers(store, database)

    async def stalls():
        for request in requests([b"fLaC" + b"\x00" * 100_000] * 10, complete=None):  # 1 MB, under the cap
            yield request
        await asyncio.sleep(3600)

    call = ingest.Upload(stalls())
    await asyncio.sleep(0.5)
    call.cancel()
    with pytest.raises((asyncio.CancelledError, grpc.aio.AioRpcError)):
        await call
    await asyncio.sleep(0.5)  # the server side notices and cleans up
    assert await leftovers(store, database) == before
    assert await queued_messages(bus, settings) == 0


async def test_object_store_down_is_unavailable_and_leaves_no_row(infra, database, store, bus, settings):
    dead = infra.settings(ingest_address="127.0.0.1:0", s3_endpoint=f"127.0.0.1:{free_port()}")
    before = await leftovers(store, database)
    async with ingest_server(dead, database, ObjectStore(dead), bus) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await upload(stub, [SPEECH_CLIP.read_bytes()])
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert from_rpc_error(caught.value).code == "STORAGE_UNAVAILABLE"
    assert await leftovers(store, database) == before
    assert await queued_messages(bus, settings) == 0


async def test_database_down_is_unavailable_and_leaves_no_object(infra, store, bus, settings, database):
    dead = infra.settings(
        ingest_address="127.0.0.1:0", database_url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/kazru"
    )
    engine = create_engine(dead)
    before = await leftovers(store, database)
    async with ingest_server(dead, create_sessionmaker(engine), store, bus) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await upload(stub, [SPEECH_CLIP.read_bytes()])
    await engine.dispose()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert from_rpc_error(caught.value).code == "DATABASE_UNAVAILABLE"
    assert await leftovers(store, database) == before
    assert await queued_messages(bus, settings) == 0
