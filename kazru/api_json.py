"""A job as JSON, the way the HTTP API answers it and `kazru show` prints it.

`Job` is at once the serializer and the OpenAPI schema: the gateway's routes declare it as their
`response_model` and build it with `Job.from_proto`, the CLI dumps the same model, so the document,
the answers and the CLI cannot drift apart (`created_at`, `size_bytes` as a number).
"""

from __future__ import annotations

from enum import StrEnum

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict, Field

from kazru.v1 import job_pb2

JobState = StrEnum("JobState", {name: name for name in job_pb2.Job.State.keys()})  # noqa: SIM118 - protobuf map


def _iso(stamp: Timestamp, present: bool) -> str | None:
    return stamp.ToDatetime().isoformat() + "Z" if present else None


class AudioInfo(BaseModel):
    duration_seconds: float = Field(description="What decodes (the header's estimate until transcription starts)")
    codec: str
    channels: int
    sample_rate: int
    container: str
    truncated: bool = Field(description="Far less audio decodes than the file's header claims (truncated or damaged)")
    declared_duration_seconds: float | None = Field(description="What the header claimed, when truncated")

    @classmethod
    def from_proto(cls, audio: job_pb2.AudioInfo) -> AudioInfo:
        return cls(
            duration_seconds=audio.duration_seconds,
            codec=audio.codec,
            channels=audio.channels,
            sample_rate=audio.sample_rate,
            container=audio.container,
            truncated=audio.truncated,
            declared_duration_seconds=audio.declared_duration_seconds if audio.truncated else None,
        )


class JobError(BaseModel):
    code: str
    message: str


class JobNotice(BaseModel):
    code: str = Field(description="NO_SPEECH: no speech was found; UNSUPPORTED_LANGUAGE: most of the speech is "
                      "in a language not chosen for the job", examples=["NO_SPEECH"])
    message: str = Field(description="The same for people, in English")
    language: str | None = Field(description="The language the notice is about (ISO 639-1): for "
                                 "UNSUPPORTED_LANGUAGE the one heard; else null")


class JobLinks(BaseModel):
    self: str
    transcript: str
    export: str = Field(description="A template: replace `{format}` with txt, srt, vtt, json or docx")

    @classmethod
    def of(cls, job_id: str) -> JobLinks:
        return cls(
            self=f"/api/v1/jobs/{job_id}",
            transcript=f"/api/v1/jobs/{job_id}/transcript",
            export=f"/api/v1/jobs/{job_id}/export/{{format}}",
        )


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
    "notices": [],
    "engine": None,
    "engine_model": None,
    "billed_seconds": 0.0,
    "reused_from": None,
    "created_at": "2026-12-01T09:30:00Z",
    "started_at": None,
    "finished_at": None,
    "expires_at": "2026-12-02T09:30:00Z",
    "error": None,
    "links": JobLinks.of("5b0f3c8e-2d4a-4f7e-9a51-0c6d2e8b7f10").model_dump(),
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
    notices: list[JobNotice] = Field(
        description="What to know about a finished job's transcript (e.g. that no speech was found)"
    )
    engine: str | None = Field(description='The engine that transcribed the job ("whisper", "gigaam", "speechkit")')
    engine_model: str | None = Field(
        description='Its model ("whisper-base", "gigaam-multilingual-ctc", "speechkit/general"); null until the '
        "job has finished"
    )
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

    @classmethod
    def from_proto(cls, job: job_pb2.Job) -> Job:
        return cls(
            job_id=job.job_id,
            name=job.name,
            state=job_pb2.Job.State.Name(job.state),
            progress=job.progress,
            filename=job.filename,
            size_bytes=job.size_bytes,
            audio=AudioInfo.from_proto(job.audio),
            languages=list(job.options.languages),
            max_speakers=job.options.max_speakers or None,
            min_speakers=job.options.min_speakers or None,
            detected_language=job.detected_language or None,
            language_shares=dict(job.language_shares),
            speaker_count=job.speaker_count or None,
            notices=[
                JobNotice(code=notice.code, message=notice.message, language=notice.language or None)
                for notice in job.notices
            ],
            engine=job.engine or None,
            engine_model=job.engine_model or None,
            billed_seconds=job.billed_seconds,
            reused_from=job.reused_from or None,
            created_at=_iso(job.create_time, job.HasField("create_time")),
            started_at=_iso(job.start_time, job.HasField("start_time")),
            finished_at=_iso(job.end_time, job.HasField("end_time")),
            expires_at=_iso(job.expire_time, job.HasField("expire_time")),
            error=JobError(code=job.error.code, message=job.error.message) if job.HasField("error") else None,
            links=JobLinks.of(job.job_id),
        )


def job_json(job: job_pb2.Job) -> dict:
    """The job as JSON-ready data: for the CLI and the status stream, which write JSON themselves."""
    return Job.from_proto(job).model_dump(mode="json")
