"""The service itself: health (for probes), the queue and wait (for people), and your usage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from services.gateway import openapi_docs as docs
from services.gateway.api_models import Health, ServiceStatus, UsageReport
from services.gateway.routes.dependencies import Caller, GatewayDep

router = APIRouter(prefix="/api/v1")


@router.get(
    "/usage", summary="Your usage per day: files, audio minutes, failures, billed seconds and cost",
    response_model=UsageReport,
    responses=docs.error_responses({400: ("INVALID_REQUEST",), **docs.COMMON_ERRORS}),
)  # fmt: skip
async def owner_usage(caller: Caller, gateway: GatewayDep, days: Annotated[int, Query(ge=1, le=366)] = 30) -> dict:
    return await gateway.usage(caller.owner_id, days)


@router.get(
    "/health", summary="Checks PostgreSQL, NATS, S3 and every service", response_model=Health,
    responses={503: {"model": Health, "description": "A check failed"}},
)  # fmt: skip
async def health(gateway: GatewayDep, response: Response) -> Health:
    healthy, checks = await gateway.health()
    response.status_code = 200 if healthy else 503
    return Health(status="ok" if healthy else "unavailable", checks=checks)


@router.get(
    "/status", summary="Jobs waiting and the estimated wait for a new upload", response_model=ServiceStatus,
    responses=docs.error_responses(docs.UNAVAILABLE),
)  # fmt: skip
async def service_status(gateway: GatewayDep) -> dict:
    return await gateway.public_status()
