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

from pydantic import BaseModel, Field

from kazru.v1 import job_pb2

log = logging.getLogger(__name__)

JobState = StrEnum("JobState", {name: name for name in job_pb2.Job.State.keys()})  # noqa: SIM118 - protobuf map


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable reason, e.g. JOB_NOT_FOUND", examples=["JOB_NOT_FOUND"])
    message: str = Field(description="What went wrong, for a person")
    details: dict[str, Any] = Field(description="Extra facts about the error (e.g. `max_bytes`, `retry_after`)")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class AudioInfo(BaseModel):
    duration_seconds: float
    codec: str
    channels: int
    sample_rate: int
    container: str


class JobError(BaseModel):
    code: str
    message: str


class JobLinks(BaseModel):
    self: str
    transcript: str
    export: str = Field(description="A template: replace `{format}` with txt, srt, vtt, json or docx")


class Job(BaseModel):
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


class Queue(BaseModel):
    pending: int
    in_progress: int


class Workers(BaseModel):
    active: int
    busy: int
    idle: int


class Throughput(BaseModel):
    window_minutes: float
    jobs_finished: int
    jobs_per_minute: float
    mean_processing_seconds: float | None


class ServiceStatus(BaseModel):
    queue: Queue
    workers: Workers
    throughput: Throughput
    estimated_wait_seconds: float | None


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
    503: "A dependency (database, bus, storage, a service) is unavailable; retry later",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all with the one error body."""
    return {status: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[status]} for status in statuses}


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
