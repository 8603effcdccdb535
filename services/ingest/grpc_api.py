"""gRPC adapter for IngestService: turns the request stream into an UploadHeader and chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator

from kazru.domain import errors
from kazru.domain.upload_protocol import check_complete, refuse_after_draining
from kazru.grpc import convert
from kazru.grpc.errors import translate
from kazru.v1 import ingest_service_pb2, ingest_service_pb2_grpc, job_pb2
from services.ingest.uploads import UploadHeader, UploadOptions, UploadService


def options_from_proto(options: job_pb2.TranscriptionOptions) -> UploadOptions:
    return UploadOptions(
        languages=tuple(options.languages), max_speakers=options.max_speakers, min_speakers=options.min_speakers
    )


class IngestServicer(ingest_service_pb2_grpc.IngestServiceServicer):
    def __init__(self, uploads: UploadService):
        self._uploads = uploads

    @translate
    async def Upload(self, request_iterator: AsyncIterator[ingest_service_pb2.IngestUploadRequest], context):
        first = await anext(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "header":
            raise errors.InvalidArgument("the first upload message must be the header", code="UPLOAD_HEADER_MISSING")
        header = UploadHeader(
            owner_id=first.header.owner_id,
            filename=first.header.filename,
            options=options_from_proto(first.header.options),
            request_id=first.header.request_id,
        )
        late: dict[str, UploadOptions] = {}

        async def chunks() -> AsyncIterator[bytes]:
            received = 0
            declared: int | None = None
            async for message in request_iterator:
                payload = message.WhichOneof("payload")
                if declared is not None:
                    raise errors.InvalidArgument("nothing may follow 'complete'", code="UPLOAD_AFTER_COMPLETE")
                if payload == "chunk":
                    received += len(message.chunk)
                    yield message.chunk
                elif payload == "options":
                    late["options"] = options_from_proto(message.options)
                elif payload == "complete":
                    declared = message.complete.size_bytes
                else:
                    raise errors.InvalidArgument("the header may be sent only once", code="UPLOAD_HEADER_REPEATED")
            check_complete(declared, received)

        try:
            job = await self._uploads.upload(header, chunks(), lambda: late.get("options"))
        except errors.KazruError as error:
            await refuse_after_draining(request_iterator, error)
        return convert.job_to_proto(job)
