"""Upload rate limits: per API key alone, per anonymous session and its client address (HTTP 429 +
Retry-After, gRPC RESOURCE_EXHAUSTED with RetryInfo), and the security headers of the gateway's HTTP
responses."""

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

from kazru.db.models import ApiKey, RateLimitEvent
from kazru.grpc import server as grpc_server
from kazru.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from services.gateway.auth import hash_key
from tests.conftest import SPEECH_CLIP
from tests.e2e.conftest import API_KEY, start_stack, stop_stack

LIMIT = 2
ADDRESS_LIMIT = 3
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
        infra, tmp_path_factory.mktemp("rate"), services=("ingest", "gateway"),
        upload_rate_limit_per_minute=LIMIT, anonymous_address_upload_rate_limit_per_minute=ADDRESS_LIMIT,
    )  # fmt: skip
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
    async with httpx.AsyncClient(base_url=stack.http, transport=transport, timeout=60) as client:
        return await upload_with(client, headers)


async def upload_with(client: httpx.AsyncClient, headers: dict) -> httpx.Response:
    with SPEECH_CLIP.open("rb") as audio:
        files = {"file": (SPEECH_CLIP.name, audio, "audio/flac")}
        return await client.post("/api/v1/upload", files=files, headers=headers)


class BrowserSession:
    """An anonymous caller with its own session cookie, sending from one loopback address."""

    def __init__(self, stack, address: str):
        self.stack, self.address = stack, address
        self.client = httpx.AsyncClient(
            base_url=stack.http, transport=httpx.AsyncHTTPTransport(local_address=address), timeout=60
        )
        self.jobs: list[str] = []

    async def upload(self) -> httpx.Response:
        if "kazru_csrf" not in self.client.cookies:
            await self.client.get("/api/v1/jobs")  # the session and its CSRF token, as the page gets them
        headers = {"X-CSRF-Token": self.client.cookies["kazru_csrf"]}
        response = await upload_with(self.client, headers)
        if response.status_code == 202:
            self.jobs.append(response.json()["job_id"])
        return response

    async def close(self) -> None:
        # No transcriber here: delete the jobs, so their queued messages do not wait for a later module's.
        headers = {"X-CSRF-Token": self.client.cookies.get("kazru_csrf", "")}
        for job_id in self.jobs:
            assert (await self.client.delete(f"/api/v1/jobs/{job_id}", headers=headers)).status_code == 200
        await self.client.aclose()


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_an_api_key_is_limited_by_itself_alone(stack, other_owners):
    owner = {"Authorization": f"Bearer {API_KEY}"}
    for _ in range(LIMIT):
        assert (await upload_from(stack, "127.0.0.1", owner)).status_code == 202
    assert_rate_limited(await upload_from(stack, "127.0.0.1", owner))
    # Per key: a new address does not help the same key ...
    assert_rate_limited(await upload_from(stack, "127.0.0.2", owner))
    # ... and another key on the same address is not held back by it: all of its allowance is its own.
    for _ in range(LIMIT):
        assert (await upload_from(stack, "127.0.0.1", other_owners["rate-second"])).status_code == 202
    assert_rate_limited(await upload_from(stack, "127.0.0.1", other_owners["rate-second"]))
    # Reading is not limited.
    async with httpx.AsyncClient(base_url=stack.http, headers=owner) as client:
        assert (await client.get("/api/v1/jobs")).status_code == 200


async def test_anonymous_sessions_are_limited_each_and_together_per_address(stack):
    first, second, elsewhere = (BrowserSession(stack, address) for address in ("127.0.0.5", "127.0.0.5", "127.0.0.6"))
    try:
        for _ in range(LIMIT):
            assert (await first.upload()).status_code == 202
        assert_rate_limited(await first.upload())  # the session's own limit
        # A new session (a cleared cookie) on the same address shares the address's allowance: one left.
        assert (await second.upload()).status_code == 202
        refused = await second.upload()
        assert_rate_limited(refused)
        assert f"at most {ADDRESS_LIMIT} uploads" in refused.json()["error"]["message"]
        # Another address is another allowance; API keys never count here (the test above used 127.0.0.1).
        assert (await elsewhere.upload()).status_code == 202
    finally:
        for session in (first, second, elsewhere):
            await session.close()


async def test_grpc_upload_over_the_limit_is_resource_exhausted_with_retry_info(stack, other_owners):
    # A key of its own: the limit it reaches is its own, by gRPC as by HTTP.
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
