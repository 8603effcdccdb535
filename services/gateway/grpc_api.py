"""gRPC adapter for the public kazru.v1.JobService: the caller (authenticated by grpc_auth.py), then the Gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import unquote

from kazru.domain import errors
from kazru.domain.upload_protocol import check_complete, refuse_after_draining
from kazru.grpc import convert
from kazru.grpc.errors import translate
from kazru.v1 import export_pb2, job_pb2, job_service_pb2, job_service_pb2_grpc
from services.gateway.core import Gateway, SegmentChange, UploadItem, UploadStart
from services.gateway.grpc_auth import current_caller


class JobServicer(job_service_pb2_grpc.JobServiceServicer):
    """Every method runs for a caller the AuthInterceptor has already authenticated (grpc_auth.py)."""

    def __init__(self, gateway: Gateway):
        self._gateway = gateway

    @translate
    async def UploadAudio(self, request_iterator: AsyncIterator[job_service_pb2.UploadAudioRequest], context):
        caller = current_caller()
        first = await anext(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "metadata":
            raise errors.InvalidArgument("the first message must carry the metadata", code="UPLOAD_HEADER_MISSING")
        start = UploadStart(
            first.metadata.filename, first.metadata.content_type, first.metadata.options, first.metadata.request_id
        )

        async def chunks() -> AsyncIterator[UploadItem]:
            received = 0
            async for message in request_iterator:
                payload = message.WhichOneof("payload")
                if payload == "complete":
                    check_complete(message.complete.size_bytes, received)
                    return
                if payload != "chunk":
                    raise errors.InvalidArgument("metadata may be sent only once", code="UPLOAD_HEADER_REPEATED")
                received += len(message.chunk)
                yield message.chunk
            check_complete(None, received)

        try:
            return await self._gateway.upload(caller, start, chunks(), client_address=_peer_address(context))
        except errors.KazruError as error:
            await refuse_after_draining(request_iterator, error)

    @translate
    async def GetJob(self, request: job_service_pb2.GetJobRequest, context) -> job_pb2.Job:
        return await self._gateway.get_job(current_caller().owner_id, convert.job_id_from_name(request.name))

    @translate
    async def ListJobs(self, request: job_service_pb2.ListJobsRequest, context) -> job_service_pb2.ListJobsResponse:
        found, next_token = await self._gateway.list_jobs(
            current_caller().owner_id, request.page_size, request.page_token
        )
        return job_service_pb2.ListJobsResponse(jobs=found, next_page_token=next_token)

    @translate
    async def WatchJob(self, request: job_service_pb2.WatchJobRequest, context):
        updates = self._gateway.watch_job(current_caller().owner_id, convert.job_id_from_name(request.name))
        try:
            async for job in updates:
                yield job
        finally:
            await updates.aclose()

    @translate
    async def DeleteJob(self, request: job_service_pb2.DeleteJobRequest, context) -> job_pb2.Job:
        return await self._gateway.delete_job(current_caller().owner_id, convert.job_id_from_name(request.name))

    @translate
    async def GetTranscript(self, request: job_service_pb2.GetTranscriptRequest, context):
        _, transcript = await self._gateway.get_transcript(
            current_caller().owner_id, convert.job_id_from_name(request.name)
        )
        return transcript

    @translate
    async def ExportTranscript(self, request: job_service_pb2.ExportTranscriptRequest, context):
        if request.format == export_pb2.EXPORT_FORMAT_UNSPECIFIED:
            raise errors.InvalidArgument("choose an export format", code="UNSUPPORTED_FORMAT")
        first, rest = await self._gateway.export(
            current_caller().owner_id, convert.job_id_from_name(request.name), request.format, request.options
        )
        yield first
        async for chunk in rest:
            yield chunk

    @translate
    async def UpdateSpeakers(self, request: job_service_pb2.UpdateSpeakersRequest, context):
        _, transcript = await self._gateway.rename_speakers(
            current_caller().owner_id, convert.job_id_from_name(request.name), dict(request.speaker_names)
        )
        return transcript

    @translate
    async def MergeSpeakers(self, request: job_service_pb2.MergeSpeakersRequest, context):
        _, transcript = await self._gateway.merge_speaker(
            current_caller().owner_id, convert.job_id_from_name(request.name), request.speaker, request.into
        )
        return transcript

    @translate
    async def UpdateSegment(self, request: job_service_pb2.UpdateSegmentRequest, context):
        owner_id = current_caller().owner_id
        job_id, index = _segment_from_name(request.name)
        change = request.WhichOneof("change")
        if change is None:
            raise errors.InvalidArgument("set one of text, revert, language or speaker", code="SEGMENT_CHANGE_MISSING")
        if change == "revert" and not request.revert:
            raise errors.InvalidArgument("revert must be true when set", code="SEGMENT_CHANGE_MISSING")
        value = "" if change == "revert" else getattr(request, change)
        return await self._gateway.edit_segment(owner_id, job_id, index, SegmentChange(change, str(value)))


def _peer_address(context) -> str:
    """The caller's IP from gRPC's peer ('ipv4:10.0.0.7:5123', 'ipv6:%5B::1%5D:5123'); '' if not IP."""
    kind, _, rest = unquote(context.peer() or "").partition(":")
    if kind not in ("ipv4", "ipv6"):
        return ""
    return rest.rpartition(":")[0].strip("[]")


def _segment_from_name(name: str) -> tuple[str, int]:
    """Split "jobs/{job}/segments/{segment}" into (job id, segment index)."""
    job_part, separator, segment = name.rpartition("/segments/")
    if not separator or not (segment.isascii() and segment.isdigit()):
        raise errors.InvalidArgument(
            "name must be 'jobs/{job}/segments/{segment}'", code="INVALID_SEGMENT_NAME", details={"name": name[:200]}
        )
    return convert.job_id_from_name(job_part), int(segment)
