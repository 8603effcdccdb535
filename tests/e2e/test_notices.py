"""Notices through the whole stack: a recording without speech says so (HTTP, gRPC, TXT export), speech in
a language outside the job's allowed set is named, and the OpenAI route without `language` detects it."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from kazru.adapters.audio import ffmpeg_exe
from kazru.grpc import server as grpc_server
from kazru.v1 import job_service_pb2, job_service_pb2_grpc
from tests.conftest import FIXTURES, REAL_SPEECH_CLIP
from tests.e2e.conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
# A real English conversation (pyannote's sample, tests/fixtures/audio/README.md).
ENGLISH_CLIP = FIXTURES / "en_pyannote_sample.flac"


def upload(stack, path, name: str, **fields) -> dict:
    with path.open("rb") as audio:
        response = httpx.post(f"{stack.http}/api/v1/upload", headers=AUTH, files={"file": (name, audio)},
                              data=fields, timeout=60)  # fmt: skip
    assert response.status_code == 202, response.text
    return response.json()


def finished(stack, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{stack.http}/api/v1/jobs/{job_id}", headers=AUTH).json()
        if job["state"] in ("SUCCEEDED", "FAILED"):
            assert job["state"] == "SUCCEEDED", job["error"]
            return job
        time.sleep(0.3)
    raise TimeoutError(job)


async def grpc_notices(stack, job_id: str) -> list[tuple[str, str]]:
    channel = grpc_server.channel(stack.settings.public_grpc_address)
    try:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        job = await stub.GetJob(
            job_service_pb2.GetJobRequest(name=f"jobs/{job_id}"), metadata=(("authorization", f"Bearer {API_KEY}"),)
        )
        return [(notice.code, notice.language) for notice in job.notices]
    finally:
        await channel.close()


async def test_a_recording_without_speech_says_so_everywhere(stack, tmp_path):
    silent = tmp_path / "тишина.flac"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "20",
                    str(silent)], check=True)  # fmt: skip
    job = finished(stack, upload(stack, silent, silent.name, language="kk,ru")["job_id"])
    assert job["notices"] == [
        {"code": "NO_SPEECH", "message": "No speech was found in this recording.", "language": None}
    ]
    assert await grpc_notices(stack, job["job_id"]) == [("NO_SPEECH", "")]
    transcript = httpx.get(f"{stack.http}/api/v1/jobs/{job['job_id']}/transcript", headers=AUTH).json()
    assert transcript["segments"] == []
    txt = httpx.get(f"{stack.http}/api/v1/jobs/{job['job_id']}/export/txt", headers=AUTH)
    assert txt.status_code == 200 and txt.text == "No speech was found in this recording.\n"
    exported = httpx.get(f"{stack.http}/api/v1/jobs/{job['job_id']}/export/json", headers=AUTH).json()
    assert [notice["code"] for notice in exported["notices"]] == ["NO_SPEECH"]


async def test_english_uploaded_as_kazakh_or_russian_is_named_and_russian_is_not(stack):
    english = upload(stack, ENGLISH_CLIP, "meeting.flac", language="kk,ru")
    russian = upload(stack, REAL_SPEECH_CLIP, "интервью.flac", language="kk,ru")
    english, russian = finished(stack, english["job_id"]), finished(stack, russian["job_id"])
    [notice] = english["notices"]
    assert notice["code"] == "UNSUPPORTED_LANGUAGE" and notice["language"] == "en"
    assert notice["message"] == (
        "Most of this recording sounds like English, which is not among the languages chosen for it "
        "(Kazakh, Russian). Choose English or the right language and upload again."
    )
    assert await grpc_notices(stack, english["job_id"]) == [("UNSUPPORTED_LANGUAGE", "en")]
    assert russian["notices"] == [] and russian["detected_language"] == "ru"
    assert await grpc_notices(stack, russian["job_id"]) == []


@pytest.mark.parametrize("path, language", [(ENGLISH_CLIP, "english"), (REAL_SPEECH_CLIP, "russian")])
def test_openai_route_without_language_detects_it_among_all_supported(stack, path, language):
    with path.open("rb") as audio:
        response = httpx.post(
            f"{stack.http}/v1/audio/transcriptions", headers=AUTH, timeout=300,
            files={"file": (path.name, audio)}, data={"model": "whisper-1", "response_format": "verbose_json"},
        )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["language"] == language
    job = httpx.get(f"{stack.http}/api/v1/jobs/{response.headers['x-job-id']}", headers=AUTH).json()
    assert job["languages"] == ["kk", "ru", "en"] and job["notices"] == []
    if language == "english":
        # Written as English, not as Russian words.
        assert body["text"].isascii() and len(body["text"].split()) > 20, body["text"]
