"""Database rows → kazru.v1 protobuf messages (used by every gRPC adapter)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from kazru.db.models import Job, Speaker, Word
from kazru.db.transcripts import StoredTranscript
from kazru.domain.notices import JobNotice
from kazru.v1 import job_pb2, transcript_pb2


def job_name(job_id: object) -> str:
    return f"jobs/{job_id}"


def job_id_from_name(name: str) -> str:
    """Accept "jobs/{job}" (AIP-122) and, for convenience, the bare id."""
    return name.removeprefix("jobs/")


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def job_to_proto(job: Job) -> job_pb2.Job:
    message = job_pb2.Job(
        name=job_name(job.id),
        job_id=str(job.id),
        state=job_pb2.Job.State.Value(job.state),
        progress=job.progress,
        filename=job.filename,
        size_bytes=job.size_bytes,
        audio=job_pb2.AudioInfo(
            duration_seconds=job.duration_seconds or 0.0,
            codec=job.codec or "",
            channels=job.channels or 0,
            sample_rate=job.sample_rate or 0,
            container=job.container,
            truncated=job.declared_duration_seconds is not None,
            declared_duration_seconds=job.declared_duration_seconds or 0.0,
        ),
        options=job_pb2.TranscriptionOptions(
            languages=job.languages, max_speakers=job.max_speakers or 0, min_speakers=job.min_speakers or 0
        ),
        detected_language=job.detected_language or "",
        reused_from=str(job.reused_from) if job.reused_from else "",
        language_shares=job.language_shares or {},
        speaker_count=job.speaker_count or 0,
        notices=[job_pb2.JobNotice(**JobNotice.from_json(notice).as_json()) for notice in job.notices or []],
        engine=job.engine or "",
        engine_model=job.engine_model or "",
        billed_seconds=job.billed_seconds or 0.0,
        create_time=_timestamp(job.created_at),
        start_time=_timestamp(job.started_at),
        end_time=_timestamp(job.finished_at),
        expire_time=_timestamp(job.expires_at),
    )
    if job.error_code:
        message.error.CopyFrom(job_pb2.JobError(code=job.error_code, message=job.error_message or ""))
    return message


def word_to_proto(word: Word) -> transcript_pb2.Word:
    return transcript_pb2.Word(
        start_seconds=word.start_seconds,
        end_seconds=word.end_seconds,
        text=word.text,
        probability=word.probability,
        speaker=word.speaker or "",
    )


def stored_word_to_proto(word: dict) -> transcript_pb2.Word:
    """A word as `kazru.db.transcripts` reads it: a JSON object aggregated by PostgreSQL."""
    return transcript_pb2.Word(
        start_seconds=word["start"],
        end_seconds=word["end"],
        text=word["text"],
        probability=word["probability"],
        speaker=word["speaker"] or "",
    )


def segment_to_proto(segment: Any, words: list[transcript_pb2.Word]) -> transcript_pb2.Segment:
    """`segment`: a Segment, or a row of `kazru.db.transcripts.SEGMENT_COLUMNS` (same names)."""
    return transcript_pb2.Segment(
        index=segment.position,
        start_seconds=segment.start_seconds,
        end_seconds=segment.end_seconds,
        text=segment.text,
        language=segment.language,
        confidence=segment.confidence,
        speaker=segment.speaker or "",
        words=words,
        edited=segment.original_text is not None,
        original_text=segment.original_text or "",
    )


def speaker_to_proto(speaker: Speaker) -> transcript_pb2.Speaker:
    return transcript_pb2.Speaker(
        id=speaker.label,
        label=speaker.display_name,
        speaking_seconds=speaker.speaking_seconds,
        segment_count=speaker.segment_count,
    )


def transcript_to_proto(job: Job, stored: StoredTranscript) -> transcript_pb2.Transcript:
    return transcript_pb2.Transcript(
        job_id=str(job.id),
        segments=[
            segment_to_proto(s, [stored_word_to_proto(word) for word in stored.words_of(s)]) for s in stored.segments
        ],
        duration_seconds=job.duration_seconds or 0.0,
        speakers=[speaker_to_proto(speaker) for speaker in stored.speakers],
    )
