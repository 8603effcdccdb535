"""The gateway's face for operators, served on KAZRU_METRICS_HOST:KAZRU_METRICS_PORT and never on the public
port: Prometheus metrics (the gauges read from PostgreSQL and JetStream at each scrape) and the queue in
detail (workers, throughput). In Kubernetes only the `monitoring` namespace reaches this port
(deploy/k8s/base/network-policies.yaml); the public /api/v1/status keeps to what a user needs.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from kazru.observability import metrics
from services.gateway.core import Gateway

log = logging.getLogger(__name__)


def create_operations_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="KazRu-STT Pro operations", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        try:
            await gateway.refresh_metrics()
        except Exception as error:  # noqa: BLE001 - the other metrics are still worth serving
            log.warning("could not read jobs and queue for /metrics", extra={"error": type(error).__name__})
        body, content_type = metrics.latest()
        return Response(body, media_type=content_type)

    @app.get("/status")
    async def operations_status() -> JSONResponse:
        return JSONResponse(await gateway.service_status())

    return app
