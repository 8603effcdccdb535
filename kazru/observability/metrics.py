"""Prometheus metrics of every service, in one place so names and labels stay consistent.

The gateway serves them at `GET /metrics` (and fills the gauges read from PostgreSQL and
JetStream at each scrape); ingest, exporter, transcriber and janitor serve theirs on
KAZRU_METRICS_PORT (0: off). Labels are bounded: route templates and gRPC method names,
never ids, owners or file names.
"""

from __future__ import annotations

import logging
import time

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram

from kazru.settings import Settings

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
SIZE_BUCKETS = tuple(2**power for power in range(10, 31, 2))  # 1 KiB … 1 GiB
RTF_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)

# Requests: the gateway's HTTP API (method "POST /api/v1/upload") and every gRPC server
# (method "/kazru.v1.IngestService/Upload"); code is the HTTP status or gRPC status name.
REQUESTS = Counter("kazru_requests", "Requests handled, by transport, method and status code",
                   ["transport", "method", "code"])  # fmt: skip
REQUEST_SECONDS = Histogram("kazru_request_duration_seconds", "Time to answer a request (streams: to their end)",
                            ["transport", "method"], buckets=LATENCY_BUCKETS)  # fmt: skip

# Ingest.
UPLOAD_BYTES = Counter("kazru_upload_bytes", "Bytes of accepted uploads")
UPLOAD_SIZE = Histogram("kazru_upload_size_bytes", "Size of accepted uploads", buckets=SIZE_BUCKETS)

# Gateway, read at each scrape.
JOBS = Gauge("kazru_jobs", "Jobs in PostgreSQL by state (tombstones included)", ["state"])
QUEUE_PENDING = Gauge("kazru_queue_pending_messages", "Queued jobs not yet delivered to a worker (consumer lag)")
QUEUE_ACK_PENDING = Gauge("kazru_queue_ack_pending_messages", "Jobs delivered to a worker and not yet acknowledged")
QUEUE_WAITING_PULLS = Gauge("kazru_queue_waiting_pulls", "Idle workers' outstanding pull requests")
# What the alert rules (deploy/monitoring/kazru-alerts.rules.yml) watch for the service's promises.
OLDEST_PENDING_SECONDS = Gauge(
    "kazru_oldest_pending_job_age_seconds", "Age of the oldest job waiting for a worker (0: none)"
)
EXPIRY_OVERDUE_SECONDS = Gauge("kazru_expiry_overdue_seconds",
                               "How long the most overdue job has outlived its expires_at (0: none): the 24 h promise")  # fmt: skip
ENGINE_COPIES_OVERDUE = Gauge("kazru_engine_copies_overdue",
                              "Jobs past their expiry whose copy at an external engine is not yet deleted")  # fmt: skip
DEPENDENCY_UP = Gauge("kazru_dependency_up", "1 when the gateway's health check of a dependency or service passes",
                      ["dependency"])  # fmt: skip

# Transcriber.
STAGE_SECONDS = Histogram("kazru_stage_duration_seconds", "Seconds per pipeline stage of a finished job",
                          ["stage"], buckets=STAGE_BUCKETS)  # fmt: skip
REALTIME_FACTOR = Histogram("kazru_realtime_factor", "Processing seconds (decode to saved) per second of audio",
                            ["engine"], buckets=RTF_BUCKETS)  # fmt: skip
AUDIO_SECONDS = Counter("kazru_transcribed_audio_seconds", "Seconds of audio transcribed", ["engine"])
JOBS_FINISHED = Counter("kazru_jobs_finished", "Jobs the transcriber finished, by final state", ["state"])
ENGINE_ERRORS = Counter("kazru_engine_errors", "Speech engine or diarizer failures, by engine and exception type",
                        ["engine", "error"])  # fmt: skip
BILLED_SECONDS = Counter("kazru_engine_billed_seconds", "Seconds an external engine bills for", ["engine"])
ESTIMATED_COST = Counter("kazru_engine_estimated_cost",
                         "Billed minutes times KAZRU_USAGE_COST_PER_BILLED_MINUTE (the setting's currency)",
                         ["engine"])  # fmt: skip

# Janitor.
JANITOR_DELETIONS = Counter("kazru_janitor_deletions", "What the janitor removed or repaired, by kind", ["kind"])


def observe_request(transport: str, method: str, code: str, started: float) -> None:
    """`started`: time.perf_counter() when the request arrived."""
    REQUESTS.labels(transport, method, code).inc()
    REQUEST_SECONDS.labels(transport, method).observe(time.perf_counter() - started)


def observe_upload(size_bytes: int) -> None:
    UPLOAD_BYTES.inc(size_bytes)
    UPLOAD_SIZE.observe(size_bytes)


def observe_transcription(engine: str, stage_seconds: dict[str, float], billed_seconds: float,
                          settings: Settings) -> None:  # fmt: skip
    """A finished job's stage timings (the worker's `…_seconds` keys), real-time factor and billing."""
    audio = stage_seconds.get("audio_seconds", 0.0)
    for key, seconds in stage_seconds.items():
        if key.endswith("_seconds") and key != "audio_seconds":
            STAGE_SECONDS.labels(key.removesuffix("_seconds")).observe(seconds)
    processing = sum(stage_seconds.get(key, 0.0) for key in ("decode_seconds", "pipeline_seconds", "save_seconds"))
    if audio > 0:
        AUDIO_SECONDS.labels(engine).inc(audio)
        REALTIME_FACTOR.labels(engine).observe(processing / audio)
    if billed_seconds > 0:
        BILLED_SECONDS.labels(engine).inc(billed_seconds)
        ESTIMATED_COST.labels(engine).inc(billed_seconds / 60 * settings.usage_cost_per_billed_minute)


def latest() -> tuple[bytes, str]:
    """The registry in the Prometheus text format, and its content type."""
    return prometheus_client.generate_latest(), prometheus_client.CONTENT_TYPE_LATEST


def start_metrics_server(settings: Settings):
    """Serve /metrics on KAZRU_METRICS_HOST:KAZRU_METRICS_PORT in a thread; None when the port is 0.

    Returns the server (call `shutdown()` to stop it) so tests can read the bound port.
    """
    if not settings.metrics_port:
        return None
    server, _ = prometheus_client.start_http_server(settings.metrics_port, addr=settings.metrics_host)
    log.info("metrics listening", extra={"address": f"{settings.metrics_host}:{server.server_port}"})
    return server
