"""Tables. The schema itself is created by the Alembic migrations in
`kazru/db/migrations`; these classes must match them (a test checks)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from kazru.domain.lifecycle import JobState  # the states are the domain's; the column stores their names


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "state IN ('PENDING','RUNNING','SUCCEEDED','FAILED','CANCELLED','EXPIRED','DELETED')",
            name="jobs_state_valid",
        ),
        CheckConstraint("progress BETWEEN 0 AND 100", name="jobs_progress_range"),
        UniqueConstraint("owner_id", "idempotency_key", name="jobs_owner_idempotency_key"),
        # An identical upload of the same owner is found by its bytes' hash (result reuse).
        Index("ix_jobs_owner_content", "owner_id", "content_sha256"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(128), index=True)
    state: Mapped[str] = mapped_column(String(16), default=JobState.PENDING, index=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)

    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    object_key: Mapped[str] = mapped_column(String(512))

    container: Mapped[str] = mapped_column(String(16))
    # What decodes (the transcriber sets it after decoding; until then the header's estimate).
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    # What the header claimed, kept only when far more than decodes: the file is truncated.
    declared_duration_seconds: Mapped[float | None] = mapped_column(Float)
    codec: Mapped[str | None] = mapped_column(String(64))
    channels: Mapped[int | None] = mapped_column(Integer)
    sample_rate: Mapped[int | None] = mapped_column(Integer)

    languages: Mapped[list[str]] = mapped_column(ARRAY(String(8)))
    min_speakers: Mapped[int | None] = mapped_column(Integer)
    max_speakers: Mapped[int | None] = mapped_column(Integer)
    # The language with the largest share of speech, and every language's share (0-1).
    detected_language: Mapped[str | None] = mapped_column(String(8))
    language_shares: Mapped[dict[str, float] | None] = mapped_column(JSONB)
    speaker_count: Mapped[int | None] = mapped_column(Integer)
    # What the reader should know about the transcript (kazru.domain.notices): [{code, message, language}].
    notices: Mapped[list[dict[str, str]] | None] = mapped_column(JSONB)

    # Which engine and model transcribed the job, what an external engine billed, and the
    # engine's own id of the result (deleted at the engine once stored, or by the janitor).
    engine: Mapped[str | None] = mapped_column(String(32))
    engine_model: Mapped[str | None] = mapped_column(String(64))
    billed_seconds: Mapped[float | None] = mapped_column(Float)
    external_operation_id: Mapped[str | None] = mapped_column(String(128))

    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A retried upload with the same key (per owner) returns this job.
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    # sha256 of the uploaded bytes, computed while they stream in.
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    # The earlier job of the same owner whose transcript this one copied (same bytes, same options).
    reused_from: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # When a person last changed the transcript (names, merges, text, language, speaker); None: the machine's.
    transcript_edited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # JetStream sequence of the JobUploaded message; None until its publish is confirmed
    # (the outbox relay republishes PENDING jobs still without one).
    queue_sequence: Mapped[int | None] = mapped_column(BigInteger)
    # Whether the job is in usage_stats yet (counted once: when it finishes or is expired/deleted).
    usage_counted: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)

    segments: Mapped[list[Segment]] = relationship(
        back_populates="job", order_by="Segment.position", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def job_state(self) -> JobState:
        return JobState(self.state)


class Segment(Base):
    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("job_id", "position", name="segments_job_position_key"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    start_seconds: Mapped[float] = mapped_column(Float)
    end_seconds: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8))
    confidence: Mapped[float] = mapped_column(Float)
    speaker: Mapped[str | None] = mapped_column(String(32))
    # The machine's text when a person has edited `text`; None while unedited.
    original_text: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="segments")

    @property
    def edited(self) -> bool:
        return self.original_text is not None


class Speaker(Base):
    """One diarized speaker of a job: label "S1".."S10", and the name a person gave it."""

    __tablename__ = "speakers"
    __table_args__ = (UniqueConstraint("job_id", "label", name="speakers_job_label_key"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    speaking_seconds: Mapped[float] = mapped_column(Float)
    segment_count: Mapped[int] = mapped_column(Integer)

    @property
    def display_name(self) -> str:
        return self.name or self.label


class Word(Base):
    __tablename__ = "words"
    __table_args__ = (UniqueConstraint("job_id", "position", name="words_job_position_key"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"))
    # Position of the segment holding the word (segments.position).
    segment_position: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    start_seconds: Mapped[float] = mapped_column(Float)
    end_seconds: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    probability: Mapped[float] = mapped_column(Float)
    speaker: Mapped[str | None] = mapped_column(String(32))


class UsageFigures:
    """A day's usage figures (kazru/db/usage.py), the columns of both usage tables."""

    files: Mapped[int] = mapped_column(Integer, server_default="0")
    audio_seconds: Mapped[float] = mapped_column(Float, server_default="0")
    succeeded: Mapped[int] = mapped_column(Integer, server_default="0")
    # Jobs that ended FAILED: the "errors" of the day.
    failed: Mapped[int] = mapped_column(Integer, server_default="0")
    cancelled: Mapped[int] = mapped_column(Integer, server_default="0")
    engine_billed_seconds: Mapped[float] = mapped_column(Float, server_default="0")
    estimated_cost: Mapped[float] = mapped_column(Float, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class UsageStats(UsageFigures, Base):
    """Usage per day of upload: no content and nothing naming an owner, so it survives expiry."""

    __tablename__ = "usage_stats"

    day: Mapped[date] = mapped_column(Date, primary_key=True)


class OwnerUsage(UsageFigures, Base):
    """The same figures per owner and day of upload, for each owner's own report: counts only, no content,
    so it too outlives the jobs it counts."""

    __tablename__ = "usage_by_owner"

    owner_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(128))
    # sha256 of the key: the key itself is never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RateLimitEvent(Base):
    """One accepted event of a rate limit (services/gateway/ratelimit.py), kept while it is inside
    its window. The key is hashed: it holds client addresses and owner ids."""

    __tablename__ = "rate_limit_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # sha256 of "<limit name>|<key>", hex, truncated to 32 characters.
    key_hash: Mapped[str] = mapped_column(String(32))
    # Seconds since the epoch, from the gateway's clock.
    at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_rate_limit_events_key_at", "key_hash", "at"), Index("ix_rate_limit_events_at", "at"))
