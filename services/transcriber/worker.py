"""The transcription worker: a JetStream durable pull consumer (work queue).

Per message: claim the job (RUNNING), decode once to 16 kHz mono PCM in a file of
the job's own (deleted when the job ends; read piece by piece, so memory does not
grow with the recording's length), run the
engine while reporting progress and heartbeating the message, then write all
segments and SUCCEEDED in one transaction, and only then ack. A redelivered
message for a finished job is simply acked, so processing is idempotent.

A job deleted or expired while it runs is cancelled: the worker hears it on
`kazru.jobs.cancel.{id}` (or sees the row change at its next heartbeat), stops
waiting for the engine at once, terminates the message and writes nothing; the
engine thread, which cannot be killed, stops at its next progress check.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import uuid
from pathlib import Path

import nats.errors

from kazru.adapters import audio
from kazru.adapters.bus import SUBJECT_UPLOADED, Bus
from kazru.adapters.outages import from_infrastructure
from kazru.adapters.storage import ObjectStore
from kazru.db.job_repository import JobRepository, Outcome
from kazru.db.models import Job, JobState
from kazru.domain import errors, upload_protocol
from kazru.observability import metrics, tracing
from kazru.observability.logs import job_context
from kazru.settings import Settings
from kazru.v1 import events_pb2
from services.transcriber.pipeline import TranscriptionPipeline, TranscriptionResult
from services.transcriber.scratch import ScratchSpace

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 0.5
# Redelivery delays after transient failures (attempt 1, 2, ...).
RETRY_DELAYS_SECONDS = (2.0, 10.0, 30.0, 60.0)
# While the database cannot be reached, a delivered job is held (JetStream is told it is in progress)
# and its claim tried again after these pauses (the last repeats), rather than handed back: every
# hand-back costs one of the job's job_max_deliver deliveries, and a job whose deliveries all ran out
# before it was claimed stayed PENDING, with nothing left to run it, until it expired.
CLAIM_RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)


# Decoded audio shorter than the header's claim by more than this (and this share) means a truncated file;
# less is the usual slack of header estimates (a VBR MP3 without a Xing frame, container padding).
TRUNCATION_SLACK_SECONDS = 1.0
TRUNCATION_SLACK_SHARE = 0.05


def is_truncated(declared: float, decoded: float) -> bool:
    return declared - decoded > max(TRUNCATION_SLACK_SECONDS, TRUNCATION_SLACK_SHARE * declared)


class JobCancelled(Exception):
    """The job was deleted or expired while it ran: stop, write nothing."""


class CancelSwitch:
    """Tripped from the event loop (cancel signal, heartbeat); checked by the engine thread too."""

    def __init__(self) -> None:
        self._flag = threading.Event()
        self.tripped = asyncio.Event()

    def trip(self) -> None:
        self._flag.set()
        self.tripped.set()

    def check(self) -> None:
        """Raise once tripped. Called from the progress callback, between engine segments:
        raising there ends faster-whisper's generator, so the engine thread stops too."""
        if self._flag.is_set():
            raise JobCancelled()


@contextlib.contextmanager
def _timed(stages: dict[str, float], name: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = time.perf_counter() - started


class ProgressReporter:
    """Carries the engine thread's position to the database and the bus, at most twice a second."""

    def __init__(self, worker: TranscriptionWorker, job_id: uuid.UUID, duration: float):
        self._worker = worker
        self._job_id = job_id
        self._duration = duration
        self._loop = asyncio.get_running_loop()
        self._fraction = 0.0
        self._published = 0
        self._task = asyncio.create_task(self._run())

    def from_engine_thread(self, fraction: float) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_fraction", fraction)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)
            # 100 is written together with the transcript, never before.
            percent = min(99, int(self._fraction * 100))
            if percent > self._published:
                self._published = percent
                try:
                    await self._worker.record_progress(
                        self._job_id, percent, self._fraction * self._duration, self._duration
                    )
                except Exception:  # progress is best effort; the job goes on
                    log.warning("could not record progress", extra={"job_id": str(self._job_id)}, exc_info=True)

    def stop(self) -> None:
        self._task.cancel()


class TranscriptionWorker:
    def __init__(
        self,
        settings: Settings,
        jobs: JobRepository,
        store: ObjectStore,
        bus: Bus,
        pipeline: TranscriptionPipeline,
        scratch: ScratchSpace,
    ):
        self._settings = settings
        self._jobs = jobs
        self._store = store
        self._bus = bus
        self._pipeline = pipeline
        self._scratch = scratch
        # The job in hand and its cancel switch (a worker holds one job at a time).
        self._current: tuple[uuid.UUID, CancelSwitch] | None = None
        # Set when the worker is asked to stop: a job held while the database is down is handed back.
        self._stopping = asyncio.Event()

    async def _on_cancel_signal(self, msg) -> None:
        current = self._current
        if current is not None and msg.subject.rsplit(".", 1)[-1] == str(current[0]):
            log.info("cancel signal for the running job", extra={"job_id": str(current[0])})
            current[1].trip()

    async def run(self, stop: asyncio.Event) -> None:
        self._stopping = stop
        await self._bus.ensure_jobs_stream()
        await self._bus.ensure_transcriber_consumer()
        cancels = await self._bus.on_cancel_signals(self._on_cancel_signal)
        subscription = await self._bus.pull_jobs()
        log.info("waiting for jobs", extra={"subject": SUBJECT_UPLOADED})
        try:
            while not stop.is_set():
                try:
                    messages = await subscription.fetch(1, timeout=2.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except Exception:
                    log.warning("fetch from JetStream failed; retrying", exc_info=True)
                    await asyncio.sleep(1.0)
                    continue
                for message in messages:
                    try:
                        await self.handle(message)
                    except Exception:
                        # E.g. the claim failed other than by a database outage (which is waited out),
                        # or the worker is stopping while it waits: hand it back.
                        log.warning("could not handle a job; it will be redelivered", exc_info=True)
                        with contextlib.suppress(Exception):
                            await message.nak(delay=RETRY_DELAYS_SECONDS[0])
        finally:
            # A pull subscription left open makes the connection's drain wait for its timeout.
            await asyncio.shield(subscription.unsubscribe())
            with contextlib.suppress(Exception):
                await cancels.unsubscribe()

    async def handle(self, message) -> None:
        """One message, in the upload's trace (its context rides in the message headers), with
        the job id (the message id) on every log line."""
        headers = message.headers or {}
        with (
            job_context(headers.get("Nats-Msg-Id")),
            tracing.span("transcribe", parent=tracing.extract(headers), kind=tracing.trace.SpanKind.CONSUMER),
        ):
            await self._handle(message)

    async def _handle(self, message) -> None:
        try:
            event = events_pb2.JobUploaded.FromString(message.data)
            job_id = uuid.UUID(event.job_id)
        except Exception:
            log.error("dropping a malformed JobUploaded message")
            await message.term()
            return
        claimed = await self._claim_once_the_database_answers(job_id, message)
        if claimed is None:
            await message.ack()
            return
        switch = CancelSwitch()
        self._current = (job_id, switch)
        heartbeat = asyncio.create_task(self._heartbeat(message, job_id, switch))
        reporter: ProgressReporter | None = None
        stages: dict[str, float] = {"queue_seconds": (claimed.started_at - claimed.created_at).total_seconds()}
        tracing.record_span("queue wait", claimed.created_at, claimed.started_at)
        # The decoded PCM (115 MB per hour) lives on local disk, not in memory; what a killed worker leaves
        # there is removed by the next transcriber that starts (scratch.py).
        work_dir = self._scratch.for_job(job_id)
        try:
            # A storage outage raises here and is retried; a missing object cannot come back.
            if not await self._store.exists(claimed.object_key):
                raise errors.FailedPrecondition("the uploaded audio is gone", code="AUDIO_MISSING")
            with _timed(stages, "decode_seconds"), tracing.span("decode"):
                async with self._store.plaintext_url(claimed.object_key) as url:
                    # Stops soon after the audio passes the duration limit: a header can undersell a recording
                    # or not tell its length at all, and ingest could only check what the header said.
                    recording = await _until_cancelled(
                        audio.decode_to_file(url, Path(work_dir.name) / "audio.pcm", self._settings.ffmpeg_path,
                                             max_seconds=self._settings.max_duration_seconds),
                        switch,
                    )  # fmt: skip
            await self._record_decoded_duration(claimed, recording.duration)
            # A worker that died on an earlier attempt may have left a copy at the engine's provider.
            await self._forget_earlier_copy(claimed)
            reporter = ProgressReporter(self, job_id, recording.duration)

            def on_progress(fraction: float, report=reporter.from_engine_thread) -> None:
                switch.check()
                report(fraction)

            with _timed(stages, "pipeline_seconds"):
                result = await _until_cancelled(
                    self._pipeline.run(
                        recording,
                        claimed.languages,
                        min_speakers=claimed.min_speakers,
                        max_speakers=claimed.max_speakers,
                        on_progress=on_progress,
                        on_external_copy=functools.partial(self._record_external_copy, job_id),
                    ),
                    switch,
                )
            reporter.stop()
            with _timed(stages, "save_seconds"), tracing.span("database write"):
                saved = await self._save(job_id, result)
                await message.ack()
            await self._forget_at_engine(job_id, result)
            if not saved:
                raise JobCancelled()
            await self._bus.announce_finished(str(job_id), JobState.SUCCEEDED)
            log.info(
                "job succeeded",
                extra={"job_id": str(job_id), "segments": len(result.segments), "speakers": len(result.speakers),
                       **{k: round(v, 4) for k, v in {**result.stage_seconds, **stages}.items()}},
            )  # fmt: skip
            metrics.JOBS_FINISHED.labels(JobState.SUCCEEDED.value).inc()
            metrics.observe_transcription(
                result.engine, {**result.stage_seconds, **stages}, result.billed_seconds, self._settings
            )
        except JobCancelled:
            # Deleted or expired while running: the row is a tombstone already and nothing is written.
            log.info("job cancelled; its work stopped", extra={"job_id": str(job_id)})
            metrics.JOBS_FINISHED.labels(JobState.CANCELLED.value).inc()
            with contextlib.suppress(Exception):  # already acked if it was cancelled while saving
                await message.term()
        except errors.KazruError as error:
            if error.kind is errors.Kind.UNAVAILABLE:
                # A dependency is down (e.g. S3 restarting mid-read): retried like any transient failure.
                await self._retry_or_fail(job_id, message, error)
            else:
                # The input itself is bad: retrying cannot help.
                await self._fail(job_id, error.code, error.message)
                if error.code == upload_protocol.RECORDING_TOO_LONG:
                    await self._discard_refused_audio(claimed)
                await message.term()
        except asyncio.CancelledError:
            await asyncio.shield(self._release(job_id, message))
            raise
        except Exception as error:
            await self._retry_or_fail(job_id, message, error)
        finally:
            self._current = None
            if reporter is not None:
                reporter.stop()
            heartbeat.cancel()
            work_dir.cleanup()

    async def _claim_once_the_database_answers(self, job_id: uuid.UUID, message) -> Job | None:
        """The claim, tried until the database answers while the message is kept in progress (see
        CLAIM_RETRY_SECONDS). Raises, and so hands the message back, if the worker is stopping, on any
        other error, or if JetStream cannot be told (then it redelivers the message after its ack wait)."""
        tried = 0
        while True:
            tried += 1
            try:
                return await self._jobs.claim(job_id, message.metadata.num_delivered)
            except Exception as error:
                outage = from_infrastructure(error)
                if outage is None or outage.code != "DATABASE_UNAVAILABLE" or self._stopping.is_set():
                    raise
                if tried == 1:
                    log.warning("the database is unavailable; holding the job until it answers", exc_info=True)
            await message.in_progress()
            pause = CLAIM_RETRY_SECONDS[min(tried, len(CLAIM_RETRY_SECONDS)) - 1]
            await asyncio.sleep(min(pause, self._settings.job_ack_wait_seconds / 3))

    async def _heartbeat(self, message, job_id: uuid.UUID, switch: CancelSwitch) -> None:
        """Tell JetStream the job is alive, so it is not redelivered to another worker, and the
        database too (the janitor fails jobs whose worker died on their last delivery). A job
        that is no longer RUNNING (deleted, expired) is cancelled even if its signal was missed."""
        while True:
            await asyncio.sleep(self._settings.job_ack_wait_seconds / 3)
            try:
                await message.in_progress()
            except Exception:
                log.warning("heartbeat to the queue failed", exc_info=True)
            try:
                if not await self._jobs.heartbeat(job_id):
                    switch.trip()
            except Exception:
                log.warning("heartbeat to the database failed", exc_info=True)

    async def record_progress(self, job_id: uuid.UUID, percent: int, position: float, duration: float) -> None:
        await self._jobs.record_progress(job_id, percent)
        await self._bus.publish_progress(
            events_pb2.JobProgress(
                job_id=str(job_id), progress=percent, processed_seconds=position, duration_seconds=duration
            )
        )

    async def _save(self, job_id: uuid.UUID, result: TranscriptionResult) -> bool:
        """Replace the job's transcript and mark it SUCCEEDED, in one transaction. False (and nothing
        written) if the job stopped being RUNNING meanwhile (deleted, expired)."""
        saved = await self._jobs.succeed(
            job_id,
            Outcome(
                transcript=result.transcript,
                notices=[notice.as_json() for notice in result.notices],
                engine=result.engine,
                engine_model=result.model,
                billed_seconds=result.billed_seconds,
                external_operation_id=result.external_operation_id,
            ),
        )
        if not saved:
            log.info("job changed state while running; result discarded", extra={"job_id": str(job_id)})
        return saved

    async def _record_decoded_duration(self, job: Job, decoded: float) -> None:
        """The job's duration becomes what decodes. A file whose header claims far more (a truncated or damaged
        upload, seen only now that it is decoded) keeps the claim beside it, and the job says it is truncated."""
        declared = job.declared_duration_seconds or job.duration_seconds or 0.0
        truncated = is_truncated(declared, decoded)
        await self._jobs.record_duration(job.id, decoded, declared if truncated else None)
        if truncated:
            log.warning("the file decodes to far less than its header claims", extra={
                "job_id": str(job.id), "declared_seconds": round(declared, 2), "decoded_seconds": round(decoded, 2)})  # fmt: skip

    async def _record_external_copy(self, job_id: uuid.UUID, operation_id: str | None) -> None:
        """The copy the engine's provider keeps of this job (None: none). Recorded as soon as it
        exists, before waiting for it: if this worker dies, the next attempt (or the janitor at
        expiry) still knows what to delete."""
        await self._jobs.record_external_copy(job_id, operation_id)

    async def _delete_external_copy(self, job_id: uuid.UUID, operation_id: str) -> None:
        await self._pipeline.engine.forget(operation_id)
        await self._record_external_copy(job_id, None)

    async def _forget_earlier_copy(self, job: Job) -> None:
        """Delete the copy an earlier attempt left at the engine's provider (its worker died before
        storing a result). Failing that, the job is retried: recording a new copy would lose this one."""
        if not job.external_operation_id:
            return
        try:
            await self._delete_external_copy(job.id, job.external_operation_id)
        except Exception as error:
            raise errors.Unavailable(
                "could not delete the engine's copy from an earlier attempt", code="ENGINE_COPY_NOT_DELETED"
            ) from error
        log.info("deleted the engine's copy left by an earlier attempt", extra={"job_id": str(job.id)})

    async def _forget_at_engine(self, job_id: uuid.UUID, result: TranscriptionResult) -> None:
        """Delete the copy an external engine keeps, once ours is stored. If that fails,
        the id stays on the job and the janitor deletes it at expiry."""
        if not result.external_operation_id:
            return
        try:
            await self._delete_external_copy(job_id, result.external_operation_id)
        except Exception:
            log.warning("could not delete the engine's copy; the janitor will", extra={"job_id": str(job_id)},
                        exc_info=True)  # fmt: skip

    async def _fail(self, job_id: uuid.UUID, code: str, message: str) -> None:
        if await self._jobs.fail(job_id, code, message) is None:  # deleted or expired meanwhile: it stays so
            return
        await self._bus.announce_finished(str(job_id), JobState.FAILED, code, message)
        metrics.JOBS_FINISHED.labels(JobState.FAILED.value).inc()
        log.warning("job failed", extra={"job_id": str(job_id), "error_code": code})

    async def _discard_refused_audio(self, job: Job) -> None:
        """A recording found too long only while decoding is refused as ingest refuses one whose header says
        so: none of it is kept (the row stays, FAILED, to tell its owner why). Failing that, expiry removes it."""
        try:
            await self._store.delete(job.object_key)
        except Exception:
            log.warning("could not delete a refused recording; expiry will", extra={"job_id": str(job.id)},
                        exc_info=True)  # fmt: skip

    async def _retry_or_fail(self, job_id: uuid.UUID, message, error: Exception) -> None:
        attempt = message.metadata.num_delivered
        if attempt >= self._settings.job_max_deliver:
            log.error("job failed on its last delivery", extra={"job_id": str(job_id)}, exc_info=error)
            await self._fail(job_id, "TRANSCRIPTION_FAILED", f"transcription failed after {attempt} attempts")
            await message.term()
            return
        delay = RETRY_DELAYS_SECONDS[min(attempt, len(RETRY_DELAYS_SECONDS)) - 1]
        log.warning("job attempt failed; will retry", extra={"job_id": str(job_id), "attempt": attempt}, exc_info=error)
        await self._release(job_id, message, delay)

    async def _release(self, job_id: uuid.UUID, message, delay: float = 0.0) -> None:
        """Hand the job back to the queue (shutdown or transient failure)."""
        try:
            await self._jobs.hand_back(job_id)
        finally:
            await message.nak(delay=delay)


async def _until_cancelled(work, switch: CancelSwitch):
    """Await `work`, or raise JobCancelled as soon as the switch trips, freeing the worker for
    its next job. The engine thread cannot be killed: it stops at its next progress check."""
    task = asyncio.ensure_future(work)
    tripped = asyncio.create_task(switch.tripped.wait())
    try:
        await asyncio.wait({task, tripped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        tripped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    # Its outcome (JobCancelled from the engine thread, or a result nobody wants) is dropped.
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    raise JobCancelled()
