"""The transcription worker: a JetStream durable pull consumer (work queue).

Per message: claim the job (RUNNING), decode once to 16 kHz mono, run the
engine while reporting progress and heartbeating the message, then write all
segments and SUCCEEDED in one transaction, and only then ack. A redelivered
message for a finished job is simply acked, so processing is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime

import nats.errors
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru import audio, errors, metrics, tracing
from kazru.bus import SUBJECT_UPLOADED, TRANSCRIBER_CONSUMER, Bus
from kazru.db.models import Job, JobState, Segment, Speaker, Word
from kazru.settings import Settings
from kazru.storage import ObjectStore
from kazru.telemetry import job_context
from kazru.v1 import events_pb2
from services.transcriber.pipeline import TranscriptionPipeline, TranscriptionResult

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 0.5
# Redelivery delays after transient failures (attempt 1, 2, ...).
RETRY_DELAYS_SECONDS = (2.0, 10.0, 30.0, 60.0)


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
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        bus: Bus,
        pipeline: TranscriptionPipeline,
    ):
        self._settings = settings
        self._sessions = sessions
        self._store = store
        self._bus = bus
        self._pipeline = pipeline

    async def run(self, stop: asyncio.Event) -> None:
        await self._bus.ensure_jobs_stream()
        await self._bus.ensure_transcriber_consumer()
        subscription = await self._bus.js.pull_subscribe_bind(TRANSCRIBER_CONSUMER, stream=self._settings.jobs_stream)
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
                        # E.g. the database went away before the job was claimed: hand it back.
                        log.warning("could not handle a job; it will be redelivered", exc_info=True)
                        with contextlib.suppress(Exception):
                            await message.nak(delay=RETRY_DELAYS_SECONDS[0])
        finally:
            # A pull subscription left open makes the connection's drain wait for its timeout.
            await asyncio.shield(subscription.unsubscribe())

    async def handle(self, message) -> None:
        """One message, in the upload's trace (its context rides in the message headers), with
        the job id (the message id) on every log line."""
        headers = message.headers or {}
        with job_context(headers.get("Nats-Msg-Id")), tracing.span(
            "transcribe", parent=tracing.extract(headers), kind=tracing.trace.SpanKind.CONSUMER
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
        claimed = await self._claim(job_id)
        if claimed is None:
            await message.ack()
            return
        heartbeat = asyncio.create_task(self._heartbeat(message))
        reporter: ProgressReporter | None = None
        stages: dict[str, float] = {"queue_seconds": (claimed.started_at - claimed.created_at).total_seconds()}
        tracing.record_span("queue wait", claimed.created_at, claimed.started_at)
        try:
            # A storage outage raises here and is retried; a missing object cannot come back.
            if not await self._store.exists(claimed.object_key):
                raise errors.FailedPrecondition("the uploaded audio is gone", code="AUDIO_MISSING")
            with _timed(stages, "decode_seconds"), tracing.span("decode"):
                samples = await audio.decode_pcm16k(
                    self._store.presigned_url(claimed.object_key), self._settings.ffmpeg_path
                )
            reporter = ProgressReporter(self, job_id, len(samples) / audio.SAMPLE_RATE)
            with _timed(stages, "pipeline_seconds"):
                result = await self._pipeline.run(
                    samples,
                    claimed.languages,
                    min_speakers=claimed.min_speakers,
                    max_speakers=claimed.max_speakers,
                    on_progress=reporter.from_engine_thread,
                )
            reporter.stop()
            with _timed(stages, "save_seconds"), tracing.span("database write"):
                await self._save(job_id, result)
                await message.ack()
            await self._publish_finished(job_id, JobState.SUCCEEDED)
            await self._forget_at_engine(job_id, result)
            log.info(
                "job succeeded",
                extra={"job_id": str(job_id), "segments": len(result.segments), "speakers": len(result.speakers),
                       **{k: round(v, 4) for k, v in {**result.stage_seconds, **stages}.items()}},
            )  # fmt: skip
            metrics.JOBS_FINISHED.labels(JobState.SUCCEEDED.value).inc()
            metrics.observe_transcription(
                result.engine, {**result.stage_seconds, **stages}, result.billed_seconds, self._settings
            )
        except errors.KazruError as error:
            # The input itself is bad: retrying cannot help.
            await self._fail(job_id, error.code, error.message)
            await message.term()
        except asyncio.CancelledError:
            await asyncio.shield(self._release(job_id, message))
            raise
        except Exception as error:
            await self._retry_or_fail(job_id, message, error)
        finally:
            if reporter is not None:
                reporter.stop()
            heartbeat.cancel()

    async def _claim(self, job_id: uuid.UUID) -> Job | None:
        async with self._sessions.begin() as session:
            job = await session.get(Job, job_id, with_for_update=True)
            if job is None or job.job_state.is_terminal:
                log.info("skipping a job that is gone or finished", extra={"job_id": str(job_id)})
                return None
            job.state = JobState.RUNNING
            job.progress = 0
            job.attempts += 1
            job.started_at = datetime.now(UTC)
            return job

    async def _heartbeat(self, message) -> None:
        """Tell JetStream the job is alive so it is not redelivered to another worker."""
        while True:
            await asyncio.sleep(self._settings.job_ack_wait_seconds / 3)
            try:
                await message.in_progress()
            except Exception:
                log.warning("heartbeat failed", exc_info=True)

    async def record_progress(self, job_id: uuid.UUID, percent: int, position: float, duration: float) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING).values(progress=percent)
            )
        await self._bus.publish_progress(
            events_pb2.JobProgress(
                job_id=str(job_id), progress=percent, processed_seconds=position, duration_seconds=duration
            )
        )

    async def _save(self, job_id: uuid.UUID, result: TranscriptionResult) -> None:
        """Replace the job's transcript (segments, words, speakers) and mark it SUCCEEDED, in one transaction."""
        async with self._sessions.begin() as session:
            job = await session.scalar(select(Job).where(Job.id == job_id).with_for_update())
            if job is None or job.job_state is not JobState.RUNNING:
                log.info("job changed state while running; result discarded", extra={"job_id": str(job_id)})
                return
            for table in (Word, Segment, Speaker):
                await session.execute(delete(table).where(table.job_id == job_id))
            session.add_all(_transcript_rows(job_id, result))
            transcript = result.transcript
            job.state = JobState.SUCCEEDED
            job.progress = 100
            job.detected_language = transcript.main_language
            job.language_shares = transcript.language_shares
            job.speaker_count = len(transcript.speakers)
            job.engine = result.engine
            job.billed_seconds = result.billed_seconds
            job.external_operation_id = result.external_operation_id
            job.finished_at = datetime.now(UTC)
            job.error_code = None
            job.error_message = None

    async def _forget_at_engine(self, job_id: uuid.UUID, result: TranscriptionResult) -> None:
        """Delete the copy an external engine keeps, once ours is stored. If that fails,
        the id stays on the job and the janitor deletes it at expiry."""
        if not result.external_operation_id:
            return
        try:
            await self._pipeline.engine.forget(result.external_operation_id)
            async with self._sessions.begin() as session:
                await session.execute(update(Job).where(Job.id == job_id).values(external_operation_id=None))
        except Exception:
            log.warning("could not delete the engine's copy; the janitor will", extra={"job_id": str(job_id)},
                        exc_info=True)  # fmt: skip

    async def _fail(self, job_id: uuid.UUID, code: str, message: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.RUNNING)
                .values(state=JobState.FAILED, error_code=code, error_message=message, finished_at=datetime.now(UTC))
            )
        await self._publish_finished(job_id, JobState.FAILED, code, message)
        metrics.JOBS_FINISHED.labels(JobState.FAILED.value).inc()
        log.warning("job failed", extra={"job_id": str(job_id), "error_code": code})

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
            async with self._sessions.begin() as session:
                await session.execute(
                    update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING).values(state=JobState.PENDING)
                )
        finally:
            await message.nak(delay=delay)

    async def _publish_finished(self, job_id: uuid.UUID, state: JobState, code: str = "", text: str = "") -> None:
        try:
            await self._bus.publish_finished(
                events_pb2.JobFinished(job_id=str(job_id), state=state.value, error_code=code, error_message=text)
            )
        except Exception:
            log.warning("could not publish the finish event", extra={"job_id": str(job_id)}, exc_info=True)


def _transcript_rows(job_id: uuid.UUID, result: TranscriptionResult) -> list[Segment | Word | Speaker]:
    rows: list[Segment | Word | Speaker] = [
        Speaker(job_id=job_id, label=speaker.label, speaking_seconds=speaker.speaking_seconds,
                segment_count=speaker.segment_count)
        for speaker in result.speakers
    ]  # fmt: skip
    word_position = 0
    for position, segment in enumerate(result.segments):
        rows.append(
            Segment(
                job_id=job_id,
                position=position,
                start_seconds=round(segment.start, 3),
                end_seconds=round(segment.end, 3),
                text=segment.text,
                language=segment.language,
                confidence=round(segment.confidence, 4),
                speaker=segment.speaker,
            )
        )
        for word in segment.words:
            rows.append(
                Word(job_id=job_id, segment_position=position, position=word_position,
                     start_seconds=round(word.start, 3), end_seconds=round(word.end, 3), text=word.text,
                     probability=round(word.probability, 4), speaker=word.speaker)
            )  # fmt: skip
            word_position += 1
    return rows
