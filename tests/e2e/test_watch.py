"""Live job updates through the gateway process: HTTP Server-Sent Events and the gRPC WatchJob stream.

The stack starts without a transcriber, so a job is watched while it is surely PENDING; the
transcriber joins afterwards. The row re-check interval is set far beyond the test's time, so
the streams can only follow the job (and end) through the bus events.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import grpc
import httpx
import pytest

from kazru.dev.devstack import service_environment, start_services
from kazru.grpc import server as grpc_server
from kazru.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.conftest import SPEECH_CLIP
from tests.e2e.conftest import API_KEY, register_api_key, start_stack, stop_stack

AUTH = {"Authorization": f"Bearer {API_KEY}"}
INTRUDER_KEY = "watch-intruder-" + uuid.uuid4().hex
ORDER = ["PENDING", "RUNNING", "SUCCEEDED"]
HEARTBEAT_SECONDS = 0.3


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    started = start_stack(
        infra, tmp_path_factory.mktemp("watch"), services=("ingest", "exporter", "janitor", "gateway"),
        sse_heartbeat_seconds=HEARTBEAT_SECONDS, watch_recheck_seconds=600,
    )  # fmt: skip
    yield started
    stop_stack(started)


def ensure_transcriber(stack, logs) -> None:
    if "transcriber" not in stack.processes:
        stack.processes.update(start_services(service_environment(stack.settings), logs, ("transcriber",)))


@pytest.fixture(scope="module")
async def intruder(database):
    return await register_api_key(database, "watch-intruder", INTRUDER_KEY)


async def upload(client: httpx.AsyncClient, path=SPEECH_CLIP) -> str:
    with path.open("rb") as audio:
        response = await client.post("/api/v1/upload", files={"file": (path.name, audio, "audio/flac")})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


async def read_events(response: httpx.Response, received: list, comments: list) -> None:
    """Parse the SSE body: `data:` lines are jobs (one per message), `:` lines are heartbeats."""
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            received.append(json.loads(line.removeprefix("data: ")))
        elif line.startswith(":"):
            comments.append(line)
        else:
            assert line == "", f"unexpected line {line!r}"


def assert_orderly(states: list[str], progress: list[int]) -> None:
    assert states[-1] == "SUCCEEDED" and progress[-1] == 100
    assert [ORDER.index(state) for state in states] == sorted(ORDER.index(state) for state in states)
    assert progress == sorted(progress), progress


async def test_sse_follows_a_job_from_pending_to_succeeded_and_ends(stack, tmp_path):
    received: list[dict] = []
    comments: list[str] = []
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as client:
        job_id = await upload(client)
        async with client.stream("GET", f"/api/v1/jobs/{job_id}/status") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-store"
            reading = asyncio.create_task(read_events(response, received, comments))
            # No worker yet: the job stays PENDING and only heartbeats flow.
            await asyncio.sleep(HEARTBEAT_SECONDS * 4)
            assert [job["state"] for job in received] == ["PENDING"] and received[0]["job_id"] == job_id
            assert len(comments) >= 2
            ensure_transcriber(stack, tmp_path)
            await asyncio.wait_for(reading, timeout=120)  # the server ends the stream after SUCCEEDED
    assert_orderly([job["state"] for job in received], [job["progress"] for job in received])
    assert received[-1]["finished_at"] is not None and received[-1]["error"] is None
    assert len({(job["state"], job["progress"]) for job in received}) == len(received), "each message is a change"


async def test_grpc_watch_streams_until_terminal_and_a_finished_job_once(stack, tmp_path):
    ensure_transcriber(stack, tmp_path)
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as client:
        job_id = await upload(client)
    metadata = (("authorization", f"Bearer {API_KEY}"),)
    async with grpc_server.channel(stack.settings.public_grpc_address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        request = job_service_pb2.WatchJobRequest(name=f"jobs/{job_id}")
        watched = [job async for job in stub.WatchJob(request, metadata=metadata, timeout=120)]
        assert watched[0].state in (job_pb2.Job.PENDING, job_pb2.Job.RUNNING)
        assert all(job.name == f"jobs/{job_id}" for job in watched)
        assert_orderly([job_pb2.Job.State.Name(job.state) for job in watched], [job.progress for job in watched])

        again = [job async for job in stub.WatchJob(request, metadata=metadata, timeout=10)]
        assert len(again) == 1 and again[0].state == job_pb2.Job.SUCCEEDED


async def test_another_owner_cannot_watch(stack, intruder):
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH, timeout=30) as client:
        job_id = await upload(client)
        foreign = await client.get(f"/api/v1/jobs/{job_id}/status", headers=intruder)
        unknown = await client.get(f"/api/v1/jobs/{uuid.uuid4()}/status")
        # Deleting it ends a watch at once (the cancel signal wakes it) and spares the transcriber the work.
        async with client.stream("GET", f"/api/v1/jobs/{job_id}/status") as watching:
            assert (await client.delete(f"/api/v1/jobs/{job_id}")).status_code == 200
            received: list[dict] = []
            await asyncio.wait_for(read_events(watching, received, []), timeout=20)
        # (SUCCEEDED only if a worker finished the clip between the upload and the delete.)
        assert received[-1]["state"] in ("DELETED", "SUCCEEDED")
    for response in (foreign, unknown):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]["code"] == "JOB_NOT_FOUND"

    async with grpc_server.channel(stack.settings.public_grpc_address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        intruder_metadata = (("authorization", intruder["Authorization"]),)
        call = stub.WatchJob(job_service_pb2.WatchJobRequest(name=f"jobs/{job_id}"), metadata=intruder_metadata)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
