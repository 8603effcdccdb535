"""The shapes of the HTTP API's answers, for its OpenAPI document.

The routes build their JSON with `job_json`, `transcript_json`, ... in http_api.py; these models
describe that JSON (schemathesis checks every answer against them in tests/e2e/test_openapi_fuzz.py).
They are documentation, not response_model: a field added to the JSON shows up in answers at once.
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kazru.v1 import job_pb2

log = logging.getLogger(__name__)

JobState = StrEnum("JobState", {name: name for name in job_pb2.Job.State.keys()})  # noqa: SIM118 - protobuf map


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


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable reason, e.g. JOB_NOT_FOUND", examples=["JOB_NOT_FOUND"])
    message: str = Field(description="What went wrong, for a person")
    details: dict[str, Any] = Field(description="Extra facts about the error (e.g. `max_bytes`, `retry_after`)")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class AudioInfo(BaseModel):
    duration_seconds: float = Field(description="What decodes (the header's estimate until transcription starts)")
    codec: str
    channels: int
    sample_rate: int
    container: str
    truncated: bool = Field(description="Far less audio decodes than the file's header claims (truncated or damaged)")
    declared_duration_seconds: float | None = Field(description="What the header claimed, when truncated")


class JobError(BaseModel):
    code: str
    message: str


class JobLinks(BaseModel):
    self: str
    transcript: str
    export: str = Field(description="A template: replace `{format}` with txt, srt, vtt, json or docx")


JOB_EXAMPLE = {
    "job_id": "5b0f3c8e-2d4a-4f7e-9a51-0c6d2e8b7f10",
    "name": "jobs/5b0f3c8e-2d4a-4f7e-9a51-0c6d2e8b7f10",
    "state": "PENDING",
    "progress": 0,
    "filename": "Сұхбат 1.m4a",
    "size_bytes": 1843200,
    "audio": {
        "duration_seconds": 612.4,
        "codec": "aac",
        "channels": 1,
        "sample_rate": 44100,
        "container": "mp4",
        "truncated": False,
        "declared_duration_seconds": None,
    },
    "languages": ["kk", "ru"],
    "max_speakers": None,
    "min_speakers": None,
    "detected_language": None,
    "language_shares": {},
    "speaker_count": None,
    "engine": None,
    "billed_seconds": 0.0,
    "reused_from": None,
    "created_at": "2026-12-01T09:30:00Z",
    "started_at": None,
    "finished_at": None,
    "expires_at": "2026-12-02T09:30:00Z",
    "error": None,
    "links": {
        "self": "/api/v1/jobs/5b0f3c8e-2d4a-4f7e-9a51-0c6d2e8b7f10",
        "transcript": "/api/v1/jobs/5b0f3c8e-2d4a-4f7e-9a51-0c6d2e8b7f10/transcript",
        "export": "/api/v1/jobs/5b0f3c8e-2d4a-4f7e-9a51-0c6d2e8b7f10/export/{format}",
    },
}


class Job(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [JOB_EXAMPLE]})

    job_id: str = Field(json_schema_extra={"format": "uuid"})
    name: str = Field(description="The resource name, `jobs/{job_id}`")
    state: JobState
    progress: int = Field(ge=0, le=100)
    filename: str
    size_bytes: int = Field(ge=0)
    audio: AudioInfo
    languages: list[str] = Field(description="The languages the job may contain (ISO 639-1)")
    max_speakers: int | None
    min_speakers: int | None
    detected_language: str | None = Field(description="The language of most of the speech")
    language_shares: dict[str, float] = Field(description="Language → share of the speech, 0..1")
    speaker_count: int | None
    engine: str | None
    billed_seconds: float
    reused_from: str | None = Field(
        description="The earlier job of yours with the same file and options whose transcript this one took at "
        "once, without running the engine (result reuse); null otherwise",
        json_schema_extra={"format": "uuid"},
    )
    created_at: str | None = Field(json_schema_extra={"format": "date-time"})
    started_at: str | None = Field(json_schema_extra={"format": "date-time"})
    finished_at: str | None = Field(json_schema_extra={"format": "date-time"})
    expires_at: str | None = Field(
        description="When the audio and transcript are deleted", json_schema_extra={"format": "date-time"}
    )
    error: JobError | None
    links: JobLinks


class JobList(BaseModel):
    jobs: list[Job]
    next_page_token: str | None = Field(description="Pass as `page_token` for the next page; null on the last")


class Word(BaseModel):
    start: float
    end: float
    text: str
    probability: float
    speaker: str | None


class Segment(BaseModel):
    index: int
    start: float = Field(description="Seconds from the start of the audio")
    end: float
    speaker: str | None
    language: str
    confidence: float
    text: str
    edited: bool
    original_text: str | None = Field(description="The machine's text, while the segment is edited")
    words: list[Word]


class Speaker(BaseModel):
    id: str = Field(examples=["S1"])
    label: str = Field(description="The name to show (the id until renamed)")
    speaking_seconds: float
    segment_count: int


class Transcript(BaseModel):
    job_id: str = Field(json_schema_extra={"format": "uuid"})
    language: str | None
    duration_seconds: float
    language_shares: dict[str, float]
    speakers: list[Speaker]
    segments: list[Segment]


class HealthCheck(BaseModel):
    ok: bool
    error: str | None = None
    latency_ms: float


class Health(BaseModel):
    status: str = Field(description="`ok`, or `unavailable` (with status 503) when any check failed")
    checks: dict[str, HealthCheck] = Field(description="PostgreSQL, NATS, S3 and each internal service")


class UsageFigures(BaseModel):
    files: int = Field(description="Uploads that finished, failed, were cancelled or deleted (counted once)")
    audio_seconds: float
    audio_minutes: float
    succeeded: int
    failed: int
    cancelled: int
    engine_billed_seconds: float = Field(description="What an external engine (SpeechKit) bills for")
    estimated_cost: float = Field(description="Billed minutes times the operator's price per minute")


class UsageDay(UsageFigures):
    day: str = Field(description="The day of upload (UTC)", json_schema_extra={"format": "date"})


class UsageReport(BaseModel):
    days: list[UsageDay] = Field(description="Newest first; days without uploads as zeros")
    totals: UsageFigures


class Queue(BaseModel):
    pending: int = Field(description="Jobs waiting for a worker")


class ServiceStatus(BaseModel):
    queue: Queue
    estimated_wait_seconds: float | None = Field(description="How long a new upload would wait to start; null: unknown")


ERROR_DESCRIPTIONS = {
    400: "Invalid request (a parameter, the body, the form, an unknown export format)",
    401: "The API key is not valid, or the Authorization header is malformed",
    403: "A write with the session cookie but without the CSRF token, or from another origin",
    404: "No such job for this caller (another owner's job is answered the same way)",
    409: "The job is not in a state that allows this (e.g. no transcript yet)",
    410: "Expired or deleted: the audio and transcript are gone",
    413: "The upload is larger than the gateway accepts",
    415: "The file is not audio the service can read",
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
    "RECORDING_TOO_LONG": "the recording is 4.2 h long; at most 3 h are accepted",
    "NOT_AUDIO": "the file is not a supported audio format (WAV, FLAC, MP3, OGG/Opus, M4A, WebM)",
    "AUDIO_UNDECODABLE": "the file is not audio ffmpeg can decode",
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


# The upload is read as a stream (services/gateway/multipart.py), so FastAPI does not see its form;
# this is the form as the handler reads it. Fields before the file apply from the start.
UPLOAD_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "languages": {
                        "type": "string",
                        "description": "Comma-separated ISO 639-1 codes the recording may contain, e.g. `kk,ru`",
                        "examples": ["kk,ru"],
                    },
                    "language": {"type": "string", "description": "The same as `languages`"},
                    "min_speakers": {"type": "integer", "minimum": 1, "description": "At least this many speakers"},
                    "max_speakers": {"type": "integer", "minimum": 1, "description": "At most this many speakers"},
                    "file": {"type": "string", "format": "binary", "description": "The recording (any common format)"},
                },
            }
        }
    },
}
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
