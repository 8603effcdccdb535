"""schemathesis against the running gateway: every operation of /api/v1/openapi.json, with its examples,
schemathesis' coverage cases and generated valid and invalid requests, must answer without a server error
and as its OpenAPI description says (status code documented, content type and body as documented).

Job ids are either generated (unknown: 404) or, for every other example, a finished job of the key's
owner, so the transcript, export, edit and audio routes answer with real data too. DELETE gets a job of
its own, so the other operations keep theirs. One operation is left out: the OpenAI-compatible
transcription answers when its job ends, which needs the transcriber this stack lacks; the official
`openai` client drives it in test_openai_api.py. The SSE status stream ends at once for an unknown job
(404) and after its first message for a finished or deleted one.
Deterministic (derandomized); about 700 requests in all.
"""

from __future__ import annotations

import json
import re
import zlib

import httpx
import pytest

# Pinned with the project's test dependencies; skipped (not failed) in a venv made before the pin.
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kazru.settings import Settings  # noqa: E402
from services.gateway.auth import BOOTSTRAP_OWNER  # noqa: E402
from services.gateway.http_api import create_app  # noqa: E402
from tests.e2e.conftest import API_KEY, start_stack, stop_stack  # noqa: E402
from tests.helpers import store_finished_job  # noqa: E402

AUTH = {"Authorization": f"Bearer {API_KEY}"}
EXAMPLES_PER_OPERATION = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# This stack runs without the transcriber and the janitor, so health answers its documented 503 (with
# the failed checks named); test_pipeline.py sees 200 from a whole stack. Its body is still checked.
WHOLE_STACK_ONLY = {("GET", "/api/v1/health"): [not_a_server_error]}


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    # No transcriber: uploads that pass ingest stay PENDING, which is all these requests need.
    started = start_stack(infra, tmp_path_factory.mktemp("fuzz"), services=("ingest", "exporter", "gateway"))
    yield started
    stop_stack(started)


@pytest.fixture(scope="module")
async def finished_jobs(stack, database, store) -> dict[str, str]:
    readable = await store_finished_job(database, store, owner=BOOTSTRAP_OWNER)
    deletable = await store_finished_job(database, store, owner=BOOTSTRAP_OWNER)
    return {"readable": str(readable.id), "deletable": str(deletable.id)}


# The document is the app's own, built without servers, so that every operation is its own test item;
# test_the_gateway_serves_this_document checks that the running gateway serves the same one.
# Defaults, not this environment's KAZRU_* (the document does not depend on them).
DOCUMENT = create_app(Settings.model_construct(), gateway=None, auth=None).openapi()  # type: ignore[arg-type]
schema = schemathesis.openapi.from_dict(DOCUMENT).exclude(method="POST", path="/v1/audio/transcriptions")
# Per operation: its examples, schemathesis' coverage cases (boundaries, missing and wrong-typed values,
# other methods), then this many generated requests, valid and invalid.
schema.config.generation.update(modes=["positive", "negative"], max_examples=EXAMPLES_PER_OPERATION)


def test_the_gateway_serves_this_document(stack):
    assert httpx.get(f"{stack.http}/api/v1/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip
def test_operation_answers_as_documented(case, stack, finished_jobs):
    if "job_id" in (case.path_parameters or {}) and zlib.crc32(repr(case.path_parameters).encode()) % 2:
        case.path_parameters["job_id"] = finished_jobs["deletable" if case.method == "DELETE" else "readable"]
    excluded = WHOLE_STACK_ONLY.get((case.method, case.path), [])
    checks = [check for check in CHECKS if check not in excluded]
    case.call_and_validate(base_url=stack.http, headers=AUTH, checks=checks, timeout=30)


def test_docs_need_nothing_from_outside_the_gateway(stack):
    pytest.importorskip("fastapi_offline")
    with httpx.Client(base_url=stack.http) as client:
        page = client.get("/api/v1/docs")
        document = client.get("/api/v1/openapi.json").json()
        loaded = [client.get(path) for path in re.findall(r'(?:src|href)="([^"]+)"', page.text)]
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert len(loaded) >= 3 and all(response.status_code == 200 for response in loaded)
    assert all(str(response.url).startswith(stack.http) for response in loaded)
    assert "<script>" not in page.text  # no inline script: the policy allows scripts from 'self' only
    policy = page.headers["content-security-policy"]
    assert "http" not in policy and "script-src 'self';" in policy
    # Validation errors are 400 with the one error body, so FastAPI's 422 shape is nowhere in the document.
    assert "HTTPValidationError" not in str(document)
    # The only 422s: the OpenAI-compatible route's job that failed after its upload, in OpenAI's error shape, and
    # an upload that reuses an Idempotency-Key with another request (IETF Idempotency-Key draft).
    with_422 = {
        path for path, operations in document["paths"].items() for op in operations.values() if "422" in op["responses"]
    }
    assert with_422 == {"/v1/audio/transcriptions", "/api/v1/upload"}
    assert "IDEMPOTENCY_KEY_REUSED" in json.dumps(document["paths"]["/api/v1/upload"]["post"]["responses"]["422"])
    assert document["paths"]["/api/v1/jobs/{job_id}"]["get"]["parameters"][0]["schema"]["format"] == "uuid"
