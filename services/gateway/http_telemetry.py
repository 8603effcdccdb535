"""ASGI middleware: every HTTP request counted and timed by route and status, and run in a
server span (a client's `traceparent` header, if sent, becomes its parent).

Pure ASGI rather than an `@app.middleware` function, so streamed bodies (exports, SSE)
are timed to their last byte and pass through untouched.
"""

from __future__ import annotations

import contextlib
import time

from opentelemetry.trace import SpanKind

from kazru.observability import metrics, tracing

# Scrapes and probes are counted but not traced.
_UNTRACED_PATHS = frozenset({"/metrics", "/api/v1/health"})


def _route(scope) -> str:
    """The route's template ("/api/v1/jobs/{job_id}"), never the raw path: ids would make
    unbounded label values."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestTelemetry:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_observed(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        span = contextlib.nullcontext()
        if tracing.enabled() and scope["path"] not in _UNTRACED_PATHS:
            headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope.get("headers", ())}
            span = tracing.span(f"{scope['method']} {scope['path']}", parent=tracing.extract(headers),
                                kind=SpanKind.SERVER)  # fmt: skip
        try:
            with span as current:
                await self.app(scope, receive, send_observed)
                if current is not None:
                    # Renamed once routing has matched: the template, not the path with its ids.
                    current.update_name(f"{scope['method']} {_route(scope)}")
                    current.set_attribute("http.response.status_code", status["code"])
        finally:
            metrics.observe_request("http", f"{scope['method']} {_route(scope)}", str(status["code"]), started)
