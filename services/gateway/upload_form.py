"""An upload as a multipart form (field `file` plus option fields), streamed from the HTTP request to ingest.

Shared by the /api/v1 upload and the OpenAI-compatible transcription route. Option fields before the
file become the job's options; fields after it arrive as late options, so the order of a client's
form fields does not matter. After a refusal the rest of the body is read and dropped (up to a bound),
so the client reads our answer instead of a reset connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from starlette.requests import ClientDisconnect, Request

from kazru.domain import errors, upload_protocol
from kazru.domain.errors import KazruError
from kazru.settings import Settings
from kazru.v1 import job_pb2
from services.gateway import multipart
from services.gateway.auth import Principal
from services.gateway.core import Gateway, UploadItem, UploadStart

# multipart framing and small fields on top of the file itself
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# After rejecting an upload, read (and drop) at most this much more of the body.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
INT32_MAX = 2**31 - 1

# Called with each field's name and value as it arrives: raises to refuse the upload.
FieldCheck = Callable[[str, str], None]


def parse_options(fields: dict[str, str], languages_when_absent: Sequence[str] = ()) -> job_pb2.TranscriptionOptions:
    """`languages_when_absent`: the languages of a form that names none (none: the service's default)."""
    options = job_pb2.TranscriptionOptions()
    if "language" in fields or "languages" in fields:
        raw = fields.get("languages", fields.get("language", ""))
        options.languages.extend(part.strip() for part in raw.split(",") if part.strip())
    else:
        options.languages.extend(languages_when_absent)
    for name in ("min_speakers", "max_speakers"):
        if fields.get(name, "").strip():
            code = f"INVALID_{name.upper()}"
            try:
                value = int(fields[name])
            except ValueError:
                raise errors.InvalidArgument(f"{name} must be a whole number", code=code) from None
            if value <= 0:
                raise errors.InvalidArgument(f"{name} must be at least 1", code=code)
            if value > INT32_MAX:  # the protobuf field is int32; ingest checks the real limit
                raise errors.InvalidArgument(f"{name} is too large", code=code)
            setattr(options, name, value)
    return options


async def upload_from_request(
    request: Request,
    gateway: Gateway,
    caller: Principal,
    settings: Settings,
    fields: dict[str, str] | None = None,
    check_field: FieldCheck | None = None,
    languages_when_absent: Sequence[str] = (),
) -> job_pb2.Job:
    """Stream the request's form to ingest as a new job. `fields` (if given) receives every field;
    a field sent more than once keeps its values joined by commas (`timestamp_granularities[]`).
    `languages_when_absent`: the job's languages when the form names none (none: the service's default)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES:
        raise upload_protocol.too_large(settings.max_upload_bytes)
    events = multipart.read_form(_body(request), request.headers.get("content-type"))
    try:
        return await _upload_from_form(
            gateway, caller, events, {} if fields is None else fields, check_field or _accept_any,
            request.headers.get("idempotency-key", ""), request.client.host if request.client else "",
            tuple(languages_when_absent),
        )  # fmt: skip
    except KazruError:
        await _drain(request)
        raise


def _accept_any(name: str, value: str) -> None:
    return None


def _keep(fields: dict[str, str], field: multipart.Field, check_field: FieldCheck) -> None:
    check_field(field.name, field.value)
    fields[field.name] = f"{fields[field.name]},{field.value}" if field.name in fields else field.value


async def _upload_from_form(
    gateway: Gateway,
    caller: Principal,
    events: AsyncIterator[object],
    fields: dict[str, str],
    check_field: FieldCheck,
    request_id: str,
    client_address: str,
    languages_when_absent: tuple[str, ...],
) -> job_pb2.Job:
    async for event in events:
        if isinstance(event, multipart.Field):
            _keep(fields, event, check_field)
        elif isinstance(event, multipart.FileStart):
            options = parse_options(fields, languages_when_absent)
            start = UploadStart(event.filename, event.content_type, options, request_id)
            rest = _rest_of_form(events, fields, check_field, languages_when_absent)
            return await gateway.upload(caller, start, rest, client_address=client_address)
    raise errors.InvalidArgument("the form has no 'file' field", code="FILE_FIELD_MISSING")


async def _rest_of_form(
    events: AsyncIterator[object],
    fields: dict[str, str],
    check_field: FieldCheck,
    languages_when_absent: tuple[str, ...],
) -> AsyncIterator[UploadItem]:
    """File bytes until the file ends; then any fields that came after it, as late options."""
    async for event in events:
        if isinstance(event, bytes):
            yield event
        elif isinstance(event, multipart.FileStart):
            raise errors.InvalidArgument("send exactly one 'file' field", code="MULTIPLE_FILES")
        elif isinstance(event, multipart.Field):
            _keep(fields, event, check_field)
            yield parse_options(fields, languages_when_absent)


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        # Raised into the upload stream, so ingest cancels it and keeps nothing.
        raise errors.InvalidArgument("the client disconnected during the upload", code="UPLOAD_INTERRUPTED") from None


async def _drain(request: Request) -> None:
    drained = 0
    try:
        async for chunk in request.stream():
            drained += len(chunk)
            if drained > DRAIN_LIMIT_BYTES:
                break
    except Exception:  # noqa: BLE001 - the body is already consumed or the client left
        pass
