"""Log lines, tracing switches and metric arithmetic, without servers."""

from __future__ import annotations

import json
import logging
import urllib.request

import pytest
from prometheus_client import REGISTRY

from kazru.adapters.bus import QueueState
from kazru.dev.devservers import free_port
from kazru.observability import metrics, tracing
from kazru.observability.logs import JsonFormatter, job_context
from kazru.settings import Settings
from services.gateway.status import Throughput, estimated_wait_seconds
from tests.tracing_support import spans  # noqa: F401 - fixture


def formatted(message: str, **extra) -> dict:
    record = logging.LogRecord("kazru.test", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return json.loads(JsonFormatter("ingest").format(record))


def test_a_log_line_outside_a_job_and_a_span_has_no_ids():
    line = formatted("hello")
    assert {"time", "level", "service", "message"} <= set(line)
    assert line["service"] == "ingest" and line["level"] == "INFO"
    assert "trace_id" not in line and "job_id" not in line


def test_log_lines_carry_the_job_and_the_trace(spans):  # noqa: F811
    with job_context("5f0c…job"), tracing.span("work") as span:
        line = formatted("inside")
    assert line["job_id"] == "5f0c…job"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    # Explicit extras win over the context.
    with job_context("outer"):
        assert formatted("x", job_id="explicit")["job_id"] == "explicit"
    assert "job_id" not in formatted("after")


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_tracing_is_on_only_when_otel_variables_ask(environ, wanted):
    assert tracing.wanted_by_environment(environ) is wanted


def test_off_by_default_nothing_is_traced_or_injected():
    assert tracing.configure_tracing("ingest", {}) is None
    assert not tracing.enabled()
    with tracing.span("nothing") as span:
        assert span is None
    assert tracing.inject({}) == {}


def test_trace_context_round_trips_through_headers(spans):  # noqa: F811
    with tracing.span("publisher") as publisher:
        headers = tracing.inject({"Nats-Msg-Id": "job"})
    assert headers["traceparent"].split("-")[1] == format(publisher.get_span_context().trace_id, "032x")
    with tracing.span("consumer", parent=tracing.extract(headers)) as consumer:
        pass
    assert consumer.parent.span_id == publisher.get_span_context().span_id


def sample(name: str, labels: dict | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_a_finished_job_records_stages_real_time_factor_billing_and_cost():
    settings = Settings(usage_cost_per_billed_minute=0.16)
    engine = "unit-test-engine"
    before_rtf = sample("kazru_realtime_factor_count", {"engine": engine})
    before_decode = sample("kazru_stage_duration_seconds_count", {"stage": "decode"})
    stages = {"audio_seconds": 60.0, "decode_seconds": 1.0, "pipeline_seconds": 10.0, "save_seconds": 1.0,
              "diarization_seconds": 2.0, "engine_seconds": 8.0}  # fmt: skip
    metrics.observe_transcription(engine, stages, billed_seconds=90.0, settings=settings)
    assert sample("kazru_realtime_factor_count", {"engine": engine}) == before_rtf + 1
    assert sample("kazru_realtime_factor_sum", {"engine": engine}) == pytest.approx(12.0 / 60.0)
    assert sample("kazru_stage_duration_seconds_count", {"stage": "decode"}) == before_decode + 1
    assert sample("kazru_transcribed_audio_seconds_total", {"engine": engine}) == 60.0
    assert sample("kazru_engine_billed_seconds_total", {"engine": engine}) == 90.0
    assert sample("kazru_engine_estimated_cost_total", {"engine": engine}) == pytest.approx(1.5 * 0.16)
    # The audio's length is not a stage.
    assert sample("kazru_stage_duration_seconds_count", {"stage": "audio"}) == 0


@pytest.mark.parametrize(
    ("queue", "throughput", "wait"),
    [
        (QueueState(pending=0, in_progress=0, idle_workers=2), Throughput(0, None), 0.0),
        # Nothing finished recently and nobody idle: no basis for a guess.
        (QueueState(pending=3, in_progress=0, idle_workers=0), Throughput(0, None), None),
        # 2 busy workers at 30 s a job: 1 job per 15 s; 3 ahead plus the one being finished.
        (QueueState(pending=3, in_progress=2, idle_workers=0), Throughput(4, 30.0), 60.0),
        # 90 jobs in 15 minutes beat what 1 worker at 30 s a job could do (1 per 30 s): 0.1 job/s.
        (QueueState(pending=4, in_progress=1, idle_workers=0), Throughput(90, 30.0), 50.0),
    ],
)
def test_estimated_wait(queue, throughput, wait):
    assert estimated_wait_seconds(queue, throughput) == wait


def test_the_metrics_server_is_off_at_port_0_and_serves_prometheus_text_otherwise():
    assert metrics.start_metrics_server(Settings(metrics_port=0)) is None
    server = metrics.start_metrics_server(Settings(metrics_port=free_port(), metrics_host="127.0.0.1"))
    try:
        metrics.JANITOR_DELETIONS.labels("unit_test").inc(3)
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'kazru_janitor_deletions_total{kind="unit_test"} 3.0' in body
