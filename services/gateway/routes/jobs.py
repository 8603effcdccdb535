"""Jobs: upload one, list yours, read one, follow it live (Server-Sent Events), delete it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from kazru.api_json import Job, job_json
from kazru.domain.errors import KazruError
from kazru.v1 import job_pb2
from services.gateway import openapi_docs as docs
from services.gateway import upload_form
from services.gateway.api_models import JobList
from services.gateway.http_errors import error_body, unexpected_error
from services.gateway.routes.dependencies import Caller, GatewayDep, SettingsDep

router = APIRouter(prefix="/api/v1")


@router.post(
    "/upload", status_code=202, summary="Upload an audio file (multipart 'file')", response_model=Job,
    openapi_extra={"requestBody": docs.UPLOAD_REQUEST_BODY, "parameters": docs.UPLOAD_PARAMETERS},
    responses=docs.error_responses({
        400: ("NOT_MULTIPART", "MALFORMED_MULTIPART", "FILE_FIELD_MISSING", "MULTIPLE_FILES", "TOO_MANY_FIELDS",
              "FIELD_TOO_LONG", "EMPTY_FILE", "INVALID_LANGUAGE", "INVALID_MIN_SPEAKERS", "INVALID_MAX_SPEAKERS",
              "INVALID_IDEMPOTENCY_KEY", "UPLOAD_INTERRUPTED"),
        413: ("UPLOAD_TOO_LARGE", "RECORDING_TOO_LONG"),
        415: ("NOT_AUDIO", "AUDIO_UNDECODABLE", "NO_AUDIO_TRACK", "AUDIO_CODEC_UNSUPPORTED", "AUDIO_EMPTY"),
        422: ("IDEMPOTENCY_KEY_REUSED",),
        429: ("RATE_LIMITED",),
        **docs.WRITE_COMMON_ERRORS,
    }),
)  # fmt: skip
async def upload(
    request: Request, response: Response, caller: Caller, gateway: GatewayDep, settings: SettingsDep
) -> Job:
    job = await upload_form.upload_from_request(request, gateway, caller, settings)
    response.headers["Location"] = f"/api/v1/jobs/{job.job_id}"
    return Job.from_proto(job)


@router.get(
    "/jobs", summary="List your jobs, newest first", response_model=JobList,
    responses=docs.error_responses({400: ("INVALID_REQUEST", "INVALID_PAGE_TOKEN"), **docs.COMMON_ERRORS}),
)  # fmt: skip
async def list_jobs(
    caller: Caller,
    gateway: GatewayDep,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    page_token: Annotated[str, Query(max_length=512)] = "",
) -> JobList:
    found, next_token = await gateway.list_jobs(caller.owner_id, page_size, page_token)
    return JobList(jobs=[Job.from_proto(job) for job in found], next_page_token=next_token or None)


@router.get(
    "/jobs/{job_id}", summary="A job's state and progress", response_model=Job,
    responses=docs.error_responses({**docs.NOT_FOUND, **docs.COMMON_ERRORS}),
)  # fmt: skip
async def get_job(job_id: str, caller: Caller, gateway: GatewayDep) -> Job:
    return Job.from_proto(await gateway.get_job(caller.owner_id, job_id))


@router.get(
    "/jobs/{job_id}/status",
    summary="Live state and progress (Server-Sent Events) until the job ends",
    description="One `data:` line with the job (as `GET /api/v1/jobs/{job_id}`) now and after each change of "
    "state or progress; the stream ends after a terminal state. Comment lines keep an idle stream open. "
    "A failure after the stream started comes as `event: error` with the usual error body.",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": docs.JOB_EVENT_SCHEMA}}},
        **docs.error_responses({**docs.NOT_FOUND, **docs.COMMON_ERRORS}),
    },
)
async def job_status(job_id: str, caller: Caller, gateway: GatewayDep, settings: SettingsDep) -> StreamingResponse:
    updates = gateway.watch_job(caller.owner_id, job_id)
    first = await anext(updates)  # an unknown or foreign job is answered as a plain 404
    return StreamingResponse(
        _server_sent_events(first, updates, settings.sse_heartbeat_seconds),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.delete(
    "/jobs/{job_id}", summary="Cancel if running; delete the audio and transcript now", response_model=Job,
    responses=docs.error_responses({
        **docs.NOT_FOUND, 409: ("ILLEGAL_STATE_TRANSITION",), **docs.REMOVED, **docs.WRITE_COMMON_ERRORS
    }),
)  # fmt: skip
async def delete_job(job_id: str, caller: Caller, gateway: GatewayDep) -> Job:
    return Job.from_proto(await gateway.delete_job(caller.owner_id, job_id))


def _sse_message(data: dict, event: str | None = None) -> str:
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _server_sent_events(
    first: job_pb2.Job, updates: AsyncIterator[job_pb2.Job], heartbeat_seconds: float
) -> AsyncIterator[str]:
    """The jobs as SSE messages, with a comment line whenever nothing happened for `heartbeat_seconds`."""
    yield _sse_message(job_json(first))
    waiting: asyncio.Future | None = None
    try:
        while True:
            # The same pending read survives heartbeats: cancelling it would end the watch.
            waiting = waiting or asyncio.ensure_future(anext(updates))
            done, _ = await asyncio.wait({waiting}, timeout=heartbeat_seconds)
            if not done:
                yield ": keep-alive\n\n"
                continue
            read, waiting = waiting, None
            try:
                job = read.result()
            except StopAsyncIteration:
                return
            except Exception as error:  # noqa: BLE001 - the status line is sent; report in the stream
                failure = error if isinstance(error, KazruError) else unexpected_error(error, "job status stream")
                yield _sse_message(error_body(failure), event="error")
                return
            yield _sse_message(job_json(job))
    finally:
        if waiting is not None:
            waiting.cancel()
            with contextlib.suppress(BaseException):
                await waiting
        await updates.aclose()
