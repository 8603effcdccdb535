"""Hostile and broken uploads and requests through the gateway over HTTP: each gets its documented
error, and each leaves nothing behind: no object, no unfinished multipart upload, no job row, no
message on the queue. Errors a client sees, over HTTP, the OpenAI route and gRPC, say what is wrong in
plain words and carry no internal address, token or raw ffmpeg output. (Ingest's gRPC-level refusals:
tests/integration/test_ingest.py.)"""

import asyncio
import http.client
import json
import re
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import grpc
import httpx
import nats
import psutil
import pytest

from kazru.adapters.audio import ffmpeg_exe
from kazru.grpc import server as grpc_server
from kazru.grpc.errors import from_rpc_error
from kazru.settings import MIB
from kazru.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.conftest import SPEECH_CLIP
from tests.e2e.conftest import API_KEY, stack_fixture
from tests.helpers import leftovers, wav_header

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CAP = 1 * MIB
MAX_DURATION_SECONDS = 30
FLAC = SPEECH_CLIP.read_bytes()
WAV_CLAIMING_4_GB = (
    b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE"
    + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    + b"data" + struct.pack("<I", 0xFFFFFFF0)
)  # fmt: skip


# No transcriber: nothing here needs a transcript, and accepted jobs are deleted while still
# queued, which must take their message off the queue too.
stack = stack_fixture(
    "bad-input", services=("ingest", "exporter", "janitor", "gateway"), max_upload_bytes=CAP,
    max_duration_seconds=MAX_DURATION_SECONDS,
)  # fmt: skip


@pytest.fixture(scope="module")
def mp3(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("mp3") / "clip.mp3"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(SPEECH_CLIP), "-b:a", "64k", str(path)], check=True)
    return path.read_bytes()


async def bus_state(settings) -> tuple[int, int]:
    """(messages waiting, last sequence ever published) of the jobs stream."""
    connection = await nats.connect(settings.nats_url)
    try:
        state = (await connection.jetstream().stream_info(settings.jobs_stream)).state
        return state.messages, state.last_seq
    finally:
        await connection.close()


async def snapshot(stack, store, database) -> dict:
    return {**await leftovers(store, database), "bus": await bus_state(stack.settings)}


def multipart(*parts: tuple[str, str | None, bytes], boundary="b0undary") -> tuple[bytes, dict]:
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def valid_flac(**refused: dict) -> dict:
    """httpx keyword arguments of an upload of a good FLAC file, with `refused` form fields or headers."""
    return {"files": {"file": ("a.flac", FLAC)}, **refused}


def refused_uploads(mp3: bytes) -> dict[str, tuple[dict, int, str]]:
    """id → (httpx keyword arguments, HTTP status, error code)."""
    two_files = multipart(("file", "a.flac", FLAC), ("file", "b.flac", FLAC))
    cut_short = multipart(("file", "a.flac", FLAC))[0][:-40]
    no_boundary = {"content": FLAC, "headers": {"Content-Type": "multipart/form-data"}}
    return {
        "empty": ({"files": {"file": ("empty.wav", b"")}}, 400, "EMPTY_FILE"),
        "one-byte": ({"files": {"file": ("one.wav", b"R")}}, 415, "NOT_AUDIO"),
        "text-named-mp3": ({"files": {"file": ("song.mp3", b"plain text, not audio at all\n" * 20)}}, 415, "NOT_AUDIO"),
        "truncated-mp3": ({"files": {"file": ("cut.mp3", mp3[:400])}}, 415, "AUDIO_UNDECODABLE"),
        "truncated-flac": ({"files": {"file": ("cut.flac", FLAC[:1000])}}, 415, "AUDIO_UNDECODABLE"),
        "wav-claiming-4gb-no-data": ({"files": {"file": ("huge.wav", WAV_CLAIMING_4_GB)}}, 415, "AUDIO_EMPTY"),
        "id3-tag-only": ({"files": {"file": ("tag.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x0a" + bytes(10))}}, 415,
                         "AUDIO_UNDECODABLE"),
        "over-the-cap-while-streaming": ({"files": {"file": ("big.wav", wav_header(CAP) + bytes(CAP - 43))}}, 413,
                                         "UPLOAD_TOO_LARGE"),
        "over-the-cap-declared": ({"files": {"file": ("big.wav", wav_header(2 * CAP) + bytes(2 * CAP))}}, 413,
                                  "UPLOAD_TOO_LARGE"),
        "no-file-field": ({"files": {"other": ("a.flac", b"fLaC")}}, 400, "FILE_FIELD_MISSING"),
        "file-in-another-field": ({"files": {"other": ("a.flac", FLAC)}}, 400, "FIELD_TOO_LONG"),
        "two-file-fields": ({"content": two_files[0], "headers": two_files[1]}, 400, "MULTIPLE_FILES"),
        "non-multipart-json": ({"content": b'{"file": "x"}', "headers": {"Content-Type": "application/json"}}, 400,
                               "NOT_MULTIPART"),
        "multipart-without-boundary": (no_boundary, 400, "NOT_MULTIPART"),
        "multipart-cut-short": ({"content": cut_short, "headers": multipart()[1]}, 400, "MALFORMED_MULTIPART"),
        "max-speakers-not-a-number": (valid_flac(data={"max_speakers": "many"}), 400, "INVALID_MAX_SPEAKERS"),
        "max-speakers-zero": (valid_flac(data={"max_speakers": "0"}), 400, "INVALID_MAX_SPEAKERS"),
        "max-speakers-eleven": (valid_flac(data={"max_speakers": "11"}), 400, "INVALID_MAX_SPEAKERS"),
        "unsupported-language": (valid_flac(data={"language": "fr"}), 400, "INVALID_LANGUAGE"),
        "language-garbage": (valid_flac(data={"language": "kk;DROP TABLE jobs"}), 400, "INVALID_LANGUAGE"),
        "bad-idempotency-key": (valid_flac(headers={"Idempotency-Key": "a b"}), 400, "INVALID_IDEMPOTENCY_KEY"),
    }  # fmt: skip


REFUSED_IDS = list(refused_uploads(b"").keys())


@pytest.mark.parametrize("case", REFUSED_IDS)
async def test_refused_upload_gets_its_error_and_leaves_nothing(stack, store, database, mp3, case):
    kwargs, status, code = refused_uploads(mp3)[case]
    before = await snapshot(stack, store, database)
    headers = {**AUTH, **kwargs.pop("headers", {})}
    async with httpx.AsyncClient(base_url=stack.http, timeout=30) as client:
        response = await client.post("/api/v1/upload", headers=headers, **kwargs)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
    await asyncio.sleep(0.2)  # a rejected upload's clean-up runs before the answer; this only catches stragglers
    assert await snapshot(stack, store, database) == before


@pytest.mark.parametrize(
    ("filename", "stored_as"),
    [("../../etc/passwd.flac", "passwd.flac"), ("..\\..\\boot.ini.flac", "boot.ini.flac"),
     ("a" * 1000 + ".flac", "a" * 250 + ".flac"), ("🎙️ интервью 2026 🇰🇿.flac", "🎙️ интервью 2026 🇰🇿.flac"),
     ("\x1b[31mred\x07\t.flac", "[31mred.flac")],
    ids=["path-traversal", "windows-traversal", "1000-chars", "emoji", "control-characters"],
)  # fmt: skip
async def test_hostile_names_are_tamed_and_deleting_leaves_a_tombstone_only(
    stack, store, database, filename, stored_as
):
    before = await snapshot(stack, store, database)
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as client:
        # Sent raw: httpx would percent-encode control characters in the name.
        body, headers = multipart(("file", filename, FLAC))
        response = await client.post("/api/v1/upload", content=body, headers=headers)
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["filename"] == stored_as
        assert len(job["filename"].encode()) <= 255
        assert [name for name, _ in await store.list_objects(f"jobs/{job['job_id']}/")] == [
            f"jobs/{job['job_id']}/original"
        ], "the name never reaches the object key"
        deleted = await client.delete(f"/api/v1/jobs/{job['job_id']}")
        assert deleted.status_code == 200 and deleted.json()["state"] == "DELETED"
    after = await snapshot(stack, store, database)
    assert after["objects"] == before["objects"] and after["multipart_uploads"] == before["multipart_uploads"]
    assert after["jobs"] == before["jobs"] + 1, "only the tombstone"
    assert after["bus"][0] == before["bus"][0], "the queued message went with the job"


async def test_a_recording_over_the_duration_limit_is_refused_by_name_and_leaves_nothing(
    stack, store, database, tmp_path
):
    # 40 s in 40 KB: far under the size cap, over the 30 s the stack takes.
    long = tmp_path / "long.mp3"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "40",
                    "-b:a", "8k", str(long)], check=True)  # fmt: skip
    before = await snapshot(stack, store, database)
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as client:
        response = await client.post("/api/v1/upload", files={"file": ("long.mp3", long.read_bytes())})
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (413, "RECORDING_TOO_LONG"), response.text
    assert error["details"]["max_duration_seconds"] == str(MAX_DURATION_SECONDS)
    assert "at most" in error["message"] and "h are accepted" in error["message"]
    await asyncio.sleep(0.2)
    assert await snapshot(stack, store, database) == before


async def test_wav_header_claiming_4_gb_is_taken_for_what_it_holds(stack):
    one_second = WAV_CLAIMING_4_GB + bytes(32000)
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as client:
        response = await client.post("/api/v1/upload", files={"file": ("liar.wav", one_second)})
        assert response.status_code == 202, response.text
        assert response.json()["audio"]["duration_seconds"] == pytest.approx(1.0, abs=0.01)
        await client.delete(f"/api/v1/jobs/{response.json()['job_id']}")


async def test_unknown_and_other_owners_ids_are_not_found_and_change_nothing(stack, store, database):
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as owner:
        job = (await owner.post("/api/v1/upload", files={"file": ("mine.flac", FLAC)})).json()
    before = await snapshot(stack, store, database)
    stranger = httpx.AsyncClient(base_url=stack.http, timeout=30)  # anonymous: its own session owner
    targets = [job["job_id"], "00000000-0000-0000-0000-000000000000", "not-a-uuid", "%2e%2e", "1' OR '1'='1"]
    for job_id in targets:
        for method, path in (("GET", ""), ("GET", "/transcript"), ("GET", "/export/txt"), ("DELETE", "")):
            # As the page would send it: with its CSRF token (a write without one is refused before lookup).
            csrf = {"X-CSRF-Token": stranger.cookies.get("kazru_csrf", "")}
            response = await stranger.request(method, f"/api/v1/jobs/{job_id}{path}", headers=csrf)
            assert response.status_code == 404, (method, job_id, path, response.text)
            assert response.json()["error"]["code"] in ("JOB_NOT_FOUND", "NOT_FOUND")
    await stranger.aclose()
    assert await snapshot(stack, store, database) == before
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as owner:
        assert (await owner.get(f"/api/v1/jobs/{job['job_id']}")).json()["state"] != "DELETED"


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [("/api/v1/jobs", {"page_token": "garbage"}, "INVALID_PAGE_TOKEN"), ("/api/v1/jobs", {"page_size": "0"},
     "INVALID_REQUEST"), ("/api/v1/jobs", {"page_size": "many"}, "INVALID_REQUEST"),
     ("/api/v1/jobs/00000000-0000-0000-0000-000000000000/export/exe", {}, "UNSUPPORTED_FORMAT")],
    ids=["bad-page-token", "page-size-zero", "page-size-text", "unknown-export-format"],
)  # fmt: skip
async def test_bad_query_values_are_400(stack, path, params, code):
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as client:
        response = await client.get(path, params=params)
    assert (response.status_code, response.json()["error"]["code"]) == (400, code)


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type"),
    [("PUT", "/speakers", b'{"speakers": {"S1": ', "application/json"),
     ("PUT", "/speakers", b"[1, 2, 3]", "application/json"),
     ("PUT", "/speakers", b'{"speakers": "S1=Aigerim"}', "application/json"),
     ("PUT", "/speakers", b"speakers=S1", "text/plain"),
     ("PATCH", "/segments/0", b'{"text": "unterminated', "application/json"),
     ("PATCH", "/segments/0", b"\xff\xfe{}", "application/json"),
     ("PATCH", "/segments/first", b'{"text": "x"}', "application/json")],
    ids=["put-speakers-cut-json", "put-speakers-array", "put-speakers-wrong-type", "put-speakers-not-json",
         "patch-segment-cut-json", "patch-segment-bad-utf8", "patch-segment-index-not-a-number"],
)  # fmt: skip
async def test_malformed_json_edits_are_400_and_change_nothing(stack, store, database, method, path, body,
                                                               content_type):  # fmt: skip
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as client:
        job = (await client.post("/api/v1/upload", files={"file": ("edit.flac", FLAC)})).json()
        before = await snapshot(stack, store, database)
        response = await client.request(method, f"/api/v1/jobs/{job['job_id']}{path}", content=body,
                                        headers={"Content-Type": content_type})  # fmt: skip
        assert (response.status_code, response.json()["error"]["code"]) == (400, "INVALID_REQUEST"), response.text
        assert await snapshot(stack, store, database) == before
        assert (await client.get(f"/api/v1/jobs/{job['job_id']}")).json()["state"] == "PENDING"
        await client.delete(f"/api/v1/jobs/{job['job_id']}")


def ffmpeg_output(*args: str) -> bytes:
    return subprocess.run([ffmpeg_exe(), "-v", "error", *args, "pipe:1"], check=True, capture_output=True).stdout


def wav_of_an_unknown_codec() -> bytes:
    """A well-formed WAV whose format tag (0x9999) names no codec anyone decodes."""
    return (b"RIFF" + struct.pack("<I", 36 + 32000) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 0x9999, 1, 16000, 32000, 2, 16)
            + b"data" + struct.pack("<I", 32000) + bytes(32000))  # fmt: skip


@pytest.fixture(scope="module")
def undecodable_uploads(mp3) -> dict[str, tuple[str, bytes, str]]:
    """id → (file name, bytes, error code): every way an upload can fail its checks, ffmpeg's above all."""
    video_without_sound = ffmpeg_output("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=2",
                                        "-c:v", "mpeg4", "-f", "matroska")  # fmt: skip
    too_long = ffmpeg_output("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", str(MAX_DURATION_SECONDS + 10),
                             "-b:a", "8k", "-f", "mp3")  # fmt: skip
    return {
        "empty": ("empty.wav", b"", "EMPTY_FILE"),
        "text-with-an-audio-name": ("song.mp3", b"plain text, not audio at all\n" * 20, "NOT_AUDIO"),
        "truncated-mp3": ("cut.mp3", mp3[:400], "AUDIO_UNDECODABLE"),
        "truncated-flac": ("cut.flac", FLAC[:1000], "AUDIO_UNDECODABLE"),
        "garbage-behind-a-wav-magic": ("noise.wav", b"RIFF\x10\x00\x00\x00WAVE" + bytes(range(256)) * 20,
                                       "AUDIO_UNDECODABLE"),
        "video-without-sound": ("film.mkv", video_without_sound, "NO_AUDIO_TRACK"),
        "unknown-codec": ("odd.wav", wav_of_an_unknown_codec(), "AUDIO_CODEC_UNSUPPORTED"),
        "too-long": ("long.mp3", too_long, "RECORDING_TOO_LONG"),
    }  # fmt: skip


UNDECODABLE_IDS = ["empty", "text-with-an-audio-name", "truncated-mp3", "truncated-flac", "garbage-behind-a-wav-magic",
                   "video-without-sound", "unknown-codec", "too-long"]  # fmt: skip
# What must never reach a client: internal addresses (the plaintext server ffmpeg reads from, with its secret
# path), ffmpeg's own words, file-system paths, and (below) token-like strings.
LEAKS = re.compile(
    r"https?://|127\.0\.0\.1|localhost|ffmpeg|Stream #|Error while|Invalid data found|trailing '\?'|\[in#|\[out#"
    r"|Input #|Output #|Conversion failed|(?<![\w.])/(?:tmp|work|home|var|usr|root|proc)\b",
    re.IGNORECASE,
)
# A secret such as secrets.token_urlsafe's: a long run of URL-safe characters mixing digits and both cases
# (error codes and detail names are upper or lower case words, without digits).
TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]{16,}")


def is_token_like(run: str) -> bool:
    return any(c.isdigit() for c in run) + any(c.islower() for c in run) + any(c.isupper() for c in run) >= 3


def assert_nothing_leaks(*seen: str) -> None:
    for text in seen:
        assert not LEAKS.search(text), f"leaked to the client: {LEAKS.search(text).group(0)!r} in {text!r}"
        tokens = [run for run in TOKEN_LIKE.findall(text) if is_token_like(run)]
        assert not tokens, f"a token-like string reached the client: {tokens} in {text!r}"


async def grpc_upload_error(stack, name: str, data: bytes) -> grpc.aio.AioRpcError:
    channel = grpc_server.channel(stack.settings.public_grpc_address)
    stub = job_service_pb2_grpc.JobServiceStub(channel)

    async def requests():
        yield job_service_pb2.UploadAudioRequest(metadata=job_service_pb2.UploadMetadata(filename=name))
        if data:
            yield job_service_pb2.UploadAudioRequest(chunk=data)
        yield job_service_pb2.UploadAudioRequest(complete=job_pb2.UploadComplete(size_bytes=len(data)))

    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.UploadAudio(requests(), metadata=(("authorization", f"Bearer {API_KEY}"),))
    finally:
        await channel.close()
    return caught.value


@pytest.mark.parametrize("case", UNDECODABLE_IDS)
async def test_refusals_say_what_is_wrong_without_leaking_internals_over_http_and_grpc(
    stack, store, database, undecodable_uploads, case
):
    name, data, code = undecodable_uploads[case]
    before = await snapshot(stack, store, database)
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as client:
        response = await client.post("/api/v1/upload", files={"file": (name, data)})
        openai = await client.post("/v1/audio/transcriptions", files={"file": (name, data)},
                                   data={"model": "whisper-1"})  # fmt: skip
    assert response.json()["error"]["code"] == code, response.text
    assert 400 <= response.status_code < 500 and 400 <= openai.status_code < 500, openai.text
    assert_nothing_leaks(response.text, openai.text)

    refused = await grpc_upload_error(stack, name, data)
    error = from_rpc_error(refused)
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and error.code == code, refused
    assert_nothing_leaks(refused.details() or "", error.message, repr(error.details), str(refused.debug_error_string()))

    await asyncio.sleep(0.2)  # a refused upload's clean-up runs before the answer; this only catches stragglers
    assert await snapshot(stack, store, database) == before


async def test_a_video_without_sound_is_called_so_not_damaged(stack, undecodable_uploads):
    name, data, _ = undecodable_uploads["video-without-sound"]
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as client:
        error = (await client.post("/api/v1/upload", files={"file": (name, data)})).json()["error"]
    assert "no sound track" in error["message"] and "damaged" not in error["message"]
    assert error["details"] == {}


JSON_EDIT_PATH = "/api/v1/jobs/00000000-0000-0000-0000-000000000000/speakers"
WRONG_KEY = {"Authorization": "Bearer not-a-registered-key"}


def answer_to_headers_alone(stack, headers: dict[str, str]) -> tuple[int, dict]:
    """Send a PUT whose headers promise a 200 MB JSON body but only its first bytes, and read the answer: one
    that comes at all was given without reading the body."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.settings.http_port, timeout=10)
    try:
        connection.putrequest("PUT", JSON_EDIT_PATH)
        for name, value in {**headers, "Content-Type": "application/json", "Content-Length": str(200 * MIB)}.items():
            connection.putheader(name, value)
        connection.endheaders(b'{"speakers": {"S1": "')
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


async def test_a_json_body_over_the_cap_is_refused_from_its_headers_and_a_wrong_key_before_its_body(stack):
    status, body = answer_to_headers_alone(stack, AUTH)
    assert (status, body["error"]["code"]) == (413, "BODY_TOO_LARGE")
    assert body["error"]["details"]["max_bytes"] == str(stack.settings.max_json_body_bytes)
    status, body = answer_to_headers_alone(stack, WRONG_KEY)
    assert (status, body["error"]["code"]) == (401, "INVALID_API_KEY")


def chunked_json(total_bytes: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """A JSON body of `total_bytes` as a generator: sent chunked, with no Content-Length to refuse it by."""
    yield b'{"speakers": {"S1": "'
    for _ in range(total_bytes // chunk):
        yield b"a" * chunk
    yield b'"}}'


@pytest.mark.parametrize(("headers", "status", "code"), [(AUTH, 413, "BODY_TOO_LARGE"),
                                                         (WRONG_KEY, 401, "INVALID_API_KEY")], ids=["key", "wrong-key"])
async def test_a_streamed_200_mb_json_body_does_not_grow_the_gateway(stack, headers, status, code):
    gateway = psutil.Process(stack.processes["gateway"].pid)
    baseline = gateway.memory_info().rss
    peak = baseline
    sending = True

    def sample() -> None:
        nonlocal peak
        while sending:
            peak = max(peak, gateway.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with httpx.Client(base_url=stack.http, headers=headers, timeout=120) as client:
            response = client.put(JSON_EDIT_PATH, content=chunked_json(200 * MIB),
                                  headers={"Content-Type": "application/json"})  # fmt: skip
    finally:
        sending = False
        sampler.join()
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert peak - baseline < 8 * MIB, f"the gateway grew by {(peak - baseline) / MIB:.1f} MiB"


async def test_an_idempotency_key_reused_with_another_file_or_options_is_422(stack, store, database, mp3):
    key = {"Idempotency-Key": f"reused-{uuid.uuid4()}"}
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as client:
        first = await client.post("/api/v1/upload", files={"file": ("a.flac", FLAC)}, headers=key)
        assert first.status_code == 202
        before = await snapshot(stack, store, database)
        for files, data in [({"file": ("a.mp3", mp3)}, {}), ({"file": ("a.flac", FLAC)}, {"language": "ru"})]:
            reused = await client.post("/api/v1/upload", files=files, data=data, headers=key)
            assert (reused.status_code, reused.json()["error"]["code"]) == (422, "IDEMPOTENCY_KEY_REUSED"), data
        assert await snapshot(stack, store, database) == before
        again = await client.post("/api/v1/upload", files={"file": ("a.flac", FLAC)}, headers=key)
        assert again.json()["job_id"] == first.json()["job_id"]
        await client.delete(f"/api/v1/jobs/{first.json()['job_id']}")


async def test_head_of_a_jobs_audio_answers_like_get_without_the_body(stack):
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as client:
        job = (await client.post("/api/v1/upload", files={"file": ("head.flac", FLAC)})).json()
        audio = f"/api/v1/jobs/{job['job_id']}/audio"
        whole, head = await client.get(audio), await client.head(audio)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == whole.headers["content-length"] == str(len(FLAC))
        assert head.headers["content-type"] == whole.headers["content-type"]
        part = await client.head(audio, headers={"Range": "bytes=0-99"})
        assert (part.status_code, part.headers["content-range"]) == (206, f"bytes 0-99/{len(FLAC)}")
        await client.delete(f"/api/v1/jobs/{job['job_id']}")


# A GetJobRequest whose `name` (field 1, a string) is not UTF-8, and an upload's metadata whose file name is not.
NOT_UTF8_GET_JOB = b"\x0a\x02\xff\xfe"
NOT_UTF8_UPLOAD_METADATA = b"\x0a\x04\x0a\x02\xff\xfe"


@pytest.mark.parametrize("method", ["GetJob", "UploadAudio"])
async def test_a_grpc_request_that_is_not_a_valid_message_is_invalid_argument_without_internals(stack, method):
    """protobuf refuses a string field that is not UTF-8; that is the caller's error (INVALID_ARGUMENT,
    MALFORMED_REQUEST), not UNKNOWN with protobuf's exception class and text."""
    channel = grpc_server.channel(stack.settings.public_grpc_address)
    metadata = (("authorization", f"Bearer {API_KEY}"),)
    path = f"/kazru.v1.JobService/{method}"
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            if method == "GetJob":
                await channel.unary_unary(path)(NOT_UTF8_GET_JOB, metadata=metadata, timeout=10)
            else:

                async def requests():
                    yield NOT_UTF8_UPLOAD_METADATA

                await channel.stream_unary(path)(requests(), metadata=metadata, timeout=10)
    finally:
        await channel.close()
    refused = caught.value
    error = from_rpc_error(refused)
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and error.code == "MALFORMED_REQUEST", refused
    assert "DecodeError" not in (refused.details() or "") and "class" not in (refused.details() or "")
