"""Tracing with OpenTelemetry: off unless the standard OTEL_* variables ask for it.

One upload is one trace: the gateway's request span, `upload`, ingest's gRPC span and
`store`, then (through the W3C `traceparent` carried in the JobUploaded message's NATS
headers) the transcriber's `transcribe` span with `queue wait`, `decode`, `diarization`,
`engine` and `database write`. Context crosses gRPC in the call's metadata (client and
server interceptors in kazru.grpc.server) and NATS in message headers (kazru.adapters.bus).

When tracing is off no tracer exists: `span()` is a null context and nothing is
injected, so the services pay nothing for it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACER_NAME = "kazru"
_PROPAGATOR = TraceContextTextMapPropagator()
# Set by configure_tracing (from OTEL_*) or use_tracer_provider (tests); None: tracing off.
_tracer: trace.Tracer | None = None


def wanted_by_environment(environ: Mapping[str, str] = os.environ) -> bool:
    """The OTEL_* variables that turn tracing on (and the ones that keep it off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return bool(exporter or endpoint)


def configure_tracing(service: str, environ: Mapping[str, str] = os.environ):
    """Install a TracerProvider exporting as OTEL_* say; return it, or None when tracing is off.

    OTEL_TRACES_EXPORTER: `otlp` (default: OTLP over gRPC, endpoint from OTEL_EXPORTER_OTLP_*)
    or `console`. OTEL_SERVICE_NAME overrides `kazru-<service>`.
    """
    if not wanted_by_environment(environ):
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    attributes = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: f"kazru-{service}"}
    provider = TracerProvider(resource=Resource.create(attributes))
    exporters = [name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    for name in exporters:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not supported here (otlp, console or none)")
    trace.set_tracer_provider(provider)
    use_tracer_provider(provider)
    return provider


def use_tracer_provider(provider) -> None:
    """Trace with `provider` (None: stop tracing). Tests pass one with an in-memory exporter."""
    global _tracer
    _tracer = provider.get_tracer(TRACER_NAME) if provider is not None else None


def enabled() -> bool:
    return _tracer is not None


def span(name: str, *, parent: otel_context.Context | None = None, kind: trace.SpanKind = trace.SpanKind.INTERNAL,
         start: datetime | None = None, attributes: Mapping[str, Any] | None = None):  # fmt: skip
    """A span made current for the block (a null context when tracing is off)."""
    if _tracer is None:
        return contextlib.nullcontext()
    return _tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes, start_time=_nanoseconds(start) if start else None
    )


def record_span(name: str, start: datetime, end: datetime, attributes: Mapping[str, Any] | None = None) -> None:
    """A span for something that already happened (e.g. a job's wait in the queue), under the current span."""
    if _tracer is None:
        return
    done = _tracer.start_span(name, start_time=_nanoseconds(start), attributes=attributes)
    done.end(end_time=max(_nanoseconds(end), _nanoseconds(start)))


def traced(name: str) -> Callable:
    """Decorate a coroutine function or async generator function to run in a span named `name`."""

    def decorate(function: Callable) -> Callable:
        if inspect.isasyncgenfunction(function):

            @functools.wraps(function)
            async def generator(*args, **kwargs):
                with span(name):
                    async for item in function(*args, **kwargs):
                        yield item

            return generator

        @functools.wraps(function)
        async def coroutine(*args, **kwargs):
            with span(name):
                return await function(*args, **kwargs)

        return coroutine

    return decorate


def inject(carrier: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current span's `traceparent` (and `tracestate`) to headers or gRPC metadata."""
    if _tracer is not None:
        _PROPAGATOR.inject(carrier)
    return carrier


def extract(carrier: Mapping[str, str] | None) -> otel_context.Context:
    """The remote parent carried in headers or metadata (an empty context if none)."""
    return _PROPAGATOR.extract(carrier or {})


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, for log lines; None outside any span."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def _nanoseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)
