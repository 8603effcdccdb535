"""One upload is one trace: the gateway's HTTP app, ingest and exporter gRPC servers and the
transcription worker run in this process against the real PostgreSQL, NATS and S3, with
spans kept in memory. Context crosses real gRPC metadata and real NATS headers, exactly
as between processes. The engine is SpeechKit against its local fake (fast, and billed)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest_asyncio
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from kazru.adapters.bus import SUBJECT_UPLOADED
from kazru.adapters.storage import ObjectStore
from kazru.db.job_repository import JobRepository
from kazru.db.models import JobState
from kazru.domain.external_copies import NO_EXTERNAL_COPIES
from kazru.grpc import server as grpc_server
from kazru.observability import tracing
from kazru.settings import Settings, SpeechKitSettings
from kazru.v1 import events_pb2
from services.exporter.__main__ import create_server as create_exporter
from services.exporter.grpc_api import ExporterServicer
from services.gateway.auth import Authenticator
from services.gateway.core import create_gateway
from services.gateway.http_api import create_app
from services.ingest.__main__ import create_server as create_ingest
from services.ingest.uploads import UploadService
from services.transcriber.engines.speechkit import SpeechKitEngine
from services.transcriber.pipeline import TranscriptionPipeline, create_diarizer
from services.transcriber.worker import TranscriptionWorker
from tests.conftest import SPEECH_CLIP
from tests.fakes.speechkit_server import FakeSpeechKit, Scenario, Utterance
from tests.integration.test_transcriber import wait_for_state
from tests.tracing_support import spans  # noqa: F401 - fixture

API_KEY = "AQVN-tracing-test"
SPOKEN = Utterance(words=[("погода", 0.3, 0.9), ("сегодня", 1.0, 1.6), ("очень", 1.7, 2.2)],
                   languages=[("ru-RU", 0.95)], confidence=0.9)  # fmt: skip


@pytest_asyncio.fixture
async def fake_speechkit():
    server = FakeSpeechKit(api_key=API_KEY, scenario=Scenario(utterances=[SPOKEN]))
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture
async def stack(spans, infra, database, bus, fake_speechkit, scratch):  # noqa: F811 - `spans` first: channels get interceptors
    settings = infra.settings(
        engine="speechkit", speechkit=SpeechKitSettings(api_key=API_KEY, endpoint=fake_speechkit.address,
        operation_endpoint=fake_speechkit.address, tls=False, poll_initial_seconds=0.2),
        anonymous_access="shared", ingest_address="127.0.0.1:0", exporter_address="127.0.0.1:0",
        usage_cost_per_billed_minute=0.5,
    )  # fmt: skip
    store = ObjectStore(settings)
    await store.ensure_bucket()
    ingest = create_ingest(settings, UploadService(settings, JobRepository(database, settings), store, bus))
    exporter = create_exporter(settings, ExporterServicer(database))
    await ingest.start()
    await exporter.start()
    channels = {"ingest": grpc_server.channel(f"127.0.0.1:{ingest.port}"),
                "exporter": grpc_server.channel(f"127.0.0.1:{exporter.port}")}  # fmt: skip
    gateway = create_gateway(settings, database, bus, store, channels, NO_EXTERNAL_COPIES)
    app = create_app(settings, gateway, Authenticator(settings, database))
    engine = SpeechKitEngine(settings.speechkit, ffmpeg_path=settings.ffmpeg_path)
    worker = TranscriptionWorker(
        settings,
        JobRepository(database, settings),
        store,
        bus,
        TranscriptionPipeline(engine, create_diarizer(Settings())),
        scratch,
    )
    stop = asyncio.Event()
    working = asyncio.create_task(worker.run(stop))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
            yield client
    finally:
        stop.set()
        await asyncio.wait_for(working, 30)
        await engine.close()
        for chan in channels.values():
            await chan.close()
        await ingest.stop(0)
        await exporter.stop(0)


def by_name(finished) -> dict:
    named: dict = {}
    for span in finished:
        named.setdefault(span.name, []).append(span)
    return named


async def test_one_upload_is_one_trace_with_nested_spans(stack, spans, database):  # noqa: F811
    billed_before = REGISTRY.get_sample_value("kazru_engine_billed_seconds_total", {"engine": "speechkit"}) or 0.0
    response = await stack.post("/api/v1/upload", files={"file": ("clip.flac", SPEECH_CLIP.read_bytes())})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    job = await wait_for_state(database, uuid.UUID(job_id), {JobState.SUCCEEDED, JobState.FAILED}, timeout=30)
    assert job.state == JobState.SUCCEEDED, job.error_message

    named = by_name(spans.get_finished_spans())
    request = named["POST /api/v1/upload"][0]
    trace_id = request.context.trace_id
    # A client that keeps the trace context (traceparent) gets its export in the same trace.
    traceparent = f"00-{trace_id:032x}-{request.context.span_id:016x}-01"
    export = await stack.get(f"/api/v1/jobs/{job_id}/export/txt", headers={"traceparent": traceparent})
    assert export.status_code == 200 and "погода" in export.text

    named = by_name(spans.get_finished_spans())
    expected = ["POST /api/v1/upload", "upload", "kazru.v1.IngestService/Upload", "store", "transcribe", "queue wait",
                "decode", "diarization", "engine", "database write", "GET /api/v1/jobs/{job_id}/export/{fmt}",
                "kazru.v1.ExporterService/Render", "export"]  # fmt: skip
    one = {name: named[name][0] for name in expected}
    assert {span.context.trace_id for span in one.values()} == {trace_id}
    assert all(len(named[name]) == 1 for name in expected), {name: len(named[name]) for name in expected}

    def parent_of(name: str) -> str:
        parent_id = one[name].parent.span_id
        return next(other for other, span in one.items() if span.context.span_id == parent_id)

    assert parent_of("upload") == "POST /api/v1/upload"
    assert parent_of("kazru.v1.IngestService/Upload") == "upload"  # across gRPC metadata
    assert parent_of("store") == "kazru.v1.IngestService/Upload"
    assert parent_of("transcribe") == "kazru.v1.IngestService/Upload"  # across NATS headers
    for stage in ("queue wait", "decode", "diarization", "engine", "database write"):
        assert parent_of(stage) == "transcribe"
    assert parent_of("kazru.v1.ExporterService/Render") == "GET /api/v1/jobs/{job_id}/export/{fmt}"
    assert parent_of("export") == "kazru.v1.ExporterService/Render"
    assert one["POST /api/v1/upload"].parent is None  # the client sent no trace context: the root
    assert one["kazru.v1.IngestService/Upload"].kind == SpanKind.SERVER
    assert one["transcribe"].kind == SpanKind.CONSUMER

    # The queue wait runs from the upload's row to the worker's claim, and comes before decoding.
    queue_wait, decode = one["queue wait"], one["decode"]
    assert queue_wait.start_time < queue_wait.end_time <= decode.start_time
    waited = (queue_wait.end_time - queue_wait.start_time) / 1e9
    assert abs(waited - (job.started_at - job.created_at).total_seconds()) < 1e-3
    # Each stage lies inside its parent.
    transcribe = one["transcribe"]
    for stage in ("decode", "diarization", "engine", "database write"):
        assert transcribe.start_time <= one[stage].start_time <= one[stage].end_time <= transcribe.end_time

    # Metrics of the same run: the request counted by its route, the engine's billing recorded.
    assert (
        REGISTRY.get_sample_value(
            "kazru_requests_total", {"transport": "http", "method": "POST /api/v1/upload", "code": "202"}
        )
        >= 1
    )
    assert (
        REGISTRY.get_sample_value(
            "kazru_requests_total", {"transport": "grpc", "method": "/kazru.v1.IngestService/Upload", "code": "OK"}
        )
        >= 1
    )
    billed = REGISTRY.get_sample_value("kazru_engine_billed_seconds_total", {"engine": "speechkit"})
    assert billed - billed_before == job.billed_seconds > 0


async def test_trace_context_crosses_nats_in_the_message_headers(spans, bus, settings):  # noqa: F811
    job_id = str(uuid.uuid4())
    with tracing.span("publisher") as publisher:
        await bus.publish_uploaded(events_pb2.JobUploaded(job_id=job_id, owner_id="o"))
    subscription = await bus.js.pull_subscribe(SUBJECT_UPLOADED, durable="tracing-test", stream=settings.jobs_stream)
    try:
        [message] = await subscription.fetch(1, timeout=5)
        assert message.headers["Nats-Msg-Id"] == job_id
        with tracing.span("consumer", parent=tracing.extract(message.headers)) as consumer:
            pass
        await message.ack()
    finally:
        await subscription.unsubscribe()
    assert consumer.get_span_context().trace_id == publisher.get_span_context().trace_id
    assert consumer.parent.span_id == publisher.get_span_context().span_id


async def test_without_tracing_no_context_is_published(bus, settings):
    assert not tracing.enabled()
    await bus.publish_uploaded(events_pb2.JobUploaded(job_id=str(uuid.uuid4()), owner_id="o"))
    subscription = await bus.js.pull_subscribe(SUBJECT_UPLOADED, durable="tracing-off", stream=settings.jobs_stream)
    try:
        [message] = await subscription.fetch(1, timeout=5)
        await message.ack()
    finally:
        await subscription.unsubscribe()
    assert "traceparent" not in (message.headers or {})
