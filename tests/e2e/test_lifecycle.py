"""The job lifecycle through the gateway: delete (HTTP and gRPC) removes everything at once and
leaves a tombstone that answers 410; a running job's worker stops within seconds and takes the
next job; retried uploads are one job; expiry (shortened here) leaves nothing but the tombstone."""

import asyncio
import subprocess
import time
import uuid

import grpc
import httpx
import nats
import pytest

from kazru.adapters.audio import ffmpeg_exe
from kazru.grpc import server as grpc_server
from kazru.grpc.errors import from_rpc_error
from kazru.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.conftest import SPEECH_CLIP
from tests.e2e.conftest import API_KEY, stack_fixture
from tests.helpers import leftovers, long_speech, remains_of

AUTH = {"Authorization": f"Bearer {API_KEY}"}
RETENTION_SECONDS = 60.0
NOTHING = {"objects": [], "segments": 0, "words": 0, "speakers": 0}


stack = stack_fixture("lifecycle", retention_hours=RETENTION_SECONDS / 3600, janitor_interval_seconds=1.0)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> bytes:
    return long_speech(tmp_path_factory.mktemp("long") / "long.flac", repeats=2)


def upload(client: httpx.Client, data: bytes = b"", **headers) -> dict:
    response = client.post("/api/v1/upload", files={"file": ("clip.flac", data or SPEECH_CLIP.read_bytes())},
                           headers=headers)  # fmt: skip
    assert response.status_code == 202, response.text
    return response.json()


def wait_for(client: httpx.Client, job_id: str, states: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"{job_id} still {job['state']}"
        time.sleep(0.1)


async def queued(settings, settle_seconds: float = 5.0) -> int:
    """Messages left on the jobs stream once in-flight acks have landed: the worker acks
    only after its commit, so a job can read SUCCEEDED a moment before its message goes."""
    connection = await nats.connect(settings.nats_url)
    try:
        deadline = asyncio.get_running_loop().time() + settle_seconds
        while True:
            messages = (await connection.jetstream().stream_info(settings.jobs_stream)).state.messages
            if messages == 0 or asyncio.get_running_loop().time() > deadline:
                return messages
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


@pytest.fixture
def client(stack):
    with httpx.Client(base_url=stack.http, headers=AUTH, timeout=60) as http:
        yield http


async def test_deleting_a_finished_job_leaves_a_tombstone_that_answers_410(stack, client, store, database):
    job = upload(client)
    assert wait_for(client, job["job_id"], {"SUCCEEDED", "FAILED"})["state"] == "SUCCEEDED"
    assert (await remains_of(database, store, uuid.UUID(job["job_id"])))["segments"] > 0

    deleted = client.delete(f"/api/v1/jobs/{job['job_id']}")
    assert deleted.status_code == 200 and deleted.json()["state"] == "DELETED"

    assert await remains_of(database, store, uuid.UUID(job["job_id"])) == NOTHING
    shown = client.get(f"/api/v1/jobs/{job['job_id']}")
    assert shown.status_code == 200 and shown.json()["state"] == "DELETED"
    # Deleted jobs leave the list (a reload of the page shows none); the tombstone answers by id.
    assert job["job_id"] not in [
        j["job_id"] for j in client.get("/api/v1/jobs", params={"page_size": 100}).json()["jobs"]
    ]
    for path in ("/transcript", "/export/txt", "/export/json"):
        gone = client.get(f"/api/v1/jobs/{job['job_id']}{path}")
        assert (gone.status_code, gone.json()["error"]["code"]) == (410, "JOB_DELETED"), path
    edits = (("PUT", "/speakers", {"speakers": {"S1": "Aigerim"}}), ("PATCH", "/segments/0", {"text": "жаңа"}))
    for method, path, body in edits:
        refused = client.request(method, f"/api/v1/jobs/{job['job_id']}{path}", json=body)
        assert (refused.status_code, refused.json()["error"]["code"]) == (410, "JOB_DELETED"), path
    again = client.delete(f"/api/v1/jobs/{job['job_id']}")
    assert (again.status_code, again.json()["error"]["code"]) == (410, "JOB_DELETED")


async def test_delete_over_grpc(stack, store, database):
    channel = grpc_server.channel(stack.settings.public_grpc_address)
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    metadata = (("authorization", f"Bearer {API_KEY}"),)
    data = SPEECH_CLIP.read_bytes()

    request_id = f"grpc-retry-{uuid.uuid4()}"

    async def requests():
        metadata_message = job_service_pb2.UploadMetadata(filename="g.flac", request_id=request_id)
        yield job_service_pb2.UploadAudioRequest(metadata=metadata_message)
        yield job_service_pb2.UploadAudioRequest(chunk=data)
        yield job_service_pb2.UploadAudioRequest(complete=job_pb2.UploadComplete(size_bytes=len(data)))

    job = await stub.UploadAudio(requests(), metadata=metadata)
    assert (await stub.UploadAudio(requests(), metadata=metadata)).name == job.name, "a retry is the same job"
    deleted = await stub.DeleteJob(job_service_pb2.DeleteJobRequest(name=job.name), metadata=metadata)
    assert deleted.state == job_pb2.Job.DELETED and deleted.name == job.name
    assert await remains_of(database, store, uuid.UUID(job.job_id)) == NOTHING
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.GetTranscript(job_service_pb2.GetTranscriptRequest(name=job.name), metadata=metadata)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND and from_rpc_error(gone.value).code == "JOB_DELETED"
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await stub.DeleteJob(job_service_pb2.DeleteJobRequest(name=job.name), metadata=metadata)
    assert again.value.code() == grpc.StatusCode.NOT_FOUND and from_rpc_error(again.value).code == "JOB_DELETED"
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await stub.DeleteJob(job_service_pb2.DeleteJobRequest(name=job.name))
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    await channel.close()


async def test_a_retried_upload_returns_the_same_job(stack, client, store, database):
    before = await leftovers(store, database)
    key = f"client-retry-{uuid.uuid4()}"
    first = upload(client, **{"Idempotency-Key": key})
    second = upload(client, **{"Idempotency-Key": key})
    assert second["job_id"] == first["job_id"]
    after = await leftovers(store, database)
    assert after["jobs"] == before["jobs"] + 1
    assert after["objects"] == sorted([*before["objects"], f"jobs/{first['job_id']}/original"])
    wait_for(client, first["job_id"], {"SUCCEEDED"})
    assert await queued(stack.settings) == 0, "one message, consumed once"


async def test_deleting_a_running_job_stops_its_worker_within_seconds(stack, client, store, database, long_clip):
    long_job = upload(client, long_clip)
    wait_for(client, long_job["job_id"], {"RUNNING"}, timeout=60)
    await asyncio.sleep(1.0)
    assert client.delete(f"/api/v1/jobs/{long_job['job_id']}").json()["state"] == "DELETED"
    deleted_at = time.monotonic()
    # The only transcriber must be free again: the next job runs at once and finishes quickly.
    short = upload(client)
    assert wait_for(client, short["job_id"], {"SUCCEEDED", "FAILED"}, timeout=60)["state"] == "SUCCEEDED"
    took = time.monotonic() - deleted_at
    assert took < 25, f"the worker kept the deleted job for {took:.1f}s"
    await asyncio.sleep(1.0)
    assert await remains_of(database, store, uuid.UUID(long_job["job_id"])) == NOTHING, "no results written"
    assert client.get(f"/api/v1/jobs/{long_job['job_id']}").json()["state"] == "DELETED"
    assert await queued(stack.settings) == 0


async def test_expiry_leaves_nothing_but_a_tombstone(stack, client, store, database):
    job = upload(client)
    assert wait_for(client, job["job_id"], {"SUCCEEDED"})["state"] == "SUCCEEDED"
    expired = wait_for(client, job["job_id"], {"EXPIRED"}, timeout=RETENTION_SECONDS + 30)
    assert expired["expires_at"] is not None
    assert await remains_of(database, store, uuid.UUID(job["job_id"])) == NOTHING
    assert await queued(stack.settings) == 0
    for path in ("/transcript", "/export/txt"):
        gone = client.get(f"/api/v1/jobs/{job['job_id']}{path}")
        assert (gone.status_code, gone.json()["error"]["code"]) == (410, "JOB_EXPIRED")


async def test_a_truncated_file_is_flagged_with_what_decodes(stack, client, long_clip, tmp_path):
    # 40 s of speech as an MP3 with a Xing header (which states the length), cut to its first fifth.
    source, mp3 = tmp_path / "long.flac", tmp_path / "long.mp3"
    source.write_bytes(long_clip)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(source), "-t", "40", "-b:a", "64k", str(mp3)], check=True)
    data = mp3.read_bytes()
    response = client.post("/api/v1/upload", files={"file": ("cut.mp3", data[: len(data) // 5], "audio/mpeg")})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["audio"]["duration_seconds"] == pytest.approx(40, abs=0.5)  # the header's claim
    assert accepted["audio"]["truncated"] is False  # not known before it is decoded
    job = wait_for(client, accepted["job_id"], {"SUCCEEDED", "FAILED"})
    assert job["audio"]["truncated"] is True, job
    assert job["audio"]["declared_duration_seconds"] == pytest.approx(40, abs=0.5)
    assert job["audio"]["duration_seconds"] == pytest.approx(8, abs=1.0)  # a fifth of it decodes
    # A whole file is not flagged, and its duration is what decodes.
    whole = wait_for(client, upload(client)["job_id"], {"SUCCEEDED"})
    assert whole["audio"]["truncated"] is False and whole["audio"]["declared_duration_seconds"] is None
