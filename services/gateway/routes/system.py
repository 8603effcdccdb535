"""The service itself: health (for probes), the queue and wait (for people), and your usage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from kazru.settings import Settings
from services.gateway import openapi_docs as docs
from services.gateway.api_models import ConfiguredEngine, Health, ServiceStatus, UsageReport
from services.gateway.routes.dependencies import Caller, GatewayDep, SettingsDep

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
async def health(gateway: GatewayDep, settings: SettingsDep, response: Response) -> Health:
    healthy, checks = await gateway.health()
    response.status_code = 200 if healthy else 503
    return Health(status="ok" if healthy else "unavailable", checks=checks, engine=configured_engine(settings))


@router.get(
    "/status", summary="Jobs waiting, the estimated wait for a new upload and the engine that will transcribe it",
    response_model=ServiceStatus,
    responses=docs.error_responses(docs.UNAVAILABLE),
)  # fmt: skip
async def service_status(gateway: GatewayDep, settings: SettingsDep) -> dict:
    return {**await gateway.public_status(), "engine": configured_engine(settings)}


def configured_engine(settings: Settings) -> ConfiguredEngine:
    """What new jobs run on, as the settings say (the gateway and the transcribers read the same KAZRU_ENGINE)."""
    return ConfiguredEngine(name=settings.engine, model=settings.engine_model)
