"""HTTP adapter: the /api/v1 contract of ARCHITECTURE.md §3, the page, and health.

Errors always come back as {"error": {"code", "message", "details"}} with the
status `http_errors.HTTP_STATUS` assigns to the error's kind: the one HTTP mapping.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from kazru import byte_ranges, errors, export_formats
from kazru.api_json import job_json
from kazru.errors import KazruError
from kazru.settings import AnonymousAccess, Settings
from kazru.v1 import export_pb2, job_pb2, transcript_pb2
from services.gateway import api_models, csrf, openai_api, openapi_docs, upload_form
from services.gateway.api_models import AUTH_ERRORS, NOT_FOUND, REMOVED, UNAVAILABLE, WRITE_ERRORS, error_responses
from services.gateway.auth import SESSION_COOKIE, Authenticator, Principal
from services.gateway.core import Gateway, SegmentChange
from services.gateway.http_errors import error_body, error_response
from services.gateway.http_telemetry import RequestTelemetry
from services.gateway.security_headers import SecurityHeaders

log = logging.getLogger(__name__)

EXPORT_FORMATS = export_formats.BY_NAME
# Documented as an enum; any other name is answered 400 UNSUPPORTED_FORMAT by the route itself.
ExportFormatName = Annotated[str, Path(description="The file format", json_schema_extra={"enum": list(EXPORT_FORMATS)})]
SESSION_MAX_AGE_SECONDS = 30 * 24 * 3600


def transcript_json(job: job_pb2.Job, transcript: transcript_pb2.Transcript) -> dict:
    return {
        "job_id": job.job_id,
        "language": job.detected_language or None,
        "duration_seconds": transcript.duration_seconds,
        "language_shares": dict(job.language_shares),
        "speakers": [
            {
                "id": s.id,
                "label": s.label,
                "speaking_seconds": s.speaking_seconds,
                "segment_count": s.segment_count,
            }
            for s in transcript.speakers
        ],
        "segments": [segment_json(s) for s in transcript.segments],
    }


def segment_json(s: transcript_pb2.Segment) -> dict:
    return {
        "index": s.index,
        "start": s.start_seconds,
        "end": s.end_seconds,
        "speaker": s.speaker or None,
        "language": s.language,
        "confidence": s.confidence,
        "text": s.text,
        "edited": s.edited,
        "original_text": s.original_text if s.edited else None,
        "words": [
            {"start": w.start_seconds, "end": w.end_seconds, "text": w.text,
             "probability": w.probability, "speaker": w.speaker or None}
            for w in s.words
        ],
    }  # fmt: skip


class SpeakerNames(BaseModel):
    speakers: dict[str, str] = Field(
        min_length=1, max_length=20, description="Speaker id → name to show, e.g. {\"S1\": \"Aigerim\"}",
        examples=[{"S1": "Айгерім", "S2": "Dauren"}],
    )  # fmt: skip


class SpeakerMerge(BaseModel):
    into: str = Field(
        max_length=32, description="The speaker id that absorbs the other one's segments", examples=["S1"]
    )


class SegmentEdit(BaseModel):
    """One change: `text` (new text), `"revert": true` (the machine's text back), `language` (correct the
    segment's language) or `speaker` (give the segment to another speaker, or a new one: splits a merge back)."""

    text: str | None = Field(default=None, description="New text, at most 10 000 characters; timing is kept")
    revert: bool = Field(default=False, description="Restore the machine's original text")
    language: str | None = Field(default=None, max_length=8, description="The segment's language (kk, ru, en)")
    speaker: str | None = Field(
        default=None, max_length=32, description="A speaker id of the job, or a new one (S1-S99)"
    )

    def change(self) -> SegmentChange:
        given = [name for name in ("text", "language", "speaker") if getattr(self, name) is not None]
        given += ["revert"] if self.revert else []
        if len(given) != 1:
            raise errors.InvalidArgument(
                "send one of 'text', '\"revert\": true', 'language' or 'speaker'", code="SEGMENT_CHANGE_MISSING"
            )
        return SegmentChange(given[0], "" if given[0] == "revert" else getattr(self, given[0]))


# Errors every route can answer with: a bad key, a dependency down; writes: the page's CSRF rules.
COMMON_ERRORS = {**AUTH_ERRORS, **UNAVAILABLE}
WRITE_COMMON_ERRORS = {**COMMON_ERRORS, **WRITE_ERRORS}
EDIT_ERRORS = {
    **WRITE_COMMON_ERRORS, 404: ("JOB_NOT_FOUND", "SPEAKER_NOT_FOUND"), 409: ("TRANSCRIPT_NOT_READY",), **REMOVED
}  # fmt: skip


def content_disposition(filename: str) -> str:
    """RFC 6266 with an ASCII fallback and the exact UTF-8 name (RFC 5987)."""
    fallback = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def create_app(settings: Settings, gateway: Gateway, auth: Authenticator) -> FastAPI:
    app = FastAPI(
        title="KazRu-STT Pro",
        summary="Transcription of Kazakh, Russian and mixed Kazakh-Russian recordings",
        description=api_models.QUICK_START,
        version="1.0.0",
        docs_url=None,  # served by openapi_docs, without a CDN
        redoc_url=None,
        openapi_url=openapi_docs.OPENAPI_PATH,
    )
    openapi_docs.install(app)
    static_dir = resources.files("services.gateway") / "static"
    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")

    @app.exception_handler(KazruError)
    async def on_domain_error(request: Request, error: KazruError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error_response(
            errors.InvalidArgument(f"{where}: {first.get('msg', 'invalid request')}", code="INVALID_REQUEST")
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.status_code, "HTTP_ERROR")
        body = {"error": {"code": code, "message": str(error.detail), "details": {}}}
        return JSONResponse(body, status_code=error.status_code)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        outage = errors.from_infrastructure(error)
        if outage is not None:
            log.warning("dependency unavailable", extra={"path": request.url.path, "error_code": outage.code})
            return error_response(outage)
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(errors.Internal("internal error"))

    app.add_middleware(SecurityHeaders, docs_path="/api/v1/docs")
    if settings.cors_origins:
        # For other sites' pages that call the API with a key: never with cookies (no credentials).
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Range"],
            expose_headers=["Location", "Retry-After", "Content-Disposition", "Content-Range"], max_age=600,
        )  # fmt: skip

    @app.middleware("http")
    async def session_cookie(request: Request, call_next):
        response = await call_next(request)
        token = getattr(request.state, "new_session_token", None)
        if token:
            response.set_cookie(
                SESSION_COOKIE, token, max_age=SESSION_MAX_AGE_SECONDS, httponly=True, samesite="lax",
                secure=request.url.scheme == "https", path="/",
            )  # fmt: skip
        session = token or browser_session(request)
        if session and request.cookies.get(csrf.CSRF_COOKIE) != csrf.token_for(session):
            # Not HttpOnly: the page's script reads it and sends it back as X-CSRF-Token.
            response.set_cookie(
                csrf.CSRF_COOKIE, csrf.token_for(session), max_age=SESSION_MAX_AGE_SECONDS, httponly=False,
                samesite="strict", secure=request.url.scheme == "https", path="/",
            )  # fmt: skip
        return response

    def browser_session(request: Request) -> str | None:
        """The session cookie this request acts as, where browsers get sessions."""
        if settings.anonymous_access is not AnonymousAccess.COOKIE:
            return None
        return request.cookies.get(SESSION_COOKIE)

    async def principal(request: Request) -> Principal:
        authorization = request.headers.get("authorization")
        if not authorization and request.method not in csrf.SAFE_METHODS:
            csrf.check_browser_write(request.headers, browser_session(request), request.headers.get("host", ""))
        found = await auth.authenticate(authorization, request.cookies.get(SESSION_COOKIE), browser=True)
        if found.new_session_token:
            request.state.new_session_token = found.new_session_token
        return found

    Caller = Annotated[Principal, Depends(principal)]

    page_html = (static_dir / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html)

    @app.post(
        "/api/v1/upload", status_code=202, summary="Upload an audio file (multipart 'file')",
        openapi_extra={"requestBody": api_models.UPLOAD_REQUEST_BODY, "parameters": api_models.UPLOAD_PARAMETERS},
        responses={202: {"model": api_models.Job}, **error_responses({
            400: ("NOT_MULTIPART", "MALFORMED_MULTIPART", "FILE_FIELD_MISSING", "MULTIPLE_FILES", "TOO_MANY_FIELDS",
                  "FIELD_TOO_LONG", "EMPTY_FILE", "INVALID_LANGUAGE", "INVALID_MIN_SPEAKERS", "INVALID_MAX_SPEAKERS",
                  "INVALID_IDEMPOTENCY_KEY", "UPLOAD_INTERRUPTED"),
            413: ("UPLOAD_TOO_LARGE", "RECORDING_TOO_LONG"), 415: ("NOT_AUDIO", "AUDIO_UNDECODABLE", "AUDIO_EMPTY"),
            429: ("RATE_LIMITED",),
            **WRITE_COMMON_ERRORS,
        })},
    )  # fmt: skip
    async def upload(request: Request, caller: Caller) -> JSONResponse:
        job = await upload_form.upload_from_request(request, gateway, caller, settings)
        return JSONResponse(job_json(job), status_code=202, headers={"Location": f"/api/v1/jobs/{job.job_id}"})

    @app.get(
        "/api/v1/jobs", summary="List your jobs, newest first", response_model=None,
        responses={200: {"model": api_models.JobList},
                   **error_responses({400: ("INVALID_REQUEST", "INVALID_PAGE_TOKEN"), **COMMON_ERRORS})},
    )  # fmt: skip
    async def list_jobs(
        caller: Caller,
        page_size: Annotated[int, Query(ge=1, le=100)] = 20,
        page_token: Annotated[str, Query(max_length=512)] = "",
    ) -> dict:
        found, next_token = await gateway.list_jobs(caller.owner_id, page_size, page_token)
        return {"jobs": [job_json(job) for job in found], "next_page_token": next_token or None}

    @app.get(
        "/api/v1/jobs/{job_id}", summary="A job's state and progress", response_model=None,
        responses={200: {"model": api_models.Job}, **error_responses({**NOT_FOUND, **COMMON_ERRORS})},
    )  # fmt: skip
    async def get_job(job_id: str, caller: Caller) -> dict:
        return job_json(await gateway.get_job(caller.owner_id, job_id))

    @app.get(
        "/api/v1/jobs/{job_id}/status",
        summary="Live state and progress (Server-Sent Events) until the job ends",
        description="One `data:` line with the job (as `GET /api/v1/jobs/{job_id}`) now and after each change of "
        "state or progress; the stream ends after a terminal state. Comment lines keep an idle stream open. "
        "A failure after the stream started comes as `event: error` with the usual error body.",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/event-stream": {"schema": api_models.JOB_EVENT_SCHEMA}}},
            **error_responses({**NOT_FOUND, **COMMON_ERRORS}),
        },
    )
    async def job_status(job_id: str, caller: Caller) -> StreamingResponse:
        updates = gateway.watch_job(caller.owner_id, job_id)
        first = await anext(updates)  # an unknown or foreign job is answered as a plain 404
        return StreamingResponse(
            _server_sent_events(first, updates, settings.sse_heartbeat_seconds),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.delete(
        "/api/v1/jobs/{job_id}", summary="Cancel if running; delete the audio and transcript now",
        response_model=None,
        responses={200: {"model": api_models.Job},
                   **error_responses({**NOT_FOUND, 409: ("ILLEGAL_STATE_TRANSITION",), **REMOVED, **WRITE_COMMON_ERRORS})},
    )  # fmt: skip
    async def delete_job(job_id: str, caller: Caller) -> dict:
        return job_json(await gateway.delete_job(caller.owner_id, job_id))

    @app.get(
        "/api/v1/jobs/{job_id}/audio",
        summary="The original recording, with HTTP range requests so a player can seek",
        description="Send `Range: bytes=START-END` (or `bytes=-N` for the last N bytes) for `206` and a part; "
        "a range outside the recording is `416`. A deleted or expired job's audio is `410`.",
        response_class=StreamingResponse,
        responses={200: {"content": {"audio/*": {"schema": {"type": "string", "format": "binary"}}}},
                   206: {"description": "The requested part", "content": {"audio/*": {}}},
                   **error_responses({**NOT_FOUND, 410: ("JOB_DELETED", "JOB_EXPIRED", "AUDIO_DELETED"),
                                      416: ("RANGE_NOT_SATISFIABLE",), **COMMON_ERRORS,
                                      500: ("ENCRYPTION_KEY_UNKNOWN", "ENCRYPTION_KEY_MISMATCH", "OBJECT_UNREADABLE")})},
    )  # fmt: skip
    async def job_audio(job_id: str, caller: Caller, request: Request) -> Response:
        audio = await gateway.audio(caller.owner_id, job_id)
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, no-store"}
        try:
            wanted = byte_ranges.parse_range(request.headers.get("range"), audio.size_bytes)
        except byte_ranges.Unsatisfiable as error:
            body = {
                "error": {
                    "code": "RANGE_NOT_SATISFIABLE",
                    "message": str(error),
                    "details": {"size_bytes": str(error.size)},
                }
            }
            return JSONResponse(body, 416, headers={**headers, "Content-Range": f"bytes */{error.size}"})
        part = wanted or byte_ranges.ByteRange(0, audio.size_bytes - 1)
        first, rest = await gateway.read_audio(audio, part.start, part.length)

        async def body() -> AsyncIterator[bytes]:
            yield first
            async for chunk in rest:
                yield chunk

        headers["Content-Length"] = str(part.length)
        if wanted is not None:
            headers["Content-Range"] = wanted.content_range(audio.size_bytes)
        return StreamingResponse(body(), 206 if wanted else 200, headers=headers, media_type=audio.media_type)

    @app.get(
        "/api/v1/jobs/{job_id}/transcript", summary="The transcript of a finished job",
        response_model=None,
        responses={200: {"model": api_models.Transcript},
                   **error_responses({**NOT_FOUND, 409: ("TRANSCRIPT_NOT_READY",), **REMOVED, **COMMON_ERRORS})},
    )  # fmt: skip
    async def get_transcript(job_id: str, caller: Caller) -> dict:
        job, transcript = await gateway.get_transcript(caller.owner_id, job_id)
        return transcript_json(job, transcript)

    @app.put(
        "/api/v1/jobs/{job_id}/speakers",
        summary="Name speakers; answers the updated transcript",
        response_model=None,
        responses={
            200: {"model": api_models.Transcript},
            **error_responses(
                {
                    **EDIT_ERRORS,
                    400: (
                        "INVALID_REQUEST",
                        "SPEAKERS_EMPTY",
                        "SPEAKER_NAME_EMPTY",
                        "SPEAKER_NAME_INVALID",
                        "SPEAKER_NAME_TOO_LONG",
                    ),
                }
            ),
        },
    )
    async def rename_speakers(job_id: str, body: SpeakerNames, caller: Caller) -> dict:
        job, transcript = await gateway.rename_speakers(caller.owner_id, job_id, body.speakers)
        return transcript_json(job, transcript)

    @app.post(
        "/api/v1/jobs/{job_id}/speakers/{speaker}/merge",
        summary="Merge a speaker into another; answers the updated transcript",
        description="The speaker's segments and words are relabelled as `into`, and the speaker is removed.",
        response_model=None,
        responses={
            200: {"model": api_models.Transcript},
            **error_responses({**EDIT_ERRORS, 400: ("INVALID_REQUEST", "MERGE_INTO_SELF")}),
        },
    )
    async def merge_speaker(job_id: str, speaker: str, body: SpeakerMerge, caller: Caller) -> dict:
        job, transcript = await gateway.merge_speaker(caller.owner_id, job_id, speaker, body.into)
        return transcript_json(job, transcript)

    @app.patch(
        "/api/v1/jobs/{job_id}/segments/{segment}",
        summary="Change a segment's text, language or speaker, or restore the machine's text; answers the segment",
        description="One change per request. The machine's text stays in `original_text` until the segment is "
        "reverted. A corrected `language` updates the job's language shares. `speaker` moves the segment and its "
        "words to another speaker, or to a new one (`S1`-`S99`), which splits a merge back turn by turn.",
        response_model=None,
        responses={200: {"model": api_models.Segment}, **error_responses({
            **EDIT_ERRORS, 404: ("JOB_NOT_FOUND", "SEGMENT_NOT_FOUND"),
            400: ("INVALID_REQUEST", "SEGMENT_CHANGE_MISSING", "SEGMENT_TEXT_INVALID", "SEGMENT_TEXT_TOO_LONG",
                  "INVALID_LANGUAGE", "SPEAKER_LABEL_INVALID"),
        })},
    )  # fmt: skip
    async def edit_segment(job_id: str, segment: int, body: SegmentEdit, caller: Caller) -> dict:
        return segment_json(await gateway.edit_segment(caller.owner_id, job_id, segment, body.change()))

    @app.get(
        "/api/v1/jobs/{job_id}/export/{fmt}", summary="Download the transcript as txt, srt, vtt, json or docx",
        response_class=StreamingResponse,
        responses={200: {"content": api_models.EXPORT_CONTENT}, **error_responses({
            400: ("UNSUPPORTED_FORMAT", "INVALID_REQUEST"), **NOT_FOUND, 409: ("TRANSCRIPT_NOT_READY",), **REMOVED,
            **COMMON_ERRORS,
        })},
    )  # fmt: skip
    async def export(job_id: str, fmt: ExportFormatName, caller: Caller, timestamps: bool = True) -> Response:
        if fmt not in EXPORT_FORMATS:
            raise errors.InvalidArgument(
                f"unknown format '{fmt[:20]}'; available: {', '.join(EXPORT_FORMATS)}", code="UNSUPPORTED_FORMAT"
            )
        first, rest = await gateway.export(
            caller.owner_id, job_id, EXPORT_FORMATS[fmt], export_pb2.ExportOptions(timestamps=timestamps)
        )

        async def body() -> AsyncIterator[bytes]:
            yield first.data
            async for chunk in rest:
                yield chunk.data

        return StreamingResponse(
            body(), media_type=first.content_type, headers={"Content-Disposition": content_disposition(first.filename)}
        )

    @app.get(
        "/api/v1/usage", summary="Your usage per day: files, audio minutes, failures, billed seconds and cost",
        response_model=None,
        responses={200: {"model": api_models.UsageReport},
                   **error_responses({400: ("INVALID_REQUEST",), **COMMON_ERRORS})},
    )  # fmt: skip
    async def owner_usage(caller: Caller, days: Annotated[int, Query(ge=1, le=366)] = 30) -> dict:
        return await gateway.usage(caller.owner_id, days)

    @app.get(
        "/api/v1/health", summary="Checks PostgreSQL, NATS, S3 and every service",
        responses={
            200: {"model": api_models.Health},
            503: {"model": api_models.Health, "description": "A check failed"},
        },
    )  # fmt: skip
    async def health() -> JSONResponse:
        healthy, checks = await gateway.health()
        return JSONResponse({"status": "ok" if healthy else "unavailable", "checks": checks}, 200 if healthy else 503)

    @app.get(
        "/api/v1/status", summary="Jobs waiting and the estimated wait for a new upload",
        response_model=None, responses={200: {"model": api_models.ServiceStatus}, **error_responses(UNAVAILABLE)},
    )  # fmt: skip
    async def service_status() -> dict:
        return await gateway.public_status()

    app.include_router(openai_api.openai_router(settings, gateway, auth))
    app.add_middleware(RequestTelemetry)
    return app


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
                failure = error if isinstance(error, KazruError) else errors.from_infrastructure(error)
                if failure is None:
                    log.exception("job status stream failed")
                    failure = errors.Internal("internal error")
                yield _sse_message(error_body(failure), event="error")
                return
            yield _sse_message(job_json(job))
    finally:
        if waiting is not None:
            waiting.cancel()
            with contextlib.suppress(BaseException):
                await waiting
        await updates.aclose()
