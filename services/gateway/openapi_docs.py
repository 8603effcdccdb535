"""The OpenAPI document as clients see it, and Swagger UI served from the gateway itself.

What the routes cannot say through their models lives here: the quick start, every error code with a
real message and the statuses that carry it (`error_responses`), the streamed upload's form, the
export formats' content and the status stream's events.

FastAPI's own docs page loads Swagger UI from a CDN and starts it with an inline script; ours loads
the copy bundled in the `fastapi-offline` package and starts it from a file, so the page needs
nothing from outside and works under a CSP without 'unsafe-inline' scripts.
"""

from __future__ import annotations

import json
import logging
from importlib import resources, util
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from kazru.domain import upload_protocol
from services.gateway.api_models import ErrorResponse

log = logging.getLogger(__name__)

DOCS_PATH = "/api/v1/docs"
OPENAPI_PATH = "/api/v1/openapi.json"
# FastAPI's validation error, which this API never sends: RequestValidationError answers 400 with our body.
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")

DOCS_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>KazRu-STT Pro — HTTP API</title>
<link rel="stylesheet" href="{DOCS_PATH}/assets/swagger-ui.css">
<link rel="icon" href="{DOCS_PATH}/assets/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS_PATH}/assets/swagger-ui-bundle.js"></script>
<script src="{DOCS_PATH}/start.js"></script>
</body>
</html>
"""
MISSING_ASSETS_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>KazRu-STT Pro — HTTP API</title></head>
<body><p>Swagger UI is not installed here (<code>pip install fastapi-offline</code>).
The OpenAPI document: <a href="{OPENAPI_PATH}">{OPENAPI_PATH}</a>.</p></body></html>
"""
# "Try it out" acts as this browser's session unless an API key is given (Authorize); a session's
# writes need its CSRF token (services/gateway/csrf.py), sent here as the page sends it.
DOCS_START = f""""use strict";
window.ui = SwaggerUIBundle({{
  url: "{OPENAPI_PATH}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  validatorUrl: null,  // no badge from validator.swagger.io: the docs load nothing from outside
  requestInterceptor: (request) => {{
    const csrf = document.cookie.split("; ").find((pair) => pair.startsWith("kazru_csrf="));
    if (csrf) request.headers["X-CSRF-Token"] = csrf.slice("kazru_csrf=".length);
    return request;
  }},
}});
"""
# The document's description: how to use the API from nothing to a downloaded transcript.
QUICK_START = """
Transcription of Kazakh, Russian and mixed recordings, split by speaker, with timings and the language of
each segment. Everything uploaded or derived is deleted 24 hours after upload, or at once on `DELETE`.

**Quick start** (with an API key; under `make run` no key is needed):

1. Upload: `curl -H "Authorization: Bearer $KEY" -F file=@interview.m4a -F languages=kk,ru
   http://HOST:8080/api/v1/upload` answers `202` with the job (`state` `PENDING`) and its `Location`.
2. Follow: `GET /api/v1/jobs/{job_id}/status` streams the job (Server-Sent Events) at each change of state
   or progress until it ends; or poll `GET /api/v1/jobs/{job_id}`. `SUCCEEDED` means the transcript is ready.
3. Read: `GET /api/v1/jobs/{job_id}/transcript`: speakers, and segments with speaker, start, end, language,
   text and words. Name speakers with `PUT .../speakers`, fix text with `PATCH .../segments/{n}`.
4. Export: `GET /api/v1/jobs/{job_id}/export/srt` (or `txt`, `vtt`, `json`, `docx`).
5. Delete now: `DELETE /api/v1/jobs/{job_id}`.

**Errors** are `{"error": {"code", "message", "details"}}`; each route lists its codes and status.
`429` carries `Retry-After`. **OpenAI-compatible**: `POST /v1/audio/transcriptions` and `GET /v1/models`
take OpenAI's SDKs and tools unchanged (errors there in OpenAI's shape).
"""


ERROR_DESCRIPTIONS = {
    400: "Invalid request (a parameter, the body, the form, an unknown export format)",
    401: "The API key is not valid, or the Authorization header is malformed",
    403: "A write with the session cookie but without the CSRF token, or from another origin",
    404: "No such job for this caller (another owner's job is answered the same way)",
    409: "The job is not in a state that allows this (e.g. no transcript yet)",
    410: "Expired or deleted: the audio and transcript are gone",
    413: "The upload, or a JSON body, is larger than the gateway accepts",
    415: "The file is not audio the service can read",
    422: "The Idempotency-Key was already used with a different file or different options",
    416: "The byte range is outside the recording",
    429: "Too many uploads; retry after `Retry-After` seconds",
    500: "The stored audio does not decrypt: its master key is not configured or differs, or the object was changed",
    503: "A dependency (database, bus, storage, a service) is unavailable; retry later",
}

# Every error code the API answers with, and a message it really sends with it (for the examples).
# tests/unit/test_api_docs.py checks that each is raised somewhere in the code.
ERROR_MESSAGES = {
    "INVALID_REQUEST": "query.page_size: Input should be less than or equal to 100",
    "INVALID_PAGE_TOKEN": "page_token is not valid",
    "NOT_MULTIPART": "the upload must be multipart/form-data with a 'file' field",
    "MALFORMED_MULTIPART": "the multipart body is malformed",
    "FILE_FIELD_MISSING": "the form has no 'file' field",
    "MULTIPLE_FILES": "send exactly one 'file' field",
    "TOO_MANY_FIELDS": "too many form fields",
    "FIELD_TOO_LONG": "form field 'languages' is too long",
    "EMPTY_FILE": "the file is empty",
    "INVALID_LANGUAGE": "unsupported language(s): de; supported: kk, ru, en",
    "INVALID_MIN_SPEAKERS": "min_speakers must not exceed max_speakers",
    "INVALID_MAX_SPEAKERS": "max_speakers must be a whole number",
    "INVALID_IDEMPOTENCY_KEY": "the idempotency key must be 1-128 printable ASCII characters without spaces",
    "UPLOAD_INTERRUPTED": "the client disconnected during the upload",
    "UNSUPPORTED_FORMAT": "unknown format 'pdf'; available: txt, srt, vtt, json, docx",
    "SPEAKERS_EMPTY": "name at least one speaker",
    "SPEAKER_NAME_EMPTY": "the name for S1 is empty",
    "SPEAKER_NAME_INVALID": "the name for S1 contains control characters",
    "SPEAKER_NAME_TOO_LONG": "the name for S1 has 140 characters; at most 100 are allowed",
    "MERGE_INTO_SELF": "a speaker cannot be merged into itself",
    "SEGMENT_CHANGE_MISSING": "send one of 'text', '\"revert\": true', 'language' or 'speaker'",
    "SPEAKER_LABEL_INVALID": "'X' is neither a speaker of the job nor a new label S1-S99",
    "SEGMENT_TEXT_INVALID": "the text contains control characters",
    "SEGMENT_TEXT_TOO_LONG": "the text has 12000 characters; at most 10000 are allowed",
    "API_KEY_REQUIRED": "an API key is required",
    "INVALID_API_KEY": "the API key is not valid",
    "INVALID_AUTHORIZATION": "use 'Authorization: Bearer <api key>'",
    "CSRF_TOKEN_MISSING": "send the kazru_csrf cookie's value as the X-CSRF-Token header",
    "CSRF_TOKEN_INVALID": "the X-CSRF-Token header does not match the session",
    "CSRF_ORIGIN_REFUSED": "cross-origin writes are refused; call the API with an API key",
    "JOB_NOT_FOUND": "job not found",
    "SPEAKER_NOT_FOUND": "the job has no speaker 'S9'",
    "SEGMENT_NOT_FOUND": "the transcript has no segment 99",
    "TRANSCRIPT_NOT_READY": "the transcript is not ready: job is RUNNING",
    "ILLEGAL_STATE_TRANSITION": "a PENDING job cannot become SUCCEEDED",
    "JOB_DELETED": "the job's audio and transcript have been deleted",
    "JOB_EXPIRED": "the job's audio and transcript have been deleted",
    "AUDIO_DELETED": "the job's audio has been deleted",
    "UPLOAD_TOO_LARGE": "the file is larger than the 500 MiB limit",
    "BODY_TOO_LARGE": "the request body is larger than 1048576 bytes",
    "IDEMPOTENCY_KEY_REUSED": "Idempotency-Key is already used with a different request payload",
    "RECORDING_TOO_LONG": "the recording is 4.2 h long; at most 3 h are accepted",
    "NOT_AUDIO": upload_protocol.not_audio().message,
    "AUDIO_UNDECODABLE": "the recording is damaged or cut short: its sound could not be decoded",
    "NO_AUDIO_TRACK": "the file has no sound track (a video without sound?): there is nothing to transcribe",
    "AUDIO_CODEC_UNSUPPORTED": "the sound in the file is encoded in a way this service cannot decode; save it as "
    "MP3, FLAC, WAV or Opus and upload it again",
    "ENCRYPTION_KEY_UNKNOWN": "the audio is encrypted with master key '2026-01', which is not in KAZRU_ENCRYPTION_KEYS",
    "ENCRYPTION_KEY_MISMATCH": "the audio does not open with master key '2026-01': the key differs from the one it "
    "was sealed with, or the object's header was changed",
    "OBJECT_UNREADABLE": "the stored audio cannot be decrypted: its chunk 3 has been changed, moved or cut",
    "AUDIO_EMPTY": "the file holds no audio samples",
    "RANGE_NOT_SATISFIABLE": "the requested range is outside the 73012 bytes of the audio",
    "RATE_LIMITED": "at most 10 uploads per 60 s; try again in 42 s",
    "DATABASE_UNAVAILABLE": "the database is unavailable; try again",
    "BUS_UNAVAILABLE": "the message bus is unavailable; try again",
    "STORAGE_UNAVAILABLE": "object storage is unavailable; try again",
    "SERVICE_UNAVAILABLE": "an internal service is unavailable, try again shortly",
}
AUTH_ERRORS = {401: ("INVALID_API_KEY", "INVALID_AUTHORIZATION", "API_KEY_REQUIRED")}
WRITE_ERRORS = {403: ("CSRF_TOKEN_MISSING", "CSRF_TOKEN_INVALID", "CSRF_ORIGIN_REFUSED")}
UNAVAILABLE = {503: ("DATABASE_UNAVAILABLE", "BUS_UNAVAILABLE", "STORAGE_UNAVAILABLE", "SERVICE_UNAVAILABLE")}
NOT_FOUND = {404: ("JOB_NOT_FOUND",)}
REMOVED = {410: ("JOB_DELETED", "JOB_EXPIRED")}
# Errors every route can answer with: a bad key, a dependency down; writes: the page's CSRF rules.
COMMON_ERRORS = {**AUTH_ERRORS, **UNAVAILABLE}
WRITE_COMMON_ERRORS = {**COMMON_ERRORS, **WRITE_ERRORS}
EDIT_ERRORS = {
    **WRITE_COMMON_ERRORS, 404: ("JOB_NOT_FOUND", "SPEAKER_NOT_FOUND"), 409: ("TRANSCRIPT_NOT_READY",), **REMOVED
}  # fmt: skip


def error_responses(codes: dict[int, tuple[str, ...]]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route's error statuses, each with the codes it answers and an example of each."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status, status_codes in sorted(codes.items()):
        examples = {
            code: {"summary": code, "value": {"error": {"code": code, "message": ERROR_MESSAGES[code], "details": {}}}}
            for code in status_codes
        }
        responses[status] = {
            "model": ErrorResponse,
            "description": f"{ERROR_DESCRIPTIONS[status]}. Codes: {', '.join(f'`{code}`' for code in status_codes)}",
            "content": {"application/json": {"examples": examples}},
        }
    return responses


def multipart_form(properties: dict[str, Any]) -> dict[str, Any]:
    """A request body of a multipart form with a required `file` field, as an upload route reads it.
    The uploads are read as a stream (services/gateway/multipart.py), so FastAPI does not see their forms."""
    schema = {"type": "object", "required": ["file"], "properties": properties}
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


# The models of the JSON bodies routes read themselves, placed among the document's schemas.
JSON_BODY_MODELS: dict[str, type[BaseModel]] = {}


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """A request body of JSON as `model` describes it, for a route that reads it itself
    (routes/dependencies.py json_body) so that FastAPI does not read it first."""
    JSON_BODY_MODELS[model.__name__] = model
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}


# Fields before the file apply from the start.
UPLOAD_REQUEST_BODY = multipart_form({
    "languages": {
        "type": "string",
        "description": "Comma-separated ISO 639-1 codes the recording may contain, e.g. `kk,ru`",
        "examples": ["kk,ru"],
    },
    "language": {"type": "string", "description": "The same as `languages`"},
    "min_speakers": {"type": "integer", "minimum": 1, "description": "At least this many speakers"},
    "max_speakers": {"type": "integer", "minimum": 1, "description": "At most this many speakers"},
    "file": {"type": "string", "format": "binary", "description": "The recording (any common format)"},
})  # fmt: skip
EXPORT_CONTENT = {
    **{
        media_type: {"schema": {"type": "string", "format": "binary"}}
        for media_type in (
            "text/plain", "application/x-subrip", "text/vtt",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        )
    },
    # The exporter's own JSON Schema, placed among the document's schemas by openapi_docs.
    "application/json": {"schema": {"$ref": "#/components/schemas/TranscriptExport"}},
}  # fmt: skip


def transcript_export_schemas() -> dict[str, Any]:
    """services/exporter/schemas/transcript.schema.json as OpenAPI component schemas: TranscriptExport and
    its `$defs` as TranscriptExport_<name> (a `$ref` inside an OpenAPI document points from the document's root)."""
    try:
        source = (resources.files("services.exporter") / "schemas" / "transcript.schema.json").read_text("utf-8")
    except FileNotFoundError:  # an installed package without its data files: still a valid document
        log.warning("services/exporter/schemas/transcript.schema.json is not installed; JSON export undescribed")
        return {"TranscriptExport": {"type": "object", "description": "The transcript export (schema not installed)"}}
    schema = json.loads(source)
    definitions = schema.pop("$defs", {})
    for keyword in ("$schema", "$id"):
        schema.pop(keyword, None)
    named = {"TranscriptExport": schema, **{f"TranscriptExport_{name}": d for name, d in definitions.items()}}
    text = json.dumps(named).replace('"#/$defs/', '"#/components/schemas/TranscriptExport_')
    return json.loads(text)


# One event of the job status stream (described as Open API 3.2 describes Server-Sent Events): `data` is
# the job as JSON, or with `event: error`, the error that ended the stream.
JOB_EVENT_SCHEMA = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "enum": ["message", "error"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "anyOf": [{"$ref": "#/components/schemas/Job"}, {"$ref": "#/components/schemas/ErrorResponse"}]
            },
        },
    },
}
UPLOAD_PARAMETERS = [
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Send the same key when retrying an upload: the job the first attempt made is answered "
        "again instead of a second job",
        "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!-~]+$"},
    }
]


# Either an API key or, for browsers, the session cookie (or nothing, where KAZRU_ANONYMOUS_ACCESS=shared).
SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`kazru-admin keys create`, or KAZRU_BOOTSTRAP_API_KEY): `Authorization: Bearer <key>`",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "kazru_session",
        "description": "The browser session the gateway sets itself (HttpOnly); its writes need `X-CSRF-Token`",
    },
}


def install(app: FastAPI) -> None:
    """Serve the docs page at DOCS_PATH; the app is created with docs_url=None and openapi_url=OPENAPI_PATH."""
    if util.find_spec("fastapi_offline") is not None:
        assets = resources.files("fastapi_offline") / "static"
        app.mount(f"{DOCS_PATH}/assets", StaticFiles(directory=str(assets)), name="docs-assets")
        docs_page_html = DOCS_PAGE
    else:
        log.warning("fastapi-offline is not installed: %s shows only a link to the OpenAPI document", DOCS_PATH)
        docs_page_html = MISSING_ASSETS_PAGE

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs_page() -> HTMLResponse:
        return HTMLResponse(docs_page_html)

    @app.get(f"{DOCS_PATH}/start.js", include_in_schema=False)
    async def docs_start() -> Response:
        return Response(DOCS_START, media_type="text/javascript")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = without_fastapi_validation_errors(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    summary=app.summary,
                    description=app.description,
                    routes=app.routes,
                )  # fmt: skip
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def without_fastapi_validation_errors(document: dict[str, Any]) -> dict[str, Any]:
    """Drop the 422 answers FastAPI adds to every operation with parameters (we answer 400 instead);
    add the JSON export's schemas, those of the JSON bodies routes read themselves and the ways to authenticate;
    say that job ids are UUIDs (any other id is simply not found: 404)."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):
                del responses["422"]
            for parameter in operation.get("parameters", ()):
                if parameter["in"] == "path" and parameter["name"] == "job_id":
                    parameter["schema"]["format"] = "uuid"
    schemas = document.get("components", {}).get("schemas", {})
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    schemas.update(transcript_export_schemas())  # the export route's JSON
    for name, model in JSON_BODY_MODELS.items():
        schemas[name] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    document["security"] = [{"apiKey": []}, {"session": []}, {}]
    return document
