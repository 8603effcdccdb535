"""Ingest over real gRPC, S3, PostgreSQL and NATS: accepted uploads are complete,
rejected ones leave nothing behind (no object, no multipart upload, no row, no message)."""

import asyncio
import contextlib
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import pytest_asyncio
from sqlalchemy import update

from kazru.adapters.storage import ObjectStore
from kazru.db import transcripts
from kazru.db.job_repository import JobRepository
from kazru.db.models import Job, JobState
from kazru.db.session import create_engine, create_sessionmaker
from kazru.dev.devservers import free_port
from kazru.domain.external_copies import NO_EXTERNAL_COPIES
from kazru.grpc import server as grpc_server
from kazru.grpc.errors import from_rpc_error
from kazru.jobs import retention
from kazru.v1 import events_pb2, ingest_service_pb2, ingest_service_pb2_grpc, job_pb2
from services.ingest.__main__ import create_server
from services.ingest.uploads import UploadService
from tests.conftest import SPEECH_CLIP
from tests.helpers import encoded, leftovers, queued_messages, silent_wav_chunks
from tests.transcripts import WordSpec, insert_transcript, segment_of_words

SMALL_CAP = 2 * 1024 * 1024


@contextlib.asynccontextmanager
async def ingest_server(settings, database, store, bus):
    server = create_server(settings, UploadService(settings, JobRepository(database, settings), store, bus))
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


@pytest.mark.parametrize(
    ("kind", "container", "content_type"),
    [("aac", "aac", "audio/aac"), ("amr", "amr", "audio/amr"), ("aiff", "aiff", "audio/aiff"),
     ("wma", "asf", "audio/x-ms-wma"), ("ts", "mpegts", "video/mp2t"), ("m2ts", "mpegts", "video/mp2t"),
     ("avi", "avi", "video/x-msvideo"), ("mkv", "webm", "audio/webm"), ("mov", "mp4", "audio/mp4")],
)  # fmt: skip
async def test_phone_desktop_and_video_recordings_are_taken_for_their_sound(
    ingest, database, tmp_path, kind, container, content_type
):
    data = encoded(SPEECH_CLIP, kind, tmp_path)
    job = await upload(ingest, [data], filename=f"recording.{kind}")
    assert job.state == job_pb2.Job.PENDING
    assert job.audio.container == container
    # ffmpeg read the sound: its length is the clip's 2.92 s (AAC and AMR frames round it up by up to 0.1 s).
    assert job.audio.duration_seconds == pytest.approx(2.92, abs=0.15)
    async with database() as session:
        row = await session.get(Job, uuid.UUID(job.job_id))
    assert row.content_type == content_type, "what the player is told it gets"


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


async def finished_job_of(database, data: bytes, owner: str, **changes) -> uuid.UUID:
    """A finished job of `owner` for these bytes, as the transcriber leaves it (default options)."""
    job_id = await insert_transcript(database, conversation_segments(), owner_id=owner)
    async with database.begin() as session:
        await session.execute(
            update(Job).where(Job.id == job_id).values(content_sha256=hashlib.sha256(data).hexdigest(), **changes)
        )
    return job_id


def conversation_segments() -> list:
    return [
        segment_of_words("S1", [WordSpec(0.5, 0.9, "Сәлем"), WordSpec(1.0, 1.4, "қалайсыз?")], "kk"),
        segment_of_words("S2", [WordSpec(2.0, 2.4, "Привет,"), WordSpec(2.5, 2.9, "хорошо.")], "ru"),
    ]


async def transcript_rows(database, job_id) -> tuple:
    async with database() as session:
        stored = await transcripts.load_transcript(session, job_id)
    segments = [(s.position, s.start_seconds, s.end_seconds, s.text, s.language, s.speaker, s.words_json)
                for s in stored.segments]  # fmt: skip
    speakers = [(s.label, s.name, s.speaking_seconds, s.segment_count) for s in stored.speakers]
    return segments, speakers


async def test_an_identical_upload_of_the_same_owner_takes_the_earlier_transcript_at_once(
    ingest, database, store, bus, settings
):
    data = SPEECH_CLIP.read_bytes()
    owner = "owner-reuse-" + uuid.uuid4().hex[:8]
    earlier = await finished_job_of(database, data, owner)
    job = await upload(ingest, [data], owner=owner)
    assert job.state == job_pb2.Job.SUCCEEDED and job.progress == 100 and job.reused_from == str(earlier)
    # It says which engine and model wrote the transcript it took (the engine did not run for it).
    assert (job.engine, job.engine_model) == ("whisper", "whisper-base")
    assert await queued_messages(bus, settings) == 0, "the engine is not asked"
    assert await transcript_rows(database, uuid.UUID(job.job_id)) == await transcript_rows(database, earlier)
    async with database() as session:
        row = await session.get(Job, uuid.UUID(job.job_id))
    assert row.usage_counted and row.billed_seconds == 0 and await store.exists(row.object_key)
    assert (row.finished_at - row.created_at).total_seconds() < 1
    # Each keeps its own life: deleting the earlier job leaves this one whole.
    await retention.JobRemoval(database, store, bus, settings, NO_EXTERNAL_COPIES).delete_owned(owner, str(earlier))
    segments, speakers = await transcript_rows(database, uuid.UUID(job.job_id))
    assert len(segments) == 2 and [s[0] for s in speakers] == ["S1", "S2"]


@pytest.mark.parametrize(
    "case",
    ["another owner", "other options", "earlier one expired", "earlier one failed", "earlier one edited",
     "another model"],
)  # fmt: skip
async def test_no_reuse_across_owners_options_or_a_gone_transcript(ingest, database, bus, settings, case):
    data = SPEECH_CLIP.read_bytes()
    owner = "owner-reuse-" + uuid.uuid4().hex[:8]
    changes = {
        "earlier one expired": {"expires_at": datetime.now(UTC) - timedelta(minutes=1)},
        "earlier one failed": {"state": JobState.FAILED},
        # A person's names, merges or corrections are theirs, in that job: the copy would be the machine's.
        "earlier one edited": {"transcript_edited_at": datetime.now(UTC)},
        # Written by another model of the same engine (the service's is whisper-base).
        "another model": {"engine_model": "whisper-small"},
    }.get(case, {})
    await finished_job_of(database, data, owner, **changes)
    uploader = "someone-else-" + uuid.uuid4().hex[:8] if case == "another owner" else owner
    languages = ("ru",) if case == "other options" else ()
    job = await upload(ingest, [data], owner=uploader, languages=languages)
    assert job.state == job_pb2.Job.PENDING and job.reused_from == "", case
    assert await queued_messages(bus, settings) == 1, "the engine runs"


async def test_reuse_can_be_turned_off(infra, database, store, bus):
    data = SPEECH_CLIP.read_bytes()
    owner = "owner-reuse-" + uuid.uuid4().hex[:8]
    await finished_job_of(database, data, owner)
    settings = infra.settings(ingest_address="127.0.0.1:0", reuse_identical_uploads=False)
    async with ingest_server(settings, database, store, bus) as stub:
        job = await upload(stub, [data], owner=owner)
    assert job.state == job_pb2.Job.PENDING and job.reused_from == ""
