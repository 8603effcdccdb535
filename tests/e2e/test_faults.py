"""Faults on the real stack: a transcriber killed with SIGKILL mid-job, NATS, PostgreSQL and S3
restarted while jobs flow, S3 down at upload. Every job still ends in a terminal state, once.

The stack runs with a short ack wait, so JetStream hands a dead worker's job to the next
worker within seconds, and a fast janitor, so the outbox relay republishes quickly.
"""

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from kazru.db.models import Job, JobState, Segment
from kazru.dev.devservers import stop_process
from kazru.dev.devstack import service_environment, start_services
from tests.conftest import SPEECH_CLIP
from tests.e2e.conftest import API_KEY, stack_fixture
from tests.helpers import leftovers, long_speech

AUTH = {"Authorization": f"Bearer {API_KEY}"}
ACK_WAIT_SECONDS = 5.0
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "DELETED"}


stack = stack_fixture(
    "faults", job_ack_wait_seconds=ACK_WAIT_SECONDS, janitor_interval_seconds=1.0, enqueue_retry_after_seconds=2.0
)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> bytes:
    return long_speech(tmp_path_factory.mktemp("long") / "long.flac", repeats=1)


def upload(stack, data: bytes, name="clip.flac") -> str:
    response = httpx.post(f"{stack.http}/api/v1/upload", headers=AUTH, files={"file": (name, data)}, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def wait_until(stack, job_id: str, states: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        try:
            job = httpx.get(f"{stack.http}/api/v1/jobs/{job_id}", headers=AUTH, timeout=10).json()
            if job.get("state") in states:
                return job
        except (httpx.HTTPError, ValueError):
            pass  # a dependency is restarting
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} not in {states} after {timeout}s: {job}")


def replace_transcriber(stack) -> None:
    logs = Path(tempfile.mkdtemp(prefix="kazru-fault-logs-"))
    new = start_services(service_environment(stack.settings), logs, ("transcriber",))
    stack.processes["transcriber"] = new["transcriber"]


async def segments_of(database, job_id: str) -> list[Segment]:
    async with database() as session:
        query = select(Segment).where(Segment.job_id == uuid.UUID(job_id)).order_by(Segment.position)
        return list(await session.scalars(query))


async def test_killed_transcriber_job_completes_on_the_next_worker_without_duplicates(stack, database, long_clip):
    job_id = upload(stack, long_clip, "long.flac")
    wait_until(stack, job_id, {"RUNNING"}, timeout=60)
    await asyncio.sleep(1.5)  # well into the engine's work
    assert wait_until(stack, job_id, {"RUNNING"}, timeout=1)["state"] == "RUNNING", "finished before the kill"
    stop_process(stack.processes["transcriber"], grace=0, sig=9)  # kill -9: no clean-up, no nak
    replace_transcriber(stack)

    job = wait_until(stack, job_id, TERMINAL, timeout=240)
    assert job["state"] == "SUCCEEDED", job["error"]
    async with database() as session:
        row = await session.get(Job, uuid.UUID(job_id))
    assert row.attempts == 2, "one attempt killed, one completed"
    segments = await segments_of(database, job_id)
    assert segments, "the transcript is there"
    assert [s.position for s in segments] == list(range(len(segments)))
    assert len({(s.start_seconds, s.text) for s in segments}) == len(segments), "no duplicated segments"
    assert all(a.start_seconds <= b.start_seconds for a, b in zip(segments, segments[1:], strict=False))


async def test_restarting_nats_postgres_and_s3_mid_flow_every_job_ends(stack, infra):
    data = SPEECH_CLIP.read_bytes()
    job_ids = [upload(stack, data, f"flow-{n}.flac") for n in range(6)]
    for server in (infra.nats, infra.postgres, infra.s3):
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.start)
    # After all three restarts the services take new uploads again, without being restarted.
    for _ in range(100):
        response = httpx.post(f"{stack.http}/api/v1/upload", headers=AUTH, files={"file": ("after.flac", data)},
                              timeout=60)  # fmt: skip
        if response.status_code == 202:
            job_ids.append(response.json()["job_id"])
            break
        assert response.status_code == 503, response.text
        await asyncio.sleep(0.5)
    else:
        raise AssertionError("the stack did not take uploads again")
    finished = [wait_until(stack, job_id, TERMINAL, timeout=240) for job_id in job_ids]
    assert [job["state"] for job in finished] == ["SUCCEEDED"] * len(job_ids), [j["error"] for j in finished]


async def test_s3_down_at_upload_is_503_and_leaves_no_row(stack, infra, store, database):
    before = await leftovers(store, database)
    infra.s3.stop()
    try:
        response = httpx.post(f"{stack.http}/api/v1/upload", headers=AUTH,
                              files={"file": ("down.flac", SPEECH_CLIP.read_bytes())}, timeout=60)  # fmt: skip
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "STORAGE_UNAVAILABLE"
        async with database() as session:
            count = len(list(await session.scalars(select(Job.id))))
        assert count == before["jobs"]
    finally:
        infra.s3.start()
    assert await leftovers(store, database) == before
    assert JobState.SUCCEEDED.value in TERMINAL
