"""Accepting an upload: validate while streaming, store, probe, record, enqueue.

Order matters for "nothing left behind": the object is written first (and
removed again on any later failure), then the row is committed, then the
event is published. The committed row is the outbox: if the publish fails the
job stays PENDING without a queue sequence and the janitor republishes it
(kazru.jobs.outbox), so no accepted job is ever stranded.

Idempotency: an upload with a request id (HTTP `Idempotency-Key`, gRPC
`request_id`) that the owner already used returns that job; the retry's bytes
are read, hashed and dropped, and nothing of it is kept. A retry whose bytes, name
or options differ from the first request's is refused (IDEMPOTENCY_KEY_REUSED, HTTP
422, as draft-ietf-httpapi-idempotency-key-header says) instead of answering a job
made of another file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from kazru.adapters import audio
from kazru.adapters.bus import Bus
from kazru.adapters.storage import ObjectStore
from kazru.db.job_repository import JobRepository, NewUpload
from kazru.db.models import Job
from kazru.domain import errors, upload_protocol
from kazru.jobs import outbox
from kazru.observability import metrics, tracing
from kazru.settings import Settings

log = logging.getLogger(__name__)

MAX_FILENAME_BYTES = 255
MAX_REQUEST_ID_LENGTH = 128

CONTAINER_CONTENT_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "mp4": "audio/mp4",
    "webm": "audio/webm",
    "aac": "audio/aac",
    "amr": "audio/amr",
    "aiff": "audio/aiff",
    "asf": "audio/x-ms-wma",
    "avi": "video/x-msvideo",
    "mpegts": "video/mp2t",
}


@dataclass(frozen=True)
class UploadOptions:
    languages: tuple[str, ...] = ()
    max_speakers: int = 0  # 0: found automatically
    min_speakers: int = 0


@dataclass(frozen=True)
class UploadHeader:
    owner_id: str
    filename: str
    options: UploadOptions
    # Idempotency key chosen by the client; empty: none.
    request_id: str = ""


class UploadMeter:
    """Passes an upload's chunks through, enforcing the size cap and recognising the
    container from the first bytes; afterwards it knows both."""

    def __init__(self, cap: int):
        self.cap = cap
        self.size = 0
        self.container: str | None = None
        # The bytes' hash, as they stream through (an identical upload's result can be reused).
        self.sha256 = hashlib.sha256()

    async def checked(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        head = bytearray()
        async for chunk in chunks:
            self.size += len(chunk)
            if self.size > self.cap:
                raise upload_protocol.too_large(self.cap)
            self.sha256.update(chunk)
            if self.container is not None:
                yield chunk
                continue
            head += chunk
            if len(head) >= audio.SNIFF_BYTES:
                self.container = recognise_container(head)
                yield bytes(head)
        if self.size == 0:
            raise errors.InvalidArgument("the file is empty", code="EMPTY_FILE")
        if self.container is None:
            self.container = recognise_container(head)
            yield bytes(head)


def recognise_container(head: bytes) -> str:
    container = audio.sniff_container(bytes(head[: audio.SNIFF_BYTES]))
    if container is None:
        raise upload_protocol.not_audio()
    return container


def check_duration(info: audio.AudioInfo, settings: Settings) -> None:
    """Refuse a recording whose header says it is longer than the service takes (KAZRU_MAX_DURATION_SECONDS).
    One whose container never learned its length (a browser's MediaRecorder WebM, a stream written to a pipe)
    is accepted: the transcriber holds the limit on what decodes, as it does for a header that undersells."""
    limit = settings.max_duration_seconds
    if limit and info.duration_seconds is not None and info.duration_seconds > limit:
        raise upload_protocol.recording_too_long(limit, info.duration_seconds)


def clean_filename(name: str) -> str:
    """Keep only a displayable base name: no directories, no control characters, ≤255 bytes."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().lstrip(".")
    if not name:
        return "audio"
    encoded = name.encode("utf-8")
    if len(encoded) <= MAX_FILENAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    suffix = f".{extension}" if dot and len(extension.encode()) <= 16 else ""
    budget = MAX_FILENAME_BYTES - len(suffix.encode())
    return name.encode("utf-8")[:budget].decode("utf-8", "ignore") + suffix


def validate_request_id(request_id: str) -> str:
    if len(request_id) > MAX_REQUEST_ID_LENGTH or not all(" " < ch < "\x7f" for ch in request_id):
        raise errors.InvalidArgument(
            f"the idempotency key must be 1-{MAX_REQUEST_ID_LENGTH} printable ASCII characters without spaces",
            code="INVALID_IDEMPOTENCY_KEY",
        )
    return request_id


def validate_options(options: UploadOptions, settings: Settings) -> UploadOptions:
    languages = tuple(dict.fromkeys(lang.strip().lower() for lang in options.languages if lang.strip()))
    unknown = [lang for lang in languages if lang not in settings.supported_languages]
    if unknown:
        raise errors.InvalidArgument(
            f"unsupported language(s): {', '.join(unknown)}; supported: {', '.join(settings.supported_languages)}",
            code="INVALID_LANGUAGE",
        )
    for name in ("min_speakers", "max_speakers"):
        if not 0 <= getattr(options, name) <= upload_protocol.MAX_SPEAKERS:
            raise errors.InvalidArgument(
                f"{name} must be between 1 and {upload_protocol.MAX_SPEAKERS} (or omitted)", code=f"INVALID_{name.upper()}"
            )
    if options.min_speakers and options.max_speakers and options.min_speakers > options.max_speakers:
        raise errors.InvalidArgument("min_speakers must not exceed max_speakers", code="INVALID_MIN_SPEAKERS")
    return UploadOptions(
        languages=languages or settings.default_languages,
        max_speakers=options.max_speakers,
        min_speakers=options.min_speakers,
    )


def check_same_request(earlier: Job, filename: str, options: UploadOptions, content_sha256: str) -> None:
    """Refuse a retry under `earlier`'s request id that is not the same request: other bytes, another file
    name or other options."""
    same = (
        earlier.content_sha256 == content_sha256
        and earlier.filename == clean_filename(filename)
        and list(earlier.languages or ()) == list(options.languages)
        and (earlier.min_speakers or 0) == options.min_speakers
        and (earlier.max_speakers or 0) == options.max_speakers
    )
    if not same:
        raise errors.Unprocessable(
            "Idempotency-Key is already used with a different request payload (another file or other options); "
            "use a new key for a new upload",
            code="IDEMPOTENCY_KEY_REUSED",
            details={"job_id": str(earlier.id)},
        )


class UploadService:
    def __init__(self, settings: Settings, jobs: JobRepository, store: ObjectStore, bus: Bus):
        self._settings = settings
        self._jobs = jobs
        self._store = store
        self._bus = bus

    async def upload(
        self,
        header: UploadHeader,
        chunks: AsyncIterator[bytes],
        late_options: Callable[[], UploadOptions | None],
    ) -> Job:
        if not header.owner_id:
            raise errors.Unauthenticated("an owner is required")
        validate_options(header.options, self._settings)  # fail before reading the body
        validate_request_id(header.request_id)
        if header.request_id:
            earlier = await self._jobs.find_by_request_id(header.owner_id, header.request_id)
            if earlier is not None:
                retried = hashlib.sha256()
                async for chunk in chunks:  # a retry: its bytes are read to the end, hashed and dropped
                    retried.update(chunk)
                options = validate_options(late_options() or header.options, self._settings)
                check_same_request(earlier, header.filename, options, retried.hexdigest())
                log.info("upload retried with a known request id", extra={"job_id": str(earlier.id)})
                return earlier
        job_id = uuid.uuid4()
        key = f"jobs/{job_id}/original"
        meter = UploadMeter(self._settings.max_upload_bytes)
        stored = False
        try:
            # Outages of S3 or PostgreSQL surface as their own exceptions and are
            # answered UNAVAILABLE by the one error mapping (outages.from_infrastructure).
            with tracing.span("store", attributes={"job_id": str(job_id)}):
                await self._store.put_stream(key, meter.checked(chunks))
            stored = True
            options = validate_options(late_options() or header.options, self._settings)
            async with self._store.plaintext_url(key) as url:
                info = await audio.probe(url, self._settings.ffmpeg_path)
            check_duration(info, self._settings)
            job = await self._create_job(job_id, key, header, options, info, meter)
            if job.id != job_id:
                # A concurrent upload with the same request id committed first: it is the job.
                await self._discard_object(key)
                check_same_request(job, header.filename, options, meter.sha256.hexdigest())
                return job
        except BaseException as error:
            log.info(
                "upload abandoned", extra={"job_id": str(job_id), "reason": type(error).__name__, "stored": stored}
            )
            if stored:
                # Shielded: a cancelled upload (client gone) must still clean up.
                await asyncio.shield(self._discard_object(key))
            raise
        if job.reused_from is None:
            await self._enqueue(job)
        log.info("upload accepted", extra={"job_id": str(job_id), "size_bytes": job.size_bytes,
                                           "reused_from": str(job.reused_from) if job.reused_from else None})  # fmt: skip
        metrics.observe_upload(job.size_bytes)
        return job

    async def _create_job(
        self, job_id: uuid.UUID, key: str, header: UploadHeader, options: UploadOptions, info: audio.AudioInfo,
        meter: UploadMeter,
    ) -> Job:  # fmt: skip
        return await self._jobs.add_upload(
            NewUpload(
                id=job_id,
                owner_id=header.owner_id,
                filename=clean_filename(header.filename),
                content_type=CONTAINER_CONTENT_TYPES[meter.container],
                size_bytes=meter.size,
                object_key=key,
                container=meter.container,
                duration_seconds=info.duration_seconds,
                codec=info.codec,
                channels=info.channels,
                sample_rate=info.sample_rate,
                languages=options.languages,
                min_speakers=options.min_speakers,
                max_speakers=options.max_speakers,
                content_sha256=meter.sha256.hexdigest(),
                request_id=header.request_id,
            )
        )

    async def _discard_object(self, key: str) -> None:
        try:
            await self._store.delete(key)
        except Exception:
            # The janitor's sweep of objects without a job removes it later.
            log.exception("could not remove a rejected upload's object", extra={"object_key": key})

    async def _enqueue(self, job: Job) -> None:
        try:
            await outbox.publish_job(self._jobs, self._bus, job)
        except Exception as error:
            # The job is committed and stays PENDING without a queue sequence: the janitor's
            # outbox relay publishes it. The client has its job either way.
            log.warning(
                "could not enqueue the job now; the outbox relay will",
                extra={"job_id": str(job.id), "error": repr(error)},
            )
