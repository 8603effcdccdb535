"""gRPC adapter for ExporterService.Render: load, check, render, stream in chunks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from enum import Enum
from typing import Any

from sqlalchemy import Select, Text, cast, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncResult, AsyncSession, async_sessionmaker

from kazru import errors, tracing
from kazru.db import jobs
from kazru.db.models import Job, Segment, Speaker, Word
from kazru.grpc_errors import translate
from kazru.v1 import export_pb2, exporter_service_pb2_grpc
from services.exporter import formats

CHUNK_BYTES = 64 * 1024
# Segments are read through a server-side cursor in batches this size, so rendering
# starts after the first batch instead of after the last segment of a long transcript.
SEGMENTS_PER_FETCH = 200

# Plain columns, not ORM objects: for a 3-hour transcript (30 000 words) building
# ORM objects took ~0.7 s, reading the same columns as rows ~0.08 s.
SEGMENT_COLUMNS = (
    Segment.position, Segment.start_seconds, Segment.end_seconds, Segment.text, Segment.language,
    Segment.confidence, Segment.speaker, Segment.original_text,
)  # fmt: skip


class Words(Enum):
    """Which words a format shows, and so how the segments' words are read."""

    NONE = "none"
    # `words`: [start, end, text] lists, for caption timing.
    TIMINGS = "timings"
    # `words_json`: the JSON array of word objects, as PostgreSQL wrote it.
    JSON = "json"


# PostgreSQL gathers each segment's words in one aggregate: decoding one JSON value per
# segment costs less than one result row per word (30 000 for three hours), and the JSON
# export embeds the text as it comes.
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

Renderer = Callable[[Job, formats.TranscriptStream, formats.RenderOptions], AsyncIterator[str | bytes]]
# format → (file type, renderer, the words it shows)
RENDERERS: dict[int, tuple[formats.Format, Renderer, Words]] = {
    export_pb2.EXPORT_FORMAT_TXT: (formats.TXT, formats.render_txt, Words.NONE),
    export_pb2.EXPORT_FORMAT_SRT: (formats.SRT, formats.render_srt, Words.TIMINGS),
    export_pb2.EXPORT_FORMAT_VTT: (formats.VTT, formats.render_vtt, Words.TIMINGS),
    export_pb2.EXPORT_FORMAT_JSON: (formats.JSON, formats.render_json, Words.JSON),
    export_pb2.EXPORT_FORMAT_DOCX: (formats.DOCX, formats.render_docx, Words.NONE),
}


def segments_query(job_id: uuid.UUID, words: Words) -> Select:
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


async def stream_transcript(session: AsyncSession, job_id: uuid.UUID, words: Words) -> formats.TranscriptStream:
    speakers = list(await session.scalars(select(Speaker).where(Speaker.job_id == job_id).order_by(Speaker.id)))
    rows = await session.stream(segments_query(job_id, words).execution_options(yield_per=SEGMENTS_PER_FETCH))
    return formats.TranscriptStream(speakers, _rows(rows))


async def _rows(result: AsyncResult) -> AsyncIterator[Any]:
    async for batch in result.partitions():
        for row in batch:
            yield row


class ExporterServicer(exporter_service_pb2_grpc.ExporterServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._sessions = sessions

    @tracing.traced("export")
    @translate
    async def Render(self, request, context):
        if request.format not in RENDERERS:
            raise errors.InvalidArgument("unsupported export format", code="UNSUPPORTED_FORMAT")
        fmt, render, words = RENDERERS[request.format]
        options = formats.RenderOptions(
            timestamps=request.options.timestamps if request.options.HasField("timestamps") else True
        )
        async with self._sessions() as session:
            job = await jobs.get_owned_job(session, request.job_id, request.owner_id)
            jobs.require_transcript(job)
            transcript = await stream_transcript(session, job.id, words)

            # The first piece goes out at once (with the headers), so the client starts
            # receiving while the rest renders; then chunks of CHUNK_BYTES.
            first = True
            buffer = bytearray()
            async for piece in render(job, transcript, options):
                buffer += piece.encode("utf-8") if isinstance(piece, str) else piece
                if first or len(buffer) >= CHUNK_BYTES:
                    yield self._chunk(first, fmt, job, bytes(buffer))
                    first = False
                    buffer.clear()
            if buffer or first:
                yield self._chunk(first, fmt, job, bytes(buffer))

    @staticmethod
    def _chunk(first: bool, fmt: formats.Format, job: Job, data: bytes) -> export_pb2.ExportChunk:
        if first:
            return export_pb2.ExportChunk(
                content_type=fmt.content_type, filename=formats.export_filename(job, fmt), data=data
            )
        return export_pb2.ExportChunk(data=data)
