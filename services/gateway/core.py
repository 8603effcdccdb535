"""What the gateway does, independent of HTTP or gRPC: both adapters call these methods.

Uploads and exports are forwarded to the internal services; job state is read
straight from PostgreSQL; health asks every dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
from minio.error import S3Error
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru.adapters.bus import Bus
from kazru.adapters.storage import ObjectStore
from kazru.db import jobs, usage
from kazru.db.owned_jobs import OwnedJobs
from kazru.domain import errors, transcript_edits
from kazru.domain.external_copies import ExternalCopies
from kazru.grpc import convert
from kazru.grpc.errors import from_rpc_error
from kazru.grpc.server import check_health
from kazru.jobs.retention import JobRemoval
from kazru.observability import metrics, tracing
from kazru.settings import Settings
from kazru.v1 import (
    export_pb2,
    exporter_service_pb2,
    exporter_service_pb2_grpc,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    job_pb2,
    transcript_pb2,
)
from services.gateway.auth import Principal
from services.gateway.ratelimit import SlidingWindowLimiter
from services.gateway.status import ServiceStatus

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class UploadStart:
    filename: str
    content_type: str
    options: job_pb2.TranscriptionOptions
    # The client's idempotency key; empty: none.
    request_id: str = ""


@dataclass(frozen=True)
class SegmentChange:
    """What to change in a segment: `field` is "text", "revert", "language" or "speaker"."""

    field: str
    value: str = ""


# What an upload body yields after its start: file bytes, or options that arrived late.
UploadItem = bytes | job_pb2.TranscriptionOptions


@dataclass(frozen=True)
class StoredAudio:
    """A job's original recording as uploaded."""

    object_key: str
    size_bytes: int
    media_type: str


class Gateway:
    def __init__(
        self,
        jobs: OwnedJobs,
        removal: JobRemoval,
        status: ServiceStatus,
        upload_limit: SlidingWindowLimiter,
        bus: Bus,
        store: ObjectStore,
        channels: dict[str, grpc.aio.Channel],
        *,
        settings: Settings,
    ):
        self._settings = settings
        self._jobs = jobs
        self._removal = removal
        self._status = status
        self._upload_limit = upload_limit
        self._bus = bus
        self._store = store
        self._channels = channels
        self._ingest = ingest_service_pb2_grpc.IngestServiceStub(channels["ingest"])
        self._exporter = exporter_service_pb2_grpc.ExporterServiceStub(channels["exporter"])

    def upload_limits(self, caller: Principal, client_address: str) -> dict[str, int]:
        """Rate-limit keys → limits for an upload. A key is limited by itself alone, whatever address it calls
        from and whoever else shares that address; an anonymous session by itself and by its address, since a
        new session costs nothing. `client_address` empty: unknown, the caller's own limit only."""
        per_caller = self._settings.upload_rate_limit_per_minute
        if not caller.anonymous:
            return {f"key:{caller.api_key_id}": per_caller}
        limits = {f"owner:{caller.owner_id}": per_caller}
        if client_address:
            limits[f"address:{client_address}"] = self._settings.anonymous_address_upload_rate_limit_per_minute
        return limits

    @tracing.traced("upload")
    async def upload(
        self, caller: Principal, start: UploadStart, body: AsyncIterator[UploadItem], *, client_address: str = ""
    ) -> job_pb2.Job:
        """`client_address`: the caller's IP, for the limits of anonymous callers (`upload_limits`)."""
        owner_id = caller.owner_id
        # Before a byte is forwarded: a refused upload costs ingest and S3 nothing.
        await self._upload_limit.acquire(self.upload_limits(caller, client_address))
        body_error: list[Exception] = []

        async def requests() -> AsyncIterator[ingest_service_pb2.IngestUploadRequest]:
            yield ingest_service_pb2.IngestUploadRequest(
                header=ingest_service_pb2.IngestUploadHeader(
                    owner_id=owner_id,
                    filename=start.filename,
                    content_type=start.content_type,
                    options=start.options,
                    request_id=start.request_id,
                )
            )
            sent = 0
            try:
                async for item in body:
                    if isinstance(item, bytes):
                        sent += len(item)
                        yield ingest_service_pb2.IngestUploadRequest(chunk=item)
                    else:
                        yield ingest_service_pb2.IngestUploadRequest(options=item)
                # Only a body that ended normally is complete; an error above never gets here.
                yield ingest_service_pb2.IngestUploadRequest(complete=job_pb2.UploadComplete(size_bytes=sent))
            except Exception as error:
                # gRPC cancels the call when the request stream fails; keep the real reason.
                # (GeneratorExit is not one: it is gRPC closing the stream after an answer.)
                body_error.append(error)
                raise

        try:
            return await self._ingest.Upload(requests())
        except (grpc.RpcError, asyncio.CancelledError) as error:
            if body_error:
                raise body_error[0] from None
            if isinstance(error, grpc.RpcError):
                raise from_rpc_error(error) from None
            raise

    async def get_job(self, owner_id: str, job_id: str) -> job_pb2.Job:
        return convert.job_to_proto(await self._jobs.get(owner_id, job_id))

    async def list_jobs(self, owner_id: str, page_size: int, page_token: str) -> tuple[list[job_pb2.Job], str]:
        found, next_token = await self._jobs.list(owner_id, page_size, page_token)
        return [convert.job_to_proto(job) for job in found], next_token

    async def watch_job(self, owner_id: str, job_id: str) -> AsyncIterator[job_pb2.Job]:
        """The job now, then again each time its state or progress changes; ends after a terminal state.

        Bus events only wake the watcher: the row is re-read each time (and every
        `watch_recheck_seconds` anyway), so a missed or late event costs at most a delay.
        """
        # Refuses another owner's job or a malformed id before anything is subscribed.
        job_id = str((await self._jobs.get(owner_id, job_id)).id)
        last: tuple[int, int] | None = None
        async with self._bus.job_events(job_id) as changed:
            while True:
                changed.clear()
                job = await self._jobs.get(owner_id, job_id)
                terminal = job.job_state.is_terminal
                current = convert.job_to_proto(job)
                if (current.state, current.progress) != last:
                    last = (current.state, current.progress)
                    yield current
                if terminal:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), self._settings.watch_recheck_seconds)

    async def delete_job(self, owner_id: str, job_id: str) -> job_pb2.Job:
        """Cancel if pending or running, delete the audio and transcript now, keep a DELETED tombstone."""
        job = await self._removal.delete_owned(owner_id, job_id)
        return convert.job_to_proto(job)

    async def audio(self, owner_id: str, job_id: str) -> StoredAudio:
        """The owner's original recording; Gone once the job expired or was deleted."""
        job = await self._jobs.get(owner_id, job_id)
        jobs.require_not_removed(job)
        # Ingest stores the type browsers play the sniffed container by (uploads.CONTAINER_CONTENT_TYPES).
        return StoredAudio(job.object_key, job.size_bytes, job.content_type or "application/octet-stream")

    async def read_audio(self, audio: StoredAudio, offset: int, length: int) -> tuple[bytes, AsyncIterator[bytes]]:
        """The first chunk of `length` bytes from `offset` (errors are raised now) and an iterator over the rest."""
        chunks = self._store.read(audio.object_key, offset, length)
        try:
            first = await anext(chunks, b"")
        except S3Error as error:
            if error.code not in ("NoSuchKey", "NoSuchObject", "NotFound"):
                raise
            # Deleted between the row read and now (the janitor, or the owner's DELETE).
            raise errors.Gone("the job's audio has been deleted", code="AUDIO_DELETED") from None
        return first, chunks

    async def get_transcript(self, owner_id: str, job_id: str) -> tuple[job_pb2.Job, transcript_pb2.Transcript]:
        job, stored = await self._jobs.transcript(owner_id, job_id)
        return convert.job_to_proto(job), convert.transcript_to_proto(job, stored)

    async def rename_speakers(
        self, owner_id: str, job_id: str, names: dict[str, str]
    ) -> tuple[job_pb2.Job, transcript_pb2.Transcript]:
        await self._jobs.rename_speakers(owner_id, job_id, transcript_edits.clean_speaker_names(names))
        return await self.get_transcript(owner_id, job_id)

    async def merge_speaker(
        self, owner_id: str, job_id: str, speaker: str, into: str
    ) -> tuple[job_pb2.Job, transcript_pb2.Transcript]:
        if speaker == into:
            raise errors.InvalidArgument("a speaker cannot be merged into itself", code="MERGE_INTO_SELF")
        await self._jobs.merge_speaker(owner_id, job_id, speaker, into)
        return await self.get_transcript(owner_id, job_id)

    async def edit_segment(
        self, owner_id: str, job_id: str, index: int, change: SegmentChange
    ) -> transcript_pb2.Segment:
        """One change of a segment: new text, the machine's text back, its language, or its speaker."""
        if change.field == "text":
            text = transcript_edits.clean_segment_text(change.value)
            edited = await self._jobs.set_segment_text(owner_id, job_id, index, text)
        elif change.field == "revert":
            edited = await self._jobs.set_segment_text(owner_id, job_id, index, None)
        elif change.field == "language":
            language = transcript_edits.clean_language(change.value, self._settings.supported_languages)
            edited = await self._jobs.set_segment_language(owner_id, job_id, index, language)
        else:
            edited = await self._jobs.set_segment_speaker(owner_id, job_id, index, change.value)
        return convert.segment_to_proto(edited.segment, [convert.word_to_proto(word) for word in edited.words])

    async def export(
        self, owner_id: str, job_id: str, fmt: int, options: export_pb2.ExportOptions
    ) -> tuple[export_pb2.ExportChunk, AsyncIterator[export_pb2.ExportChunk]]:
        """Return the first chunk (headers, or the error now) and an iterator over the rest."""
        call = self._exporter.Render(
            exporter_service_pb2.RenderRequest(job_id=job_id, owner_id=owner_id, format=fmt, options=options)
        )
        try:
            first = await call.read()
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        if first is grpc.aio.EOF:
            raise errors.Internal("the exporter returned nothing")

        async def rest() -> AsyncIterator[export_pb2.ExportChunk]:
            try:
                while (chunk := await call.read()) is not grpc.aio.EOF:
                    yield chunk
            except grpc.RpcError as error:
                raise from_rpc_error(error) from None
            finally:
                call.cancel()

        return first, rest()

    async def usage(self, owner_id: str, days: int) -> dict:
        """The owner's own figures per day of upload, newest first, and their totals (kazru/db/usage.py)."""
        report = await self._jobs.usage(owner_id, days)
        return {"days": [day.as_json() for day in report], "totals": usage.totals(report)}

    async def service_status(self) -> dict:
        """For operators: queue length, workers, recent throughput and the estimated wait (services.gateway.status)."""
        return await self._status.report()

    async def public_status(self) -> dict:
        """For users: how many jobs wait and how long a new upload would wait; nothing of the workers."""
        full = await self.service_status()
        return {
            "queue": {"pending": full["queue"]["pending"]},
            "estimated_wait_seconds": full["estimated_wait_seconds"],
        }

    async def refresh_metrics(self) -> None:
        """Jobs by state, the queue, the promise ages and each dependency's health, read into the Prometheus
        gauges before a scrape."""
        refreshed, health = await asyncio.gather(
            asyncio.wait_for(self._status.refresh_gauges(), HEALTH_TIMEOUT_SECONDS),
            self.health(),
            return_exceptions=True,
        )
        if not isinstance(health, BaseException):
            for name, result in health[1].items():
                metrics.DEPENDENCY_UP.labels(name).set(1 if result["ok"] else 0)
        if isinstance(refreshed, BaseException):
            raise refreshed

    async def health(self) -> tuple[bool, dict[str, dict]]:
        checks: dict[str, Callable[[], Awaitable[object]]] = {
            "postgres": self._jobs.ping,
            "nats": self._bus.ping,
            "s3": self._store.ping,
        }
        for name, chan in self._channels.items():
            checks[name] = self._service_check(chan)
        results = await asyncio.gather(*(self._timed(check) for check in checks.values()))
        report = dict(zip(checks, results, strict=True))
        for name, restarts in (await self._restarts_by_supervisor()).items():
            if name in report:
                report[name].update(restarts)
        return all(result["ok"] for result in report.values()), report

    async def _restarts_by_supervisor(self) -> dict[str, dict]:
        """What `make run`'s supervisor (kazru.dev.supervisor) wrote of each service: restarts so far, whether
        it is dead and waiting to be started again, how it last died. Nothing without a supervisor or its
        file; a file that cannot be read leaves the checks as they are rather than failing health."""
        path = self._settings.supervisor_status_file
        if path is None:
            return {}
        try:
            services = json.loads(await asyncio.to_thread(path.read_text))["services"]
            return {
                name: {
                    "restarts": int(service["restarts"]),
                    "restarting": service["state"] == "restarting",
                    "last_exit": service["last_exit"],
                }
                for name, service in services.items()
            }
        except FileNotFoundError:  # not written yet: the supervisor starts watching once all are healthy
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            log.warning("could not read the supervisor's status file %s", path, exc_info=True)
            return {}

    @staticmethod
    def _service_check(chan: grpc.aio.Channel) -> Callable[[], Awaitable[None]]:
        async def check() -> None:
            if not await check_health(chan, HEALTH_TIMEOUT_SECONDS):
                raise RuntimeError("NOT_SERVING")

        return check

    @staticmethod
    async def _timed(check: Callable[[], Awaitable[object]]) -> dict:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(check(), HEALTH_TIMEOUT_SECONDS)
            result: dict = {"ok": True}
        except Exception as error:  # noqa: BLE001 - every failure is a failed check
            result = {"ok": False, "error": (str(error) or type(error).__name__)[:200]}
        result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return result


def create_gateway(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    bus: Bus,
    store: ObjectStore,
    channels: dict[str, grpc.aio.Channel],
    external_copies: ExternalCopies,
) -> Gateway:
    """The gateway with its PostgreSQL-backed parts: the owner's jobs, deletion, status and the upload limit
    (the composition root's, and the integration tests')."""
    return Gateway(
        OwnedJobs(sessions),
        JobRemoval(sessions, store, bus, settings, external_copies),
        ServiceStatus(sessions, bus, settings),
        SlidingWindowLimiter(sessions, "uploads"),
        bus,
        store,
        channels,
        settings=settings,
    )
