"""Bounded load: 10 clients upload 50 short clips at once. Every job ends terminal; none is
lost (50 accepted, 50 rows, 50 finished) and none is duplicated (one row per upload, one
attempt each, one set of segments each, the queue empty at the end)."""

import asyncio
import time
import uuid

import httpx
import nats
import pytest
from sqlalchemy import func, select

from kazru.db.models import Job, Segment
from tests.conftest import SPEECH_CLIP
from tests.e2e.conftest import API_KEY, stack_fixture

# One transcriber works through 50 jobs: minutes on a small machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

CLIENTS = 10
UPLOADS = 50
AUTH = {"Authorization": f"Bearer {API_KEY}"}


# The same clip fifty times (result reuse is off in every e2e stack): the engine works through all of them.
stack = stack_fixture("load")


async def test_fifty_uploads_from_ten_clients_all_finish_once(stack, database):
    data = SPEECH_CLIP.read_bytes()
    started = time.monotonic()

    async def client(number: int) -> list[str]:
        async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=120) as http:
            uploads = [
                http.post("/api/v1/upload", files={"file": (f"load-{number}-{n}.flac", data)},
                          headers={"Idempotency-Key": f"load-{uuid.uuid4()}"})
                for n in range(UPLOADS // CLIENTS)
            ]  # fmt: skip
            responses = await asyncio.gather(*uploads)
        assert all(r.status_code == 202 for r in responses), [r.text for r in responses if r.status_code != 202]
        return [r.json()["job_id"] for r in responses]

    job_ids = [job_id for ids in await asyncio.gather(*(client(n) for n in range(CLIENTS))) for job_id in ids]
    accepted = time.monotonic() - started
    assert len(set(job_ids)) == UPLOADS

    states: dict[str, str] = {}
    deadline = time.monotonic() + 600
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as http:
        while len(states) < UPLOADS and time.monotonic() < deadline:
            for job_id in set(job_ids) - set(states):
                job = (await http.get(f"/api/v1/jobs/{job_id}")).json()
                if job["state"] not in ("PENDING", "RUNNING"):
                    states[job_id] = job["state"]
            await asyncio.sleep(0.5)
    finished = time.monotonic() - started
    print(f"{UPLOADS} uploads accepted in {accepted:.1f}s, all finished in {finished:.1f}s")
    assert len(states) == UPLOADS, f"{UPLOADS - len(states)} jobs never finished"
    assert set(states.values()) == {"SUCCEEDED"}

    ids = [uuid.UUID(job_id) for job_id in job_ids]
    async with database() as session:
        rows = list(await session.scalars(select(Job).where(Job.id.in_(ids))))
        counted = await session.execute(
            select(Segment.job_id, func.count(), func.count(func.distinct(Segment.position)))
            .where(Segment.job_id.in_(ids))
            .group_by(Segment.job_id)
        )
        per_job = {job_id: (total, distinct) for job_id, total, distinct in counted.all()}
    assert len(rows) == UPLOADS
    assert [row.attempts for row in rows] == [1] * UPLOADS, "each job processed once"
    assert len(per_job) == UPLOADS and all(total == distinct for total, distinct in per_job.values())
    assert len({total for total, _ in per_job.values()}) == 1, "the same clip gives the same segments every time"

    connection = await nats.connect(stack.settings.nats_url)
    state = (await connection.jetstream().stream_info(stack.settings.jobs_stream)).state
    await connection.close()
    assert state.messages == 0, "nothing left on the queue"
