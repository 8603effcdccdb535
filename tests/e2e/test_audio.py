"""GET /api/v1/jobs/{id}/audio through the gateway process: the original object from S3 with HTTP
range requests (what the page's <audio> seeks with), owner-only, 410 once the job is gone. The object is
stored encrypted (kazru.adapters.encryption): S3 holds neither the audio nor its name, and ranges decrypt to the exact
bytes across the 64 KiB chunks."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import update

from kazru.adapters.encryption import CHUNK_BYTES, HEADER_BYTES, MAGIC
from kazru.db.models import Job
from tests.conftest import FIXTURES, SPEECH_CLIP
from tests.e2e.conftest import API_KEY, register_api_key, stack_fixture

AUTH = {"Authorization": f"Bearer {API_KEY}"}
INTRUDER_KEY = "audio-intruder-" + uuid.uuid4().hex
CLIP = SPEECH_CLIP.read_bytes()
SIZE = len(CLIP)
# Five whole encryption chunks and a partial one.
LONG_CLIP = (FIXTURES / "conversation_3spk.flac").read_bytes()
LONG_SIZE = len(LONG_CLIP)
# A name that must not reach the object store.
LONG_NAME = "Совещание_Ivanov_budget-2025.flac"


# No transcriber: the original recording is served whatever the job's state.
stack = stack_fixture("audio", services=("ingest", "gateway"))


@pytest.fixture(scope="module")
def client(stack):
    with httpx.Client(base_url=stack.http, headers=AUTH, timeout=30) as client:
        yield client


def upload(client: httpx.Client) -> str:
    response = client.post("/api/v1/upload", files={"file": (SPEECH_CLIP.name, CLIP, "audio/flac")})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def ranged_audio(
    client: httpx.Client, job_id: str, header: str, recording: bytes, start: int, end: int
) -> httpx.Response:
    """GET the job's audio with `Range: header`; asserts a 206 of exactly bytes start..end of `recording`."""
    response = client.get(f"/api/v1/jobs/{job_id}/audio", headers={"Range": header})
    assert response.status_code == 206, response.text
    assert response.content == recording[start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(recording)}"
    assert int(response.headers["content-length"]) == end - start + 1
    return response


@pytest.fixture(scope="module")
def job_id(client) -> str:
    return upload(client)


@pytest.fixture(scope="module")
def long_job_id(client) -> str:
    response = client.post("/api/v1/upload", files={"file": (LONG_NAME, LONG_CLIP, "audio/flac")})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def test_s3_holds_neither_the_audio_nor_its_name(client, long_job_id, store):
    key = f"jobs/{long_job_id}/original"
    response = store._client.get_object(store.bucket, key)  # straight from S3, past kazru
    try:
        stored = response.read()
    finally:
        response.close()
        response.release_conn()
    assert len(stored) > LONG_SIZE
    windows = {stored[i : i + 32] for i in range(len(stored) - 31)}
    assert not any(LONG_CLIP[i : i + 32] in windows for i in range(LONG_SIZE - 31)), "a 32-byte run of the audio"
    # A file's type would show at its start, where the envelope is. (A 3-4 byte magic anywhere else is
    # chance: b"ID3" turns up in about 1 in 46 random objects of this size; the 32-byte check above finds any run
    # of the file's own bytes, its header included.) Names are long enough to look for anywhere.
    assert stored.startswith(MAGIC)
    for magic in (b"fLaC", b"RIFF", b"OggS", b"ID3"):
        assert magic not in stored[: HEADER_BYTES + 16]
    for telltale in (LONG_NAME.encode(), b"Ivanov", b"audio/flac"):
        assert telltale not in stored
    stat = store._client.stat_object(store.bucket, key)
    described = " ".join(f"{name}={value}" for name, value in stat.metadata.items())
    assert "Ivanov" not in described and "flac" not in described.lower() and "audio" not in described.lower()
    assert stat.content_type == "application/octet-stream"
    assert {name.lower() for name in stat.metadata if name.lower().startswith("x-amz-meta-")} == {
        "x-amz-meta-kazru-key-id"
    }
    # What the owner gets back is the plaintext, and the job still knows its name.
    assert client.get(f"/api/v1/jobs/{long_job_id}/audio").content == LONG_CLIP
    assert client.get(f"/api/v1/jobs/{long_job_id}").json()["filename"] == LONG_NAME


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        (f"bytes={CHUNK_BYTES - 6}-{CHUNK_BYTES + 9}", CHUNK_BYTES - 6, CHUNK_BYTES + 9),  # across a boundary
        (f"bytes={CHUNK_BYTES}-{2 * CHUNK_BYTES - 1}", CHUNK_BYTES, 2 * CHUNK_BYTES - 1),  # one whole chunk
        (f"bytes={CHUNK_BYTES - 1}-{4 * CHUNK_BYTES}", CHUNK_BYTES - 1, 4 * CHUNK_BYTES),  # over several
        (f"bytes={5 * CHUNK_BYTES}-", 5 * CHUNK_BYTES, LONG_SIZE - 1),  # the last, partial chunk
        ("bytes=-10", LONG_SIZE - 10, LONG_SIZE - 1),
        (f"bytes={5 * CHUNK_BYTES - 3}-{LONG_SIZE + 99}", 5 * CHUNK_BYTES - 3, LONG_SIZE - 1),
    ],
)
def test_ranges_across_encryption_chunks_answer_exactly_those_bytes(client, long_job_id, header, start, end):
    ranged_audio(client, long_job_id, header, LONG_CLIP, start, end)


def test_a_range_just_past_the_long_recording_answers_416(client, long_job_id):
    response = client.get(f"/api/v1/jobs/{long_job_id}/audio", headers={"Range": f"bytes={LONG_SIZE}-"})
    assert (response.status_code, response.headers["content-range"]) == (416, f"bytes */{LONG_SIZE}")


def test_whole_recording_without_a_range(client, job_id):
    response = client.get(f"/api/v1/jobs/{job_id}/audio")
    assert response.status_code == 200
    assert response.content == CLIP
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "audio/flac"
    assert int(response.headers["content-length"]) == SIZE
    assert "content-range" not in response.headers


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=-100", SIZE - 100, SIZE - 1),
        ("bytes=1000-", 1000, SIZE - 1),
        (f"bytes=10-{SIZE + 5000}", 10, SIZE - 1),  # an end past the object is cut to its last byte
        (f"bytes=-{SIZE * 2}", 0, SIZE - 1),  # a suffix longer than the object is all of it
    ],
)
def test_ranges_answer_206_with_exactly_those_bytes(client, job_id, header, start, end):
    response = ranged_audio(client, job_id, header, CLIP, start, end)
    assert response.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"])
def test_unsatisfiable_ranges_answer_416(client, job_id, header):
    response = client.get(f"/api/v1/jobs/{job_id}/audio", headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    assert response.json()["error"]["code"] == "RANGE_NOT_SATISFIABLE"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=abc"])
def test_ranges_we_do_not_serve_are_ignored_for_the_whole_recording(client, job_id, header):
    response = client.get(f"/api/v1/jobs/{job_id}/audio", headers={"Range": header})
    assert response.status_code == 200
    assert response.content == CLIP


async def test_another_owner_gets_404_and_not_a_byte(stack, job_id, database):
    await register_api_key(database, "audio-intruder", INTRUDER_KEY)
    async with httpx.AsyncClient(base_url=stack.http) as intruder:
        for headers in ({"Authorization": f"Bearer {INTRUDER_KEY}"}, {}):  # another key; a new browser
            response = await intruder.get(f"/api/v1/jobs/{job_id}/audio", headers={**headers, "Range": "bytes=0-99"})
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "JOB_NOT_FOUND"
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH) as owner:
        missing = await owner.get(f"/api/v1/jobs/{uuid.uuid4()}/audio")
        assert missing.status_code == 404


def test_a_deleted_job_answers_410(client):
    job_id = upload(client)
    assert client.get(f"/api/v1/jobs/{job_id}/audio", headers={"Range": "bytes=0-0"}).status_code == 206
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 200
    gone = client.get(f"/api/v1/jobs/{job_id}/audio")
    assert (gone.status_code, gone.json()["error"]["code"]) == (410, "JOB_DELETED")


async def test_an_expired_job_answers_410(client, database):
    job_id = upload(client)
    async with database.begin() as session:
        await session.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(state="EXPIRED"))
    gone = client.get(f"/api/v1/jobs/{job_id}/audio")
    assert (gone.status_code, gone.json()["error"]["code"]) == (410, "JOB_EXPIRED")
