"""The stack as processes, each with its own metrics port and tracing to a local OTLP receiver:
after a real upload, Prometheus metrics of every service and /api/v1/status; the upload as one
connected trace across gateway, ingest, transcriber and exporter; then the logs of the whole
run scanned: JSON lines with time, level and service, job and trace ids, and none of the
transcript's words, edited text, the upload's file name, the API key (right or wrong) or the
S3 secret."""

from __future__ import annotations

import json
import random
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kazru.dev.devstack import SERVICES, Servers
from tests.conftest import REAL_SPEECH_CLIP, REAL_SPEECH_SECONDS, REAL_SPEECH_WORDS
from tests.e2e.conftest import API_KEY, Stack, start_stack, stop_stack
from tests.fakes.otlp_collector import OtlpTraceCollector

AUTH = {"Authorization": f"Bearer {API_KEY}"}
WRONG_KEY = "wrong-key-5d1e0b7a9c3f"
FILENAME = "секретное-интервью-7c1f.flac"
EDITED_TEXT = "Тайная правка 42b9"
SPEAKER_NAME = "Айгерім Секретова"
METRICS_SERVICES = ("gateway", "ingest", "exporter", "transcriber", "janitor")
# The client's own trace context (W3C): its upload and its export then belong to one trace.
CLIENT_TRACE_ID = secrets.token_hex(16)
CLIENT_SPAN_ID = secrets.token_hex(8)
TRACED = {**AUTH, "traceparent": f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"}


@dataclass
class ObservedStack(Stack):
    metrics_ports: dict[str, int]
    s3_secret: str
    collector: OtlpTraceCollector

    def metrics(self, service: str) -> dict[tuple[str, frozenset], float]:
        url = f"http://127.0.0.1:{self.metrics_ports[service]}/metrics"
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def metrics_ports(names) -> dict[str, int]:
    """A free port for each service's metrics, below Linux's ephemeral range (32768+): a service binds its port
    only once started (the transcriber after loading its model), and meanwhile the others' outgoing
    connections take ephemeral ports, one of which could be the one chosen for it."""
    chosen: dict[str, int] = {}
    candidates = random.sample(range(20000, 32000), 200)
    for name in names:
        while True:
            port = candidates.pop()
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            chosen[name] = port
            break
    return chosen


@pytest.fixture(scope="module")
def collector() -> Iterator[OtlpTraceCollector]:
    receiver = OtlpTraceCollector()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def observed(infra: Servers, collector: OtlpTraceCollector, tmp_path_factory) -> Iterator[ObservedStack]:
    ports = metrics_ports(METRICS_SERVICES)
    tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true",
               "OTEL_BSP_SCHEDULE_DELAY": "100"}  # fmt: skip
    started = start_stack(
        infra, tmp_path_factory.mktemp("observed"),
        environment=lambda name: {**tracing, "KAZRU_METRICS_PORT": str(ports.get(name, 0))},
        metrics_host="127.0.0.1",
        reuse_identical_uploads=False,  # as in every e2e stack: the upload must run through every process to be traced
    )  # fmt: skip
    observed = ObservedStack(started.settings, started.processes, started.logs, ports, infra.s3.secret_key, collector)
    yield observed
    stop_stack(observed)


@pytest.fixture(scope="module")
def finished_job(observed: ObservedStack) -> dict:
    """One upload through to its transcript, edits and an export: what the logs then must not give away."""
    http = observed.http
    assert httpx.get(f"{http}/api/v1/jobs", headers={"Authorization": f"Bearer {WRONG_KEY}"}).status_code == 401
    response = httpx.post(
        f"{http}/api/v1/upload", headers=TRACED, files={"file": (FILENAME, REAL_SPEECH_CLIP.read_bytes())}
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 120
    while (job := httpx.get(f"{http}/api/v1/jobs/{job_id}", headers=AUTH).json())["state"] not in (
        "SUCCEEDED",
        "FAILED",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["state"] == "SUCCEEDED", job["error"]
    transcript = httpx.get(f"{http}/api/v1/jobs/{job_id}/transcript", headers=AUTH).json()
    text = " ".join(segment["text"] for segment in transcript["segments"]).lower()
    assert all(word in text for word in REAL_SPEECH_WORDS)
    speaker = transcript["speakers"][0]["id"]
    renamed = httpx.put(
        f"{http}/api/v1/jobs/{job_id}/speakers", headers=AUTH, json={"speakers": {speaker: SPEAKER_NAME}}
    )
    assert renamed.status_code == 200, renamed.text
    edited = httpx.patch(f"{http}/api/v1/jobs/{job_id}/segments/0", headers=AUTH, json={"text": EDITED_TEXT})
    assert edited.status_code == 200, edited.text
    export = httpx.get(f"{http}/api/v1/jobs/{job_id}/export/txt", headers=TRACED)
    assert export.status_code == 200 and EDITED_TEXT in export.text
    return job


def test_operators_see_queue_workers_and_throughput_users_only_the_wait(observed, finished_job):
    operations = f"http://127.0.0.1:{observed.metrics_ports['gateway']}"
    deadline = time.monotonic() + 10
    while True:
        status = httpx.get(f"{operations}/status").json()
        # The idle worker's pull request is renewed every 2 s: it may be between two.
        if status["workers"]["active"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert status["queue"] == {"pending": 0, "in_progress": 0}
    assert status["workers"] == {"active": 1, "busy": 0, "idle": 1}
    assert status["throughput"]["jobs_finished"] >= 1 and status["throughput"]["mean_processing_seconds"] > 0
    assert status["estimated_wait_seconds"] == 0.0
    # The public port answers what a user needs, and neither the workers nor the metrics.
    public = httpx.get(f"{observed.http}/api/v1/status").json()
    assert public == {
        "queue": {"pending": 0}, "estimated_wait_seconds": 0.0, "engine": {"name": "whisper", "model": "whisper-base"}
    }  # fmt: skip
    assert httpx.get(f"{observed.http}/metrics").status_code == 404
    assert httpx.get(f"{operations}/api/v1/jobs", headers=AUTH).status_code == 404  # and the API is not here


def test_every_service_serves_its_metrics(observed, finished_job):
    size = REAL_SPEECH_CLIP.stat().st_size
    gateway = observed.metrics("gateway")
    assert value(gateway, "kazru_requests_total", transport="http", method="POST /api/v1/upload", code="202") == 1
    assert value(gateway, "kazru_requests_total", transport="http", method="GET /api/v1/jobs", code="401") == 1
    assert value(gateway, "kazru_request_duration_seconds_count", transport="http", method="GET /api/v1/jobs/{job_id}/export/{fmt}") == 1  # fmt: skip
    assert value(gateway, "kazru_jobs", state="SUCCEEDED") >= 1
    assert value(gateway, "kazru_queue_pending_messages") == 0
    assert value(gateway, "kazru_queue_ack_pending_messages") == 0
    # What the alert rules watch: every dependency up, nothing waiting or overdue in this stack's jobs.
    for dependency in ("postgres", "nats", "s3", "ingest", "exporter", "transcriber", "janitor"):
        assert value(gateway, "kazru_dependency_up", dependency=dependency) == 1, dependency
    assert value(gateway, "kazru_oldest_pending_job_age_seconds") is not None
    assert value(gateway, "kazru_expiry_overdue_seconds") is not None

    ingest = observed.metrics("ingest")
    assert value(ingest, "kazru_upload_bytes_total") == size
    assert (
        value(ingest, "kazru_requests_total", transport="grpc", method="/kazru.v1.IngestService/Upload", code="OK") == 1
    )

    transcriber = observed.metrics("transcriber")
    assert value(transcriber, "kazru_jobs_finished_total", state="SUCCEEDED") == 1
    assert value(transcriber, "kazru_realtime_factor_count", engine="whisper") == 1
    assert 0 < value(transcriber, "kazru_realtime_factor_sum", engine="whisper") < 20
    for stage in ("queue", "decode", "pipeline", "save", "engine", "vad", "embedding", "clustering", "assembly"):
        assert value(transcriber, "kazru_stage_duration_seconds_count", stage=stage) == 1, stage
    assert value(transcriber, "kazru_transcribed_audio_seconds_total", engine="whisper") == pytest.approx(
        REAL_SPEECH_SECONDS, abs=0.05
    )

    exporter = observed.metrics("exporter")
    assert (
        value(exporter, "kazru_requests_total", transport="grpc", method="/kazru.v1.ExporterService/Render", code="OK")
        == 1
    )

    janitor = observed.metrics("janitor")  # answers the gateway's health checks
    assert (
        value(janitor, "kazru_requests_total", transport="grpc", method="/grpc.health.v1.Health/Check", code="OK") >= 1
    )


def test_one_upload_is_one_connected_trace_across_the_processes(observed, finished_job):
    expected = {
        ("kazru-gateway", "POST /api/v1/upload"), ("kazru-gateway", "upload"),
        ("kazru-ingest", "kazru.v1.IngestService/Upload"), ("kazru-ingest", "store"),
        ("kazru-transcriber", "transcribe"), ("kazru-transcriber", "queue wait"), ("kazru-transcriber", "decode"),
        ("kazru-transcriber", "diarization"), ("kazru-transcriber", "engine"), ("kazru-transcriber", "database write"),
        ("kazru-gateway", "GET /api/v1/jobs/{job_id}/export/{fmt}"),
        ("kazru-exporter", "kazru.v1.ExporterService/Render"), ("kazru-exporter", "export"),
    }  # fmt: skip
    deadline = time.monotonic() + 15
    while True:  # each process exports its spans in batches, 100 ms apart
        trace = [span for span in observed.collector.spans() if span.trace_id == CLIENT_TRACE_ID]
        if expected <= {(span.service, span.name) for span in trace} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert expected <= {(span.service, span.name) for span in trace}
    # Connected: every span's parent is in the trace, or is the client's own span.
    ids = {span.span_id for span in trace} | {CLIENT_SPAN_ID}
    assert all(span.parent_span_id in ids for span in trace), [s for s in trace if s.parent_span_id not in ids]
    named = {span.name: span for span in trace}
    assert named["transcribe"].parent_span_id == named["kazru.v1.IngestService/Upload"].span_id  # through NATS
    assert named["kazru.v1.IngestService/Upload"].parent_span_id == named["upload"].span_id  # through gRPC
    assert named["POST /api/v1/upload"].parent_span_id == CLIENT_SPAN_ID


def test_logs_of_the_run_leak_nothing(observed, finished_job):
    stop_stack(observed)  # everything flushed, shutdown lines included
    lines = [
        (path.stem, line)
        for path in sorted(observed.logs.glob("*.log"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    assert {service for service, _ in lines} == set(SERVICES)
    entries = []
    for service, line in lines:
        entry = json.loads(line)  # every line is one JSON object
        assert {"time", "level", "service", "message"} <= set(entry), line
        assert entry["service"] == service
        entries.append(entry)
    forbidden = [*REAL_SPEECH_WORDS, EDITED_TEXT, SPEAKER_NAME, FILENAME, FILENAME.removesuffix(".flac"),
                 API_KEY, WRONG_KEY, observed.s3_secret]  # fmt: skip
    for service, line in lines:
        for secret in forbidden:
            assert secret.lower() not in line.lower(), f"{service} logged {secret!r}: {line}"
    # The job's lines say which job they are about.
    about_job = [entry for entry in entries if entry.get("job_id") == finished_job["job_id"]]
    assert {"upload accepted", "job succeeded"} <= {entry["message"] for entry in about_job}
    # ... and which trace: the client's.
    assert {
        entry.get("trace_id") for entry in about_job if entry["message"] in ("upload accepted", "job succeeded")
    } == {CLIENT_TRACE_ID}
