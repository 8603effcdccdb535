"""Upload rate limits per owner and per client address (HTTP 429 + Retry-After, gRPC RESOURCE_EXHAUSTED
with RetryInfo), and the security headers of the gateway's HTTP responses."""

from __future__ import annotations

import re
import uuid

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert

from kazru import grpc_server
from kazru.db.models import ApiKey, RateLimitEvent
from kazru.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from services.gateway.auth import hash_key
from tests.conftest import SPEECH_CLIP
from tests.e2e.conftest import API_KEY, start_stack, stop_stack

LIMIT = 2
OTHER_KEYS = {owner: f"{owner}-{uuid.uuid4().hex}" for owner in ("rate-second", "rate-third")}


@pytest.fixture(scope="module", autouse=True)
async def no_earlier_uploads_counted(database):
    """Limits are counted in the shared database: uploads that earlier test modules made from
    the same loopback address must not count against this module's."""
    async with database.begin() as session:
        await session.execute(delete(RateLimitEvent))


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    started = start_stack(
        infra, tmp_path_factory.mktemp("rate"), services=("ingest", "gateway"), upload_rate_limit_per_minute=LIMIT
    )
    try:
        yield started
        # No transcriber here: delete the jobs, so their queued messages do not wait for a later module's.
        for key in (API_KEY, *OTHER_KEYS.values()):
            with httpx.Client(base_url=started.http, headers={"Authorization": f"Bearer {key}"}) as client:
                for job in client.get("/api/v1/jobs", params={"page_size": 100}).json().get("jobs", []):
                    if job["state"] == "PENDING":  # (other modules' jobs of this key may have ended)
                        deleted = client.delete(f"/api/v1/jobs/{job['job_id']}")
                        assert deleted.status_code == 200, deleted.text
    finally:
        stop_stack(started)  # even when the clean-up fails: no server outlives the tests


@pytest.fixture(scope="module")
async def other_owners(database) -> dict[str, dict]:
    async with database.begin() as session:
        for owner, key in OTHER_KEYS.items():
            await session.execute(
                insert(ApiKey).values(id=uuid.uuid4(), owner_id=owner, name=owner, key_hash=hash_key(key))
                .on_conflict_do_nothing()
            )  # fmt: skip
    return {owner: {"Authorization": f"Bearer {key}"} for owner, key in OTHER_KEYS.items()}


async def upload_from(stack, source_address: str, headers: dict) -> httpx.Response:
    """An HTTP upload from a chosen loopback address (Linux routes all of 127.0.0.0/8 locally)."""
    transport = httpx.AsyncHTTPTransport(local_address=source_address)
    async with httpx.AsyncClient(base_url=stack.http, transport=transport, headers=headers, timeout=60) as client:
        with SPEECH_CLIP.open("rb") as audio:
            return await client.post("/api/v1/upload", files={"file": (SPEECH_CLIP.name, audio, "audio/flac")})


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_uploads_are_limited_per_owner_and_per_address(stack, other_owners):
    owner = {"Authorization": f"Bearer {API_KEY}"}
    for _ in range(LIMIT):
        assert (await upload_from(stack, "127.0.0.1", owner)).status_code == 202
    assert_rate_limited(await upload_from(stack, "127.0.0.1", owner))
    # Per owner: a new address does not help the same owner ...
    assert_rate_limited(await upload_from(stack, "127.0.0.2", owner))
    # ... per address: nor does another owner on the exhausted address.
    assert_rate_limited(await upload_from(stack, "127.0.0.1", other_owners["rate-second"]))
    # A refused attempt is not counted: the second owner still has its whole allowance elsewhere.
    for _ in range(LIMIT):
        assert (await upload_from(stack, "127.0.0.3", other_owners["rate-second"])).status_code == 202
    # Reading is not limited.
    async with httpx.AsyncClient(base_url=stack.http, headers=owner) as client:
        assert (await client.get("/api/v1/jobs")).status_code == 200


async def test_grpc_upload_over_the_limit_is_resource_exhausted_with_retry_info(stack, other_owners):
    # A fresh owner, from 127.0.0.1, which the HTTP test (or this one) has used up.
    metadata = (("authorization", other_owners["rate-third"]["Authorization"]),)
    data = SPEECH_CLIP.read_bytes()

    async def requests():
        yield job_service_pb2.UploadAudioRequest(metadata=job_service_pb2.UploadMetadata(filename="a.flac"))
        yield job_service_pb2.UploadAudioRequest(chunk=data)
        yield job_service_pb2.UploadAudioRequest(complete=job_pb2.UploadComplete(size_bytes=len(data)))

    async with grpc_server.channel(stack.settings.public_grpc_address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            for _ in range(LIMIT + 1):
                await stub.UploadAudio(requests(), metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(refused.value)
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and info.reason == "RATE_LIMITED"
    assert status.details[1].Unpack(retry) and 1 <= retry.retry_delay.seconds <= 60


async def test_security_headers_on_the_page_and_the_api(stack):
    async with httpx.AsyncClient(base_url=stack.http) as client:
        page = await client.get("/")
        api = await client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {API_KEY}"})
        missing = await client.get("/api/v1/no-such-route")
    for response in (page, api, missing):
        policy = response.headers["content-security-policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'" and directives["default-src"] == "'self'"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
    # The policy holds for the page as it is: every script and style is a file of the gateway's own.
    html = page.text
    assert re.findall(r"<script(?![^>]*\bsrc=\"/)[^>]*>", html) == []
    assert "<style" not in html and " style=" not in html and not re.search(r"\son[a-z]+=", html)
