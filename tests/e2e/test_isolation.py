"""No request of one owner reads, changes or deletes anything of another: every HTTP route with a
job in its path and every JobService RPC that names a job, found from the OpenAPI document and the
service descriptor (so a route or RPC added later is covered without touching this test)."""

from __future__ import annotations

import time
import uuid

import grpc
import httpx
import pytest

from kazru.v1 import export_pb2, job_service_pb2, job_service_pb2_grpc
from tests.conftest import SPEECH_CLIP
from tests.e2e.conftest import API_KEY, register_api_key

OWNER = {"Authorization": f"Bearer {API_KEY}"}
INTRUDER_KEY = "isolation-intruder-" + uuid.uuid4().hex
INTRUDER = {"Authorization": f"Bearer {INTRUDER_KEY}"}
# A valid body for every write, so that only ownership can refuse it.
BODIES = {
    ("put", "/api/v1/jobs/{job_id}/speakers"): {"speakers": {"S1": "Intruder"}},
    ("post", "/api/v1/jobs/{job_id}/speakers/{speaker}/merge"): {"into": "S1"},
    ("patch", "/api/v1/jobs/{job_id}/segments/{segment}"): {"text": "written by an intruder"},
}
PATH_VALUES = {"speaker": "S2", "segment": "0", "fmt": "txt"}


@pytest.fixture(scope="module")
async def intruder(database):
    await register_api_key(database, "isolation-intruder", INTRUDER_KEY)


@pytest.fixture(scope="module")
def finished_job(stack) -> str:
    with SPEECH_CLIP.open("rb") as audio:
        job = httpx.post(f"{stack.http}/api/v1/upload", headers=OWNER, files={"file": ("mine.flac", audio)}).json()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = httpx.get(f"{stack.http}/api/v1/jobs/{job['job_id']}", headers=OWNER).json()["state"]
        if state == "SUCCEEDED":
            return job["job_id"]
        assert state in ("PENDING", "RUNNING"), state
        time.sleep(0.2)
    raise TimeoutError(job)


def owners_view(stack, job_id: str) -> tuple:
    job = httpx.get(f"{stack.http}/api/v1/jobs/{job_id}", headers=OWNER).json()
    transcript = httpx.get(f"{stack.http}/api/v1/jobs/{job_id}/transcript", headers=OWNER).json()
    return job["state"], transcript["speakers"], [s["text"] for s in transcript["segments"]]


def job_routes(stack) -> list[tuple[str, str]]:
    document = httpx.get(f"{stack.http}/api/v1/openapi.json").json()
    routes = [
        (method, path)
        for path, operations in document["paths"].items()
        if "{job_id}" in path
        for method in operations
        if method in ("get", "put", "post", "patch", "delete")
    ]
    # The document really lists the job routes (more may be added: they are tested too).
    assert {("get", "/api/v1/jobs/{job_id}/transcript"), ("delete", "/api/v1/jobs/{job_id}"),
            ("patch", "/api/v1/jobs/{job_id}/segments/{segment}")} <= set(routes) and len(routes) >= 9  # fmt: skip
    return routes


async def test_every_http_route_answers_another_owner_404(stack, intruder, finished_job):
    before = owners_view(stack, finished_job)
    async with httpx.AsyncClient(base_url=stack.http, headers=INTRUDER, timeout=60) as client:
        for method, path in job_routes(stack):
            url = path.format(job_id=finished_job, **PATH_VALUES)
            response = await client.request(method.upper(), url, json=BODIES.get((method, path)))
            assert response.status_code == 404, (method, path, response.status_code, response.text[:200])
            assert response.headers["content-type"].startswith("application/json"), (method, path)
            assert response.json()["error"]["code"] == "JOB_NOT_FOUND", (method, path)
            assert "mine.flac" not in response.text and "S1" not in response.text
        listed = (await client.get("/api/v1/jobs")).json()
        assert finished_job not in str(listed)
    assert owners_view(stack, finished_job) == before


def rpc_requests(job_name: str) -> dict[str, object]:
    """A valid request naming the owner's job, for every RPC of JobService that names one."""
    service = job_service_pb2.DESCRIPTOR.services_by_name["JobService"]
    special = {
        "ExportTranscript": dict(format=export_pb2.ExportFormat.Value("EXPORT_FORMAT_TXT")),
        "UpdateSpeakers": dict(speaker_names={"S1": "Intruder"}),
        "MergeSpeakers": dict(speaker="S2", into="S1"),
        "UpdateSegment": dict(name=f"{job_name}/segments/0", text="written by an intruder"),
    }
    requests = {}
    for method in service.methods:
        request_class = getattr(job_service_pb2, method.input_type.name)
        if "name" not in method.input_type.fields_by_name:
            continue  # UploadAudio, ListJobs: they name no job
        fields = {"name": job_name, **special.get(method.name, {})}
        requests[method.name] = request_class(**fields)
    assert {"GetJob", "WatchJob", "GetTranscript", "ExportTranscript", "DeleteJob", "UpdateSpeakers",
            "MergeSpeakers", "UpdateSegment"} <= set(requests)  # fmt: skip
    return requests


async def refusal_of(stub, name: str, request, metadata) -> grpc.aio.AioRpcError:
    """Call one RPC (reading a stream to its end) and return the error it must answer."""
    call = getattr(stub, name)(request, metadata=metadata, timeout=30)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        if hasattr(call, "__aiter__"):
            async for _ in call:
                pass
        else:
            await call
    return refused.value


async def test_every_rpc_answers_another_owner_not_found(stack, intruder, finished_job):
    before = owners_view(stack, finished_job)
    metadata = (("authorization", f"Bearer {INTRUDER_KEY}"),)
    async with grpc.aio.insecure_channel(stack.settings.public_grpc_address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        for name, request in rpc_requests(f"jobs/{finished_job}").items():
            refused = await refusal_of(stub, name, request, metadata)
            assert refused.code() == grpc.StatusCode.NOT_FOUND, (name, refused.details())
        listed = await stub.ListJobs(job_service_pb2.ListJobsRequest(), metadata=metadata)
        assert all(job.job_id != finished_job for job in listed.jobs)
    assert owners_view(stack, finished_job) == before


async def test_every_rpc_refuses_a_caller_without_a_valid_key_and_health_stays_open(stack, finished_job):
    """One interceptor authenticates the whole service: every RPC (UploadAudio and ListJobs too)
    answers UNAUTHENTICATED to no key and to a wrong one, and changes nothing."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from kazru.grpc.errors import from_rpc_error

    before = owners_view(stack, finished_job)
    requests = {
        **rpc_requests(f"jobs/{finished_job}"),
        "ListJobs": job_service_pb2.ListJobsRequest(),
        "UploadAudio": None,  # a stream, made afresh for each call
    }
    async with grpc.aio.insecure_channel(stack.settings.public_grpc_address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        for metadata, code in [((), "API_KEY_REQUIRED"), ((("authorization", "Bearer not-a-key"),), "INVALID_API_KEY")]:
            for name, request in requests.items():
                if name == "UploadAudio":
                    request = iter([job_service_pb2.UploadAudioRequest(chunk=b"x")])
                refused = await refusal_of(stub, name, request, metadata)
                assert refused.code() == grpc.StatusCode.UNAUTHENTICATED, (name, refused.details())
                assert from_rpc_error(refused).code == code, name
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert owners_view(stack, finished_job) == before
