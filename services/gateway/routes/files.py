"""Files of a job: the original recording (with ranges, for a player) and the transcript's exports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response, StreamingResponse

from kazru.adapters import byte_ranges
from kazru.domain import errors, export_formats
from kazru.v1 import export_pb2
from services.gateway import openapi_docs as docs
from services.gateway.http_errors import error_response
from services.gateway.routes.dependencies import Caller, GatewayDep

EXPORT_FORMATS = export_formats.BY_NAME
# Documented as an enum; any other name is answered 400 UNSUPPORTED_FORMAT by the route itself.
ExportFormatName = Annotated[str, Path(description="The file format", json_schema_extra={"enum": list(EXPORT_FORMATS)})]

router = APIRouter(prefix="/api/v1/jobs/{job_id}")


def content_disposition(filename: str) -> str:
    """RFC 6266 with an ASCII fallback and the exact UTF-8 name (RFC 5987)."""
    fallback = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


# HEAD answers as GET does, without the body: a player or a download manager asks for the size first.
@router.head("/audio", include_in_schema=False, response_class=StreamingResponse)
@router.get(
    "/audio",
    summary="The original recording, with HTTP range requests so a player can seek",
    description="Send `Range: bytes=START-END` (or `bytes=-N` for the last N bytes) for `206` and a part; "
    "a range outside the recording is `416`. A deleted or expired job's audio is `410`.",
    response_class=StreamingResponse,
    responses={200: {"content": {"audio/*": {"schema": {"type": "string", "format": "binary"}}}},
               206: {"description": "The requested part", "content": {"audio/*": {}}},
               **docs.error_responses({
                   **docs.NOT_FOUND, 410: ("JOB_DELETED", "JOB_EXPIRED", "AUDIO_DELETED"),
                   416: ("RANGE_NOT_SATISFIABLE",), **docs.COMMON_ERRORS,
                   500: ("ENCRYPTION_KEY_UNKNOWN", "ENCRYPTION_KEY_MISMATCH", "OBJECT_UNREADABLE")})},
)  # fmt: skip
async def job_audio(job_id: str, caller: Caller, gateway: GatewayDep, request: Request) -> Response:
    audio = await gateway.audio(caller.owner_id, job_id)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, no-store"}
    try:
        wanted = byte_ranges.parse_range(request.headers.get("range"), audio.size_bytes)
    except byte_ranges.Unsatisfiable as error:
        refusal = errors.InvalidArgument(str(error), code="RANGE_NOT_SATISFIABLE", details={"size_bytes": error.size})
        return error_response(refusal, status=416, headers={**headers, "Content-Range": f"bytes */{error.size}"})
    part = wanted or byte_ranges.ByteRange(0, audio.size_bytes - 1)
    headers["Content-Length"] = str(part.length)
    if wanted is not None:
        headers["Content-Range"] = wanted.content_range(audio.size_bytes)
    status = 206 if wanted else 200
    if request.method == "HEAD":  # the object is not opened
        return Response(status_code=status, headers=headers, media_type=audio.media_type)
    first, rest = await gateway.read_audio(audio, part.start, part.length)

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in rest:
            yield chunk

    return StreamingResponse(body(), status, headers=headers, media_type=audio.media_type)


@router.get(
    "/export/{fmt}", summary="Download the transcript as txt, srt, vtt, json or docx",
    response_class=StreamingResponse,
    responses={200: {"content": docs.EXPORT_CONTENT}, **docs.error_responses({
        400: ("UNSUPPORTED_FORMAT", "INVALID_REQUEST"), **docs.NOT_FOUND, 409: ("TRANSCRIPT_NOT_READY",),
        **docs.REMOVED, **docs.COMMON_ERRORS,
    })},
)  # fmt: skip
async def export(
    job_id: str, fmt: ExportFormatName, caller: Caller, gateway: GatewayDep, timestamps: bool = True
) -> Response:
    fmt = fmt.lower()  # export/TXT is export/txt
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
