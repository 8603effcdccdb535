"""Reading a finished job's transcript: one query shape for every reader (the gateway's
transcript API and the exporter's formats).

Plain columns, not ORM objects: for a 3-hour transcript (30 000 words) building ORM
objects took ~0.7 s, reading the same columns as rows ~0.08 s. PostgreSQL gathers each
segment's words into one JSON aggregate: decoding one value per segment costs less than
one result row per word, and the JSON export embeds the text as it comes.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import Select, Text, cast, func, insert, literal, select
from sqlalchemy.dialects.postgresql import UUID, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from kazru.db.models import Segment, Speaker, Word

SEGMENT_COLUMNS = (
    Segment.position, Segment.start_seconds, Segment.end_seconds, Segment.text, Segment.language,
    Segment.confidence, Segment.speaker, Segment.original_text,
)  # fmt: skip


class Words(Enum):
    """Which words a reader needs, and so how the segments' words are read."""

    NONE = "none"
    # `words`: [start, end, text] lists, for caption timing.
    TIMINGS = "timings"
    # `words_json`: the JSON array of word objects {"start", "end", "text", "probability",
    # "speaker"}, as PostgreSQL wrote it.
    JSON = "json"


_WORD_VALUES = {
    Words.TIMINGS: func.json_build_array(Word.start_seconds, Word.end_seconds, Word.text),
    Words.JSON: func.json_build_object(
        "start",
        Word.start_seconds,
        "end",
        Word.end_seconds,
        "text",
        Word.text,
        "probability",
        Word.probability,
        "speaker",
        Word.speaker,
    ),  # fmt: skip
}


def segments_query(job_id: uuid.UUID, words: Words) -> Select:
    """The job's segments in order, as rows of SEGMENT_COLUMNS plus the words asked for
    (None for a segment without words)."""
    query = select(*SEGMENT_COLUMNS).where(Segment.job_id == job_id).order_by(Segment.position)
    if words is Words.NONE:
        return query
    aggregate = func.json_agg(aggregate_order_by(_WORD_VALUES[words], Word.position))
    per_segment = (
        select(
            Word.segment_position,
            aggregate.label("words") if words is Words.TIMINGS else cast(aggregate, Text).label("words_json"),
        )
        .where(Word.job_id == job_id)
        .group_by(Word.segment_position)
        .subquery()
    )
    word_column = per_segment.c.words if words is Words.TIMINGS else per_segment.c.words_json
    return query.add_columns(word_column).outerjoin(per_segment, per_segment.c.segment_position == Segment.position)


def speakers_query(job_id: uuid.UUID) -> Select:
    return select(Speaker).where(Speaker.job_id == job_id).order_by(Speaker.id)


@dataclass
class StoredTranscript:
    """Speakers (ORM objects, a handful) and segment rows with `words_json`."""

    segments: list[Any]
    speakers: list[Speaker]

    @staticmethod
    def words_of(segment: Any) -> list[dict]:
        return json.loads(segment.words_json) if segment.words_json else []


async def copy_transcript(session: AsyncSession, source: uuid.UUID, target: uuid.UUID) -> None:
    """The source job's speakers, segments and words, written again as the target job's (a reused result:
    rows of its own, so either job can be edited, deleted or expire without touching the other)."""
    for table in (Speaker, Segment, Word):
        columns = [column for column in table.__table__.columns if column.name not in ("id", "job_id")]
        rows = select(literal(target, UUID(as_uuid=True)), *columns).where(table.job_id == source)
        await session.execute(insert(table).from_select(["job_id", *(column.name for column in columns)], rows))


async def load_transcript(session: AsyncSession, job_id: uuid.UUID) -> StoredTranscript:
    speakers = list(await session.scalars(speakers_query(job_id)))
    segments = list(await session.execute(segments_query(job_id, Words.JSON)))
    return StoredTranscript(segments, speakers)
