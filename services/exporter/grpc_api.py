"""gRPC adapter for ExporterService.Render: load, check, render, stream in chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru.db import jobs
from kazru.db.models import Job, Speaker
from kazru.db.transcripts import Words, segments_query, speakers_query
from kazru.domain import errors
from kazru.grpc.errors import translate
from kazru.observability import tracing
from kazru.v1 import export_pb2, exporter_service_pb2_grpc
from services.exporter import formats

CHUNK_BYTES = 64 * 1024
# Segments are read through a server-side cursor in batches this size, so rendering
# starts after the first batch instead of after the last segment of a long transcript
# (see `read_transcript`).
SEGMENTS_PER_FETCH = 200

Renderer = Callable[[Job, formats.TranscriptStream, formats.RenderOptions], AsyncIterator[str | bytes]]
# format → (file type, renderer, the words it shows)
RENDERERS: dict[int, tuple[formats.Format, Renderer, Words]] = {
    export_pb2.EXPORT_FORMAT_TXT: (formats.TXT, formats.render_txt, Words.NONE),
    export_pb2.EXPORT_FORMAT_SRT: (formats.SRT, formats.render_srt, Words.TIMINGS),
    export_pb2.EXPORT_FORMAT_VTT: (formats.VTT, formats.render_vtt, Words.TIMINGS),
    export_pb2.EXPORT_FORMAT_JSON: (formats.JSON, formats.render_json, Words.JSON),
    export_pb2.EXPORT_FORMAT_DOCX: (formats.DOCX, formats.render_docx, Words.NONE),
}


_END_OF_ROWS = object()


async def read_transcript(
    sessions: async_sessionmaker[AsyncSession], job_id: str, owner_id: str, words: Words
) -> tuple[Job, formats.TranscriptStream]:
    """The owner's finished job and its transcript, read at the database's pace, not the client's.

    A background task reads the rows in batches into a queue and gives its connection back as soon
    as it has read them all (~0.1 s for three hours), while the renderer takes them from the queue
    as the client accepts bytes. Rendering straight from the cursor would hold a pooled connection
    for as long as the slowest download, and a few stalled clients would block every export.
    Rendering starts after the first batch, as before; memory is bounded by one transcript.
    """
    batches: asyncio.Queue[Any] = asyncio.Queue()
    opened: asyncio.Future[tuple[Job, list[Speaker]]] = asyncio.get_running_loop().create_future()

    async def read() -> None:
        try:
            async with sessions() as session:
                job = await jobs.get_owned_job(session, job_id, owner_id)
                jobs.require_transcript(job)
                speakers = list(await session.scalars(speakers_query(job.id)))
                opened.set_result((job, speakers))
                query = segments_query(job.id, words).execution_options(yield_per=SEGMENTS_PER_FETCH)
                async for batch in (await session.stream(query)).partitions():
                    batches.put_nowait(batch)
            batches.put_nowait(_END_OF_ROWS)
        except BaseException as failure:
            if not opened.done():
                opened.set_exception(failure)
            else:
                batches.put_nowait(failure)
            if isinstance(failure, asyncio.CancelledError):
                raise

    reader = asyncio.create_task(read())
    try:
        job, speakers = await opened
    except BaseException:
        reader.cancel()
        raise
    return job, formats.TranscriptStream(speakers, _rows(batches, reader))


async def _rows(batches: asyncio.Queue[Any], reader: asyncio.Task) -> AsyncIterator[Any]:
    try:
        while (batch := await batches.get()) is not _END_OF_ROWS:
            if isinstance(batch, BaseException):
                raise batch
            for row in batch:
                yield row
    finally:
        reader.cancel()  # the client went away: stop reading (a no-op once all is read)


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
        job, transcript = await read_transcript(self._sessions, request.job_id, request.owner_id, words)
        try:
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
        finally:
            await transcript.segments.aclose()

    @staticmethod
    def _chunk(first: bool, fmt: formats.Format, job: Job, data: bytes) -> export_pb2.ExportChunk:
        if first:
            return export_pb2.ExportChunk(
                content_type=fmt.content_type, filename=formats.export_filename(job, fmt), data=data
            )
        return export_pb2.ExportChunk(data=data)
