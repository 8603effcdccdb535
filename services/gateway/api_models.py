"""The HTTP API's answers: each model is both the serializer a route declares as its `response_model`
and the schema of the OpenAPI document, so the document cannot drift from the answers
(schemathesis checks every answer against it too, in tests/e2e/test_openapi_fuzz.py).

Protobuf messages become models through `from_proto`; plain figures (usage, status, health) are
validated into the model by FastAPI on the way out. The job itself is `kazru.api_json.Job`, shared
with the CLI.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from kazru.api_json import Job
from kazru.v1 import job_pb2, transcript_pb2


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable reason, e.g. JOB_NOT_FOUND", examples=["JOB_NOT_FOUND"])
    message: str = Field(description="What went wrong, for a person")
    details: dict[str, Any] = Field(description="Extra facts about the error (e.g. `max_bytes`, `retry_after`)")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class JobList(BaseModel):
    jobs: list[Job]
    next_page_token: str | None = Field(description="Pass as `page_token` for the next page; null on the last")


class Word(BaseModel):
    start: float
    end: float
    text: str
    probability: float
    speaker: str | None

    @classmethod
    def from_proto(cls, word: transcript_pb2.Word) -> Word:
        return cls(
            start=word.start_seconds, end=word.end_seconds, text=word.text, probability=word.probability,
            speaker=word.speaker or None,
        )  # fmt: skip


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

    @classmethod
    def from_proto(cls, segment: transcript_pb2.Segment) -> Segment:
        return cls(
            index=segment.index, start=segment.start_seconds, end=segment.end_seconds,
            speaker=segment.speaker or None, language=segment.language, confidence=segment.confidence,
            text=segment.text, edited=segment.edited, original_text=segment.original_text if segment.edited else None,
            words=[Word.from_proto(word) for word in segment.words],
        )  # fmt: skip


class Speaker(BaseModel):
    id: str = Field(examples=["S1"])
    label: str = Field(description="The name to show (the id until renamed)")
    speaking_seconds: float
    segment_count: int

    @classmethod
    def from_proto(cls, speaker: transcript_pb2.Speaker) -> Speaker:
        return cls(
            id=speaker.id, label=speaker.label, speaking_seconds=speaker.speaking_seconds,
            segment_count=speaker.segment_count,
        )  # fmt: skip


class Transcript(BaseModel):
    job_id: str = Field(json_schema_extra={"format": "uuid"})
    language: str | None
    duration_seconds: float
    language_shares: dict[str, float]
    speakers: list[Speaker]
    segments: list[Segment]

    @classmethod
    def from_proto(cls, job: job_pb2.Job, transcript: transcript_pb2.Transcript) -> Transcript:
        return cls(
            job_id=job.job_id, language=job.detected_language or None, duration_seconds=transcript.duration_seconds,
            language_shares=dict(job.language_shares),
            speakers=[Speaker.from_proto(speaker) for speaker in transcript.speakers],
            segments=[Segment.from_proto(segment) for segment in transcript.segments],
        )  # fmt: skip


class HealthCheck(BaseModel):
    ok: bool
    # Only a failed check says why.
    error: str | None = Field(default=None, exclude_if=lambda error: error is None)
    latency_ms: float
    # Only under `make run`, whose supervisor restarts a service that dies (Kubernetes reports its own).
    restarts: int | None = Field(
        default=None, exclude_if=lambda restarts: restarts is None,
        description="Times the local run restarted this service after it died",
    )  # fmt: skip
    restarting: bool | None = Field(
        default=None, exclude_if=lambda restarting: restarting is None,
        description="Dead and about to be started again (the local run waits longer after each crash)",
    )  # fmt: skip
    last_exit: str | None = Field(
        default=None, exclude_if=lambda last_exit: last_exit is None,
        description="How the service last died, e.g. `killed by SIGKILL` or `exited with code 1`",
    )  # fmt: skip


class ConfiguredEngine(BaseModel):
    name: str = Field(description="The speech engine new jobs run on: `whisper`, `gigaam` or `speechkit`")
    model: str = Field(description="Its model, as a job names the one that transcribed it (`gigaam-multilingual-ctc`)")


class Health(BaseModel):
    status: str = Field(description="`ok`, or `unavailable` (with status 503) when any check failed")
    checks: dict[str, HealthCheck] = Field(description="PostgreSQL, NATS, S3 and each internal service")
    engine: ConfiguredEngine


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
    engine: ConfiguredEngine
    estimated_wait_seconds: float | None = Field(description="How long a new upload would wait to start; null: unknown")
