"""The real flow through the gateway: HTTP and gRPC uploads of real speech, transcripts,
exports, isolation between owners and health (hostile and broken input: test_bad_input.py)."""

import asyncio
import json
import time

import grpc
import httpx
import pytest

from kazru.grpc import server as grpc_server
from kazru.v1 import export_pb2, job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.conftest import REAL_SPEECH_CLIP, REAL_SPEECH_SECONDS, REAL_SPEECH_WORDS, SPEECH_CLIP
from tests.e2e.conftest import API_KEY, stack_fixture

AUTH = {"Authorization": f"Bearer {API_KEY}"}


# The whole pipeline, each upload through the engine (the clips were uploaded before, by other modules).
stack = stack_fixture("pipeline")


def wait_for_job(stack, job_id: str, headers=AUTH, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{stack.http}/api/v1/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("SUCCEEDED", "FAILED"):
            return job
        time.sleep(0.2)
    raise TimeoutError(job)


def test_health_checks_every_dependency(stack):
    response = httpx.get(f"{stack.http}/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"postgres", "nats", "s3", "ingest", "exporter", "transcriber", "janitor"}
    # Which engine new jobs run on, from the settings the gateway shares with the transcribers.
    assert body["engine"] == {"name": "whisper", "model": "whisper-base"}


def test_http_upload_to_transcript_and_exports(stack):
    with REAL_SPEECH_CLIP.open("rb") as audio:
        response = httpx.post(
            f"{stack.http}/api/v1/upload", headers=AUTH,
            files={"file": ("интервью.flac", audio, "audio/flac")}, data={"language": "kk,ru"},
        )  # fmt: skip
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["state"] == "PENDING" and accepted["filename"] == "интервью.flac"
    assert response.headers["location"] == f"/api/v1/jobs/{accepted['job_id']}"

    job = wait_for_job(stack, accepted["job_id"])
    assert job["state"] == "SUCCEEDED", job["error"]
    assert job["progress"] == 100 and job["detected_language"] == "ru"
    assert job["audio"]["duration_seconds"] == pytest.approx(REAL_SPEECH_SECONDS, abs=0.05)
    # Which engine and model wrote the transcript, on the job and in the JSON export's metadata.
    assert (job["engine"], job["engine_model"]) == ("whisper", "whisper-base")

    transcript = httpx.get(f"{stack.http}/api/v1/jobs/{job['job_id']}/transcript", headers=AUTH).json()
    text = " ".join(segment["text"] for segment in transcript["segments"]).lower()
    for word in REAL_SPEECH_WORDS:
        assert word in text

    txt = httpx.get(f"{stack.http}/api/v1/jobs/{job['job_id']}/export/txt", headers=AUTH)
    assert txt.status_code == 200 and txt.headers["content-type"] == "text/plain; charset=utf-8"
    assert "filename*=UTF-8''%D0%B8%D0%BD%D1%82%D0%B5%D1%80%D0%B2%D1%8C%D1%8E.txt" in txt.headers["content-disposition"]
    assert txt.text.startswith("[00:00:0") and REAL_SPEECH_WORDS[0] in txt.text.lower()

    exported = httpx.get(f"{stack.http}/api/v1/jobs/{job['job_id']}/export/json", headers=AUTH)
    document = json.loads(exported.text)
    assert [s["text"] for s in document["segments"]] == [s["text"] for s in transcript["segments"]]
    assert (document["engine"], document["engine_model"]) == ("whisper", "whisper-base")

    listed = httpx.get(f"{stack.http}/api/v1/jobs", headers=AUTH, params={"page_size": 100}).json()
    assert job["job_id"] in [j["job_id"] for j in listed["jobs"]]


async def test_grpc_upload_to_transcript_and_export(stack):
    channel = grpc_server.channel(stack.settings.public_grpc_address)
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    metadata = (("authorization", f"Bearer {API_KEY}"),)
    data = REAL_SPEECH_CLIP.read_bytes()

    async def requests():
        yield job_service_pb2.UploadAudioRequest(metadata=job_service_pb2.UploadMetadata(filename="grpc.flac"))
        for start in range(0, len(data), 16 * 1024):
            yield job_service_pb2.UploadAudioRequest(chunk=data[start : start + 16 * 1024])
        yield job_service_pb2.UploadAudioRequest(complete=job_pb2.UploadComplete(size_bytes=len(data)))

    job = await stub.UploadAudio(requests(), metadata=metadata)
    assert job.name == f"jobs/{job.job_id}" and job.state == job_pb2.Job.PENDING
    for _ in range(600):
        job = await stub.GetJob(job_service_pb2.GetJobRequest(name=job.name), metadata=metadata)
        if job.state in (job_pb2.Job.SUCCEEDED, job_pb2.Job.FAILED):
            break
        await asyncio.sleep(0.2)
    assert job.state == job_pb2.Job.SUCCEEDED
    assert (job.engine, job.engine_model) == ("whisper", "whisper-base")
    transcript = await stub.GetTranscript(job_service_pb2.GetTranscriptRequest(name=job.name), metadata=metadata)
    text = " ".join(segment.text for segment in transcript.segments).lower()
    assert all(word in text for word in REAL_SPEECH_WORDS)

    chunks = [
        chunk
        async for chunk in stub.ExportTranscript(
            job_service_pb2.ExportTranscriptRequest(name=job.name, format=export_pb2.EXPORT_FORMAT_TXT),
            metadata=metadata,
        )
    ]
    assert (
        chunks[0].filename == "grpc.txt" and REAL_SPEECH_WORDS[0] in b"".join(c.data for c in chunks).decode().lower()
    )

    # Another owner (no key: anonymous callers need a key over gRPC) sees nothing.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetJob(job_service_pb2.GetJobRequest(name=job.name))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetJob(
            job_service_pb2.GetJobRequest(name="jobs/00000000-0000-0000-0000-000000000000"), metadata=metadata
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    await channel.close()


def test_another_owner_cannot_see_a_job(stack):
    with SPEECH_CLIP.open("rb") as audio:
        job = httpx.post(f"{stack.http}/api/v1/upload", headers=AUTH, files={"file": ("a.flac", audio)}).json()
    browser = httpx.Client(base_url=stack.http)  # anonymous: gets its own session cookie
    assert browser.get("/api/v1/jobs").json()["jobs"] == []
    assert "kazru_session" in browser.cookies
    for path in ("", "/transcript", "/export/txt"):
        response = browser.get(f"/api/v1/jobs/{job['job_id']}{path}")
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "JOB_NOT_FOUND"
    wrong_key = httpx.get(f"{stack.http}/api/v1/jobs/{job['job_id']}", headers={"Authorization": "Bearer nope"})
    assert wrong_key.status_code == 401


def test_page_is_served(stack):
    page = httpx.get(f"{stack.http}/")
    assert page.status_code == 200 and "KazRu-STT" in page.text
    assert httpx.get(f"{stack.http}/static/app.js").status_code == 200


def test_z_database_outage_is_503_and_the_stack_recovers(stack, infra):
    infra.postgres.stop()
    try:
        listing = httpx.get(f"{stack.http}/api/v1/jobs", headers=AUTH)
        assert listing.status_code == 503
        assert listing.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
        health = httpx.get(f"{stack.http}/api/v1/health")
        assert health.status_code == 503 and health.json()["checks"]["postgres"]["ok"] is False
    finally:
        infra.postgres.start()
    assert httpx.get(f"{stack.http}/api/v1/jobs", headers=AUTH).status_code == 200
    with SPEECH_CLIP.open("rb") as audio:
        accepted = httpx.post(f"{stack.http}/api/v1/upload", headers=AUTH, files={"file": ("after.flac", audio)})
    assert accepted.status_code == 202
    assert wait_for_job(stack, accepted.json()["job_id"])["state"] == "SUCCEEDED"


def test_zz_health_reports_a_stopped_service(stack):
    """Last in this module: it stops the janitor."""
    from kazru.dev.devservers import stop_process

    stop_process(stack.processes["janitor"], grace=10)
    response = httpx.get(f"{stack.http}/api/v1/health")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["janitor"]["ok"] is False and checks["postgres"]["ok"] is True


async def test_client_that_disconnects_mid_upload_leaves_nothing(stack, store, database):
    from tests.helpers import leftovers

    before = await leftovers(store, database)
    boundary = "cut-short"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.flac"\r\n\r\n'
    ).encode() + SPEECH_CLIP.read_bytes()[:30_000]
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.settings.http_port)
    writer.write(
        (
            f"POST /api/v1/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 1000000\r\n\r\n"
        ).encode()
        + head
    )
    await writer.drain()
    await asyncio.sleep(0.5)
    writer.close()
    await asyncio.sleep(1.5)
    assert await leftovers(store, database) == before


async def test_grpc_upload_without_complete_is_discarded(stack, store, database):
    from kazru.grpc.errors import from_rpc_error
    from tests.helpers import leftovers

    before = await leftovers(store, database)
    channel = grpc_server.channel(stack.settings.public_grpc_address)
    stub = job_service_pb2_grpc.JobServiceStub(channel)

    async def requests():
        yield job_service_pb2.UploadAudioRequest(metadata=job_service_pb2.UploadMetadata(filename="cut.flac"))
        yield job_service_pb2.UploadAudioRequest(chunk=SPEECH_CLIP.read_bytes())

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UploadAudio(requests(), metadata=(("authorization", f"Bearer {API_KEY}"),))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert from_rpc_error(caught.value).code == "UPLOAD_INCOMPLETE"
    assert await leftovers(store, database) == before
    await channel.close()
