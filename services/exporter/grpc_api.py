"""gRPC adapter for ExporterService.Render: load, check, render, stream in chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru import errors
from kazru.db import jobs
from kazru.db.models import Job, Segment
from kazru.grpc_errors import translate
from kazru.v1 import export_pb2, exporter_service_pb2_grpc
from services.exporter import formats

CHUNK_BYTES = 64 * 1024

Renderer = Callable[[Job, Iterable[Segment], formats.RenderOptions], Iterator[str]]
RENDERERS: dict[int, tuple[formats.Format, Renderer]] = {
    export_pb2.EXPORT_FORMAT_TXT: (formats.TXT, formats.render_txt),
    export_pb2.EXPORT_FORMAT_JSON: (formats.JSON, formats.render_json),
}


class ExporterServicer(exporter_service_pb2_grpc.ExporterServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._sessions = sessions

    @translate
    async def Render(self, request, context):
        if request.format not in RENDERERS:
            raise errors.InvalidArgument("unsupported export format", code="UNSUPPORTED_FORMAT")
        fmt, render = RENDERERS[request.format]
        options = formats.RenderOptions(
            timestamps=request.options.timestamps if request.options.HasField("timestamps") else True
        )
        async with self._sessions() as session:
            job = await jobs.get_owned_job(session, request.job_id, request.owner_id)
            jobs.require_transcript(job)
            segments = (await jobs.load_transcript(session, job.id)).segments

        first = True
        buffer = bytearray()
        for piece in render(job, segments, options):
            buffer += piece.encode("utf-8")
            if len(buffer) >= CHUNK_BYTES:
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
