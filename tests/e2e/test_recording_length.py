"""Recordings whose container never learned its length (a browser's MediaRecorder WebM, ffmpeg writing
WebM or FLAC to a pipe: `Duration: N/A`) are accepted and transcribed over HTTP, gRPC and the OpenAI
route; and the duration limit holds on what decodes, not on what a header claims: a header-less stream
or a VBR MP3 whose header undersells it is stopped as soon as its decoded audio passes the limit, and
the job ends FAILED with RECORDING_TOO_LONG and nothing of it left (no audio object, no transcript)."""

from __future__ import annotations

import asyncio
import subprocess
import time

import httpx
import pytest

from kazru.adapters.audio import ffmpeg_exe
from kazru.grpc import server as grpc_server
from kazru.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.conftest import REAL_SPEECH_CLIP, REAL_SPEECH_SECONDS, REAL_SPEECH_WORDS
from tests.e2e.conftest import API_KEY, stack_fixture
from tests.helpers import remains_of

AUTH = {"Authorization": f"Bearer {API_KEY}"}
GRPC_AUTH = (("authorization", f"Bearer {API_KEY}"),)
# Low, so that a recording over it is quick to make and to decode; the speech clip (4.56 s) is under it.
LIMIT_SECONDS = 10

stack = stack_fixture("recording-length", max_duration_seconds=LIMIT_SECONDS)


def ffmpeg_to_pipe(*args: str) -> bytes:
    """What ffmpeg writes to a pipe: it cannot seek back to write the length into the header."""
    return subprocess.run([ffmpeg_exe(), "-v", "error", *args, "pipe:1"], check=True, capture_output=True).stdout


def piped_speech(container: str) -> bytes:
    codec = {"webm": ["-c:a", "libopus"], "flac": []}[container]
    return ffmpeg_to_pipe("-i", str(REAL_SPEECH_CLIP), *codec, "-f", container)


def header_less_webm(seconds: float) -> bytes:
    return ffmpeg_to_pipe("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "libopus",
                          "-f", "webm")  # fmt: skip


def mp3_frames(seconds: float, bitrate: str) -> bytes:
    """Constant-bitrate MPEG-1 layer III frames only: no ID3 tag, no Xing/Info frame telling the length."""
    return ffmpeg_to_pipe("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}:sample_rate=44100",
                          "-c:a", "libmp3lame", "-b:a", bitrate, "-id3v2_version", "0", "-write_xing", "0",
                          "-f", "mp3")  # fmt: skip


def lying_vbr_mp3() -> bytes:
    """One second at 320 kb/s, then 40 s at 32 kb/s: a reader estimating the length from the first frame's
    bitrate and the file's size (all it can do without a Xing header) takes it for about 5 s."""
    return mp3_frames(1, "320k") + mp3_frames(40, "32k")


def probed_seconds(data: bytes, folder) -> float | None:
    """The length ffmpeg's probe gives `data` as a file, as ingest probes it (None for `Duration: N/A`)."""
    from kazru.adapters.audio import parse_ffmpeg_probe

    path = folder / "probed"
    path.write_bytes(data)
    listing = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return parse_ffmpeg_probe(listing.stderr).duration_seconds


def upload_http(stack, name: str, data: bytes) -> dict:
    response = httpx.post(f"{stack.http}/api/v1/upload", headers=AUTH, files={"file": (name, data)}, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()


def finished(stack, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{stack.http}/api/v1/jobs/{job_id}", headers=AUTH).json()
        if job["state"] in ("SUCCEEDED", "FAILED"):
            return job
        time.sleep(0.2)
    raise TimeoutError(job)


def transcript_text(stack, job_id: str) -> str:
    transcript = httpx.get(f"{stack.http}/api/v1/jobs/{job_id}/transcript", headers=AUTH).json()
    return " ".join(segment["text"] for segment in transcript["segments"]).lower()


async def grpc_upload(stack, name: str, data: bytes) -> job_pb2.Job:
    """Upload over the public gRPC API and wait for the job to finish."""
    channel = grpc_server.channel(stack.settings.public_grpc_address)
    stub = job_service_pb2_grpc.JobServiceStub(channel)

    async def requests():
        yield job_service_pb2.UploadAudioRequest(metadata=job_service_pb2.UploadMetadata(filename=name))
        yield job_service_pb2.UploadAudioRequest(chunk=data)
        yield job_service_pb2.UploadAudioRequest(complete=job_pb2.UploadComplete(size_bytes=len(data)))

    job = await stub.UploadAudio(requests(), metadata=GRPC_AUTH)
    for _ in range(900):
        if job.state in (job_pb2.Job.SUCCEEDED, job_pb2.Job.FAILED):
            break
        await asyncio.sleep(0.2)
        job = await stub.GetJob(job_service_pb2.GetJobRequest(name=job.name), metadata=GRPC_AUTH)
    await channel.close()
    return job


def test_the_fixtures_really_have_no_length_or_a_wrong_one(tmp_path):
    assert probed_seconds(piped_speech("webm"), tmp_path) is None
    assert probed_seconds(piped_speech("flac"), tmp_path) is None
    assert probed_seconds(header_less_webm(20), tmp_path) is None
    assert probed_seconds(lying_vbr_mp3(), tmp_path) < LIMIT_SECONDS, "the header undersells it: accepted at upload"


@pytest.mark.parametrize("container", ["webm", "flac"])
def test_a_recording_of_unknown_length_is_transcribed_over_http(stack, container):
    accepted = upload_http(stack, f"recorded.{container}", piped_speech(container))
    job = finished(stack, accepted["job_id"])
    assert job["state"] == "SUCCEEDED", job["error"]
    # The length is what decoded (Opus pads its first frame by a few milliseconds).
    assert job["audio"]["duration_seconds"] == pytest.approx(REAL_SPEECH_SECONDS, abs=0.1)
    assert job["audio"]["truncated"] is False
    text = transcript_text(stack, job["job_id"])
    assert all(word in text for word in REAL_SPEECH_WORDS), text


@pytest.mark.parametrize("container", ["webm", "flac"])
async def test_a_recording_of_unknown_length_is_transcribed_over_grpc(stack, container):
    job = await grpc_upload(stack, f"recorded.{container}", piped_speech(container))
    assert job.state == job_pb2.Job.SUCCEEDED, job.error
    assert job.audio.duration_seconds == pytest.approx(REAL_SPEECH_SECONDS, abs=0.1)
    assert all(word in transcript_text(stack, job.job_id) for word in REAL_SPEECH_WORDS)


def test_a_browser_recording_is_transcribed_by_the_openai_route(stack):
    response = httpx.post(
        f"{stack.http}/v1/audio/transcriptions", headers=AUTH, timeout=180,
        files={"file": ("recording.webm", piped_speech("webm"))},
        data={"model": "whisper-1", "response_format": "text"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert all(word in response.text.lower() for word in REAL_SPEECH_WORDS), response.text


def assert_refused_for_length_and_gone(job_error_code: str, job_error_message: str) -> None:
    assert job_error_code == "RECORDING_TOO_LONG"
    assert f"at most {LIMIT_SECONDS / 3600:g} h are accepted" in job_error_message, job_error_message


@pytest.mark.parametrize("recording", ["header-less-webm", "lying-vbr-mp3"])
async def test_the_limit_holds_on_what_decodes_over_http(stack, database, store, recording):
    name, data = {"header-less-webm": ("stream.webm", header_less_webm(4 * LIMIT_SECONDS)),
                  "lying-vbr-mp3": ("liar.mp3", lying_vbr_mp3())}[recording]  # fmt: skip
    started = time.monotonic()
    job = finished(stack, upload_http(stack, name, data)["job_id"])
    assert job["state"] == "FAILED"
    assert_refused_for_length_and_gone(job["error"]["code"], job["error"]["message"])
    assert await remains_of(database, store, job["job_id"]) == {"objects": [], "segments": 0, "words": 0,
                                                                "speakers": 0}  # fmt: skip
    assert time.monotonic() - started < 60, "refused at decoding, without running the engine on it"


async def test_the_limit_holds_on_what_decodes_over_grpc(stack, database, store):
    job = await grpc_upload(stack, "stream.webm", header_less_webm(4 * LIMIT_SECONDS))
    assert job.state == job_pb2.Job.FAILED
    assert_refused_for_length_and_gone(job.error.code, job.error.message)
    assert (await remains_of(database, store, job.job_id))["objects"] == []


def test_a_recording_just_under_the_limit_still_passes(stack):
    job = finished(stack, upload_http(stack, "under.webm", header_less_webm(LIMIT_SECONDS - 1))["job_id"])
    assert job["state"] == "SUCCEEDED", job["error"]
    assert job["audio"]["duration_seconds"] == pytest.approx(LIMIT_SECONDS - 1, abs=0.1)
