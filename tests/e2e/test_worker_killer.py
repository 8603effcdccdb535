"""A job that kills its worker on every attempt (issue 14: "ends FAILED with a reason after its
last attempt instead of taking workers down in a loop, and other jobs are unaffected").

A real transcriber process is killed with SIGKILL each time it is running that job - a worker
made to die, as the kernel's OOM killer would - and restarted at once, as Kubernetes would. The
decoded audio each one leaves on the disk is removed by the next one to start.
After the last delivery JetStream hands the job out no more, and the janitor fails it with
WORKER_LOST once its heartbeat has been silent for three ack waits. Jobs uploaded meanwhile and
afterwards succeed on the restarted transcriber.

Its own stack: a 2 s ack wait, 3 deliveries and a fast janitor, so the whole loop takes seconds.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from nats.js.errors import NotFoundError

from kazru.adapters.bus import TRANSCRIBER_CONSUMER, Bus
from kazru.db.models import Job
from kazru.dev.devservers import stop_process
from kazru.dev.devstack import service_environment, start_services
from services.janitor.expiry import LOST_AFTER_ACK_WAITS
from tests.conftest import SPEECH_CLIP
from tests.e2e.conftest import API_KEY, stack_fixture
from tests.helpers import long_speech

AUTH = {"Authorization": f"Bearer {API_KEY}"}
ACK_WAIT_SECONDS = 2.0
MAX_DELIVER = 3
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "DELETED"}


stack = stack_fixture(
    "killer", job_ack_wait_seconds=ACK_WAIT_SECONDS, job_max_deliver=MAX_DELIVER, janitor_interval_seconds=0.5
)


def upload(stack, data: bytes, name: str) -> str:
    response = httpx.post(f"{stack.http}/api/v1/upload", headers=AUTH, files={"file": (name, data)}, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def job_json(stack, job_id: str) -> dict:
    response = httpx.get(f"{stack.http}/api/v1/jobs/{job_id}", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_until(stack, job_id: str, states: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        job = job_json(stack, job_id)
        if job["state"] in states:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} not in {states} after {timeout}s: {job}")


async def row(database, job_id: str) -> Job:
    async with database() as session:
        return await session.get(Job, uuid.UUID(job_id))


async def wait_for_claim(database, job_id: str, attempt: int, timeout: float) -> None:
    """Until a worker has claimed the job for the `attempt`-th time (RUNNING, attempts counted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await row(database, job_id)
        if job.state == "RUNNING" and job.attempts == attempt:
            return
        assert job.attempts < attempt or job.state == "RUNNING", f"attempt {attempt}: {job.state}, {job.attempts}"
        await asyncio.sleep(0.1)
    raise TimeoutError(f"job {job_id} was not claimed a {attempt}. time within {timeout}s")


def restart_transcriber(stack, logs) -> None:
    """A new transcriber process, as Kubernetes starts one after its container died."""
    stack.processes.update(start_services(service_environment(stack.settings), logs, ("transcriber",)))


async def test_job_that_kills_its_worker_every_time_fails_after_its_last_attempt(stack, database, tmp_path):
    killer = upload(stack, long_speech(tmp_path / "long.flac"), "killer.flac")
    others = []
    for attempt in range(1, MAX_DELIVER + 1):
        await wait_for_claim(database, killer, attempt, timeout=60)
        await asyncio.sleep(0.5)  # into its work: decoding, the engine
        assert (await row(database, killer)).state == "RUNNING", "finished before it could kill its worker"
        stop_process(stack.processes["transcriber"], grace=0, sig=9)  # kill -9: no nak, no clean-up
        if attempt == 1:  # uploaded while the poison job goes round
            others.append(upload(stack, SPEECH_CLIP.read_bytes(), "meanwhile.flac"))
        restart_transcriber(stack, tmp_path / "logs")

    # JetStream hands it out no more; the janitor fails it once its heartbeat is silent long enough.
    killed_at = time.monotonic()
    job = wait_until(stack, killer, TERMINAL, timeout=LOST_AFTER_ACK_WAITS * ACK_WAIT_SECONDS + 30)
    lost_after = time.monotonic() - killed_at
    assert job["state"] == "FAILED", job
    assert job["error"]["code"] == "WORKER_LOST", job["error"]
    assert f"{MAX_DELIVER} attempts" in job["error"]["message"], job["error"]
    assert job["finished_at"] is not None
    failed = await row(database, killer)
    assert (failed.state, failed.error_code, failed.attempts) == ("FAILED", "WORKER_LOST", MAX_DELIVER)
    assert lost_after >= LOST_AFTER_ACK_WAITS * ACK_WAIT_SECONDS - 2, "failed before its heartbeat went silent"

    # Other jobs are unaffected: the one uploaded meanwhile and one uploaded now succeed, each at its first try.
    others.append(upload(stack, SPEECH_CLIP.read_bytes(), "afterwards.flac"))
    for other in others:
        assert wait_until(stack, other, TERMINAL, timeout=60)["state"] == "SUCCEEDED", job_json(stack, other)
        assert (await row(database, other)).attempts == 1

    # Not handed out again: no message of it left in the stream, nothing pending on the consumer,
    # and it stays as the janitor left it while the (living) transcriber waits for work.
    bus = await Bus.connect(stack.settings, "tests-killer")
    try:
        assert failed.queue_sequence is not None, "its enqueue was confirmed"
        with pytest.raises(NotFoundError):
            await bus.js.get_msg(stack.settings.jobs_stream, failed.queue_sequence)
        await asyncio.sleep(ACK_WAIT_SECONDS * 1.5)  # longer than a redelivery would take
        for _ in range(30):  # between two of its fetches an idle worker has no pull request open
            consumer = await bus.js.consumer_info(stack.settings.jobs_stream, TRANSCRIBER_CONSUMER)
            assert (consumer.num_pending, consumer.num_ack_pending) == (0, 0)
            if consumer.num_waiting:
                break
            await asyncio.sleep(0.1)
        assert consumer.num_waiting >= 1, "the transcriber is alive and idle"
    finally:
        await bus.close()
    after = await row(database, killer)
    assert (after.state, after.attempts, after.updated_at) == ("FAILED", MAX_DELIVER, failed.updated_at)
    assert stack.processes["transcriber"].poll() is None

    # Each killed transcriber left the job's decoded audio on the disk; the next one to start removed it.
    # What remains is the living transcriber's own folder, holding no job.
    [living] = stack.settings.scratch_dir.glob("worker-*")
    assert [path.name for path in living.iterdir()] == [".lock"]
