"""NATS JetStream: the job queue and job events.

- `kazru.jobs.uploaded` goes to a work-queue stream (each job handed to one
  transcriber; the message is removed once acked). Nats-Msg-Id = job id, so a
  retried publish inside the duplicate window is dropped by the server.
- Progress and finish events are plain core-NATS messages: cheap, and nothing of
  a job stays on the bus once it is done.

Only ids travel on the bus, never audio (1 MB payload limit) or text.

Services speak to the bus only through `Bus`'s methods (publish, pull jobs, listen for
cancel signals or finishes, read the queue's state, announce); its raw connection
(`nc`, `js`) is for tests and tools that inspect the server (tests/unit/test_layering.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from kazru.observability import tracing
from kazru.settings import Settings
from kazru.v1 import events_pb2

# Pauses between tries of the jobs stream's set-up when JetStream's API times out (its own timeout is 5 s).
STREAM_SETUP_RETRY_SECONDS = (0.5, 1.0, 2.0, 4.0)

log = logging.getLogger(__name__)

# JetStream's error code for a message sequence the stream does not hold.
JS_NO_MESSAGE_FOUND = 10057

SUBJECT_UPLOADED = "kazru.jobs.uploaded"
TRANSCRIBER_CONSUMER = "transcriber"


def progress_subject(job_id: str) -> str:
    return f"kazru.jobs.progress.{job_id}"


def finished_subject(job_id: str) -> str:
    return f"kazru.jobs.finished.{job_id}"


# Core NATS: "stop working on this job now" (it was deleted or expired while a worker had it).
CANCEL_SUBJECTS = "kazru.jobs.cancel.*"


def cancel_subject(job_id: str) -> str:
    return f"kazru.jobs.cancel.{job_id}"


@dataclass(frozen=True)
class QueueState:
    """The transcriber's durable consumer: what waits, what is being worked on, who is idle."""

    pending: int  # waiting for a worker (the consumer lag)
    in_progress: int  # delivered, not yet acknowledged (one per busy worker)
    idle_workers: int  # pull requests of idle workers (each keeps one open)


MessageHandler = Callable[[object], Awaitable[None]]


class Bus:
    def __init__(self, nc: NatsClient, settings: Settings):
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self._settings = settings

    @classmethod
    async def connect(cls, settings: Settings, name: str) -> Bus:
        async def on_disconnect() -> None:
            if not (nc.is_draining or nc.is_closed):
                log.warning("disconnected from NATS; reconnecting")

        async def on_reconnect() -> None:
            log.info("reconnected to NATS")

        async def on_error(error: Exception) -> None:
            log.warning("NATS error: %s", error)

        nc = NatsClient()
        await nc.connect(
            settings.nats_url,
            name=name,
            max_reconnect_attempts=-1,  # a restarted server is waited for, forever
            reconnect_time_wait=0.5,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            error_cb=on_error,
        )
        return cls(nc, settings)

    async def ensure_jobs_stream(self) -> None:
        """Create the jobs stream, or bring an existing one to this configuration (JetStream
        changes the replica count of a live stream in place)."""
        config = StreamConfig(
            name=self._settings.jobs_stream,
            subjects=[SUBJECT_UPLOADED],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            discard=DiscardPolicy.NEW,
            duplicate_window=120.0,
            num_replicas=self._settings.jobs_stream_replicas,
        )
        try:
            for pause in (*STREAM_SETUP_RETRY_SECONDS, None):
                try:
                    try:
                        await self.js.stream_info(config.name)
                        await self.js.update_stream(config)
                    except NotFoundError:
                        await self.js.add_stream(config)
                    break
                except (TimeoutError, nats.errors.TimeoutError):
                    # JetStream's API answers late while its server is busy (several services setting the
                    # stream up at once on a loaded machine): a service waits for it rather than dying.
                    if pause is None:
                        raise
                    log.warning("JetStream did not answer the jobs stream's set-up in time; trying again")
                    await asyncio.sleep(pause)
        except APIError as error:
            message = f"JetStream refused the jobs stream {config.name!r}: {error.description or error}"
            if config.num_replicas > 1:  # the usual cause: more replicas than servers
                message += (
                    f" (it asks for {config.num_replicas} replicas: KAZRU_JOBS_STREAM_REPLICAS must not exceed "
                    "the number of JetStream servers)"
                )
            raise RuntimeError(message) from error

    async def ensure_transcriber_consumer(self) -> None:
        await self.js.add_consumer(
            self._settings.jobs_stream,
            ConsumerConfig(
                durable_name=TRANSCRIBER_CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self._settings.job_ack_wait_seconds,
                max_deliver=self._settings.job_max_deliver,
                filter_subject=SUBJECT_UPLOADED,
                max_ack_pending=1000,
            ),
        )

    async def publish_uploaded(self, event: events_pb2.JobUploaded) -> int:
        """Publish and return the message's stream sequence (of the first copy, for a duplicate)."""
        ack = await self.js.publish(
            SUBJECT_UPLOADED,
            event.SerializeToString(),
            stream=self._settings.jobs_stream,
            # The trace context rides along, so the worker's spans join the upload's trace.
            headers=tracing.inject({"Nats-Msg-Id": event.job_id}),
            timeout=5.0,
        )
        if ack.duplicate:
            log.info("JobUploaded for %s was a duplicate; the server kept the first", event.job_id)
        return ack.seq

    async def remove_queued(self, sequence: int) -> bool:
        """Remove a job's JobUploaded message from the queue; False if it is no longer there
        (taken by a worker, or lost with the stream): either way nothing of the job is queued."""
        try:
            return await self.js.delete_msg(self._settings.jobs_stream, sequence)
        except NotFoundError:
            return False
        except APIError as error:
            # JetStream answers a sequence it no longer holds with 500 / err_code 10057, not 404.
            if error.err_code == JS_NO_MESSAGE_FOUND:
                return False
            raise

    async def pull_jobs(self):
        """The transcribers' shared pull subscription on the jobs stream (`fetch`, then ack/nak/term)."""
        return await self.js.pull_subscribe_bind(TRANSCRIBER_CONSUMER, stream=self._settings.jobs_stream)

    async def on_cancel_signals(self, handler: MessageHandler):
        """Call `handler` for every job's cancel signal (the subject ends with the job id); returns the subscription."""
        return await self.nc.subscribe(CANCEL_SUBJECTS, cb=handler)

    async def on_finished(self, handler: MessageHandler, job_id: str = "*"):
        """Call `handler` with each JobFinished message (of one job, or of all); returns the subscription."""
        return await self.nc.subscribe(finished_subject(job_id), cb=handler)

    async def queue_state(self) -> QueueState:
        try:
            info = await self.js.consumer_info(self._settings.jobs_stream, TRANSCRIBER_CONSUMER)
        except NotFoundError:
            # No transcriber has ever started: whatever the stream holds is waiting.
            try:
                stream = await self.js.stream_info(self._settings.jobs_stream)
            except NotFoundError:
                return QueueState(0, 0, 0)
            return QueueState(stream.state.messages, 0, 0)
        return QueueState(info.num_pending or 0, info.num_ack_pending or 0, info.num_waiting or 0)

    async def publish_cancel(self, job_id: str) -> None:
        await self.nc.publish(cancel_subject(job_id), b"")
        # Flushed: the caller answers the client next, and the worker should hear it first.
        await self.nc.flush(timeout=2)

    async def publish_progress(self, event: events_pb2.JobProgress) -> None:
        await self.nc.publish(progress_subject(event.job_id), event.SerializeToString())

    async def publish_finished(self, event: events_pb2.JobFinished) -> None:
        await self.nc.publish(finished_subject(event.job_id), event.SerializeToString())

    # Announcements: a failed one is logged, never raised. The job's row is what workers and clients
    # read; these only hurry them (a worker's heartbeat sees a cancelled row within seconds, a watcher
    # re-reads the row on its own).

    async def announce_cancel(self, job_id: str) -> None:
        """Tell the job's worker to stop now."""
        try:
            await self.publish_cancel(job_id)
        except Exception:
            log.warning("could not publish the cancel signal", extra={"job_id": job_id}, exc_info=True)

    async def announce_finished(self, job_id: str, state: str, error_code: str = "", error_message: str = "") -> None:
        """Tell the job's watchers it finished."""
        event = events_pb2.JobFinished(
            job_id=job_id, state=str(state), error_code=error_code or "", error_message=error_message or ""
        )
        try:
            await self.publish_finished(event)
        except Exception:
            log.warning("could not publish the finish event", extra={"job_id": job_id}, exc_info=True)

    @contextlib.asynccontextmanager
    async def job_events(self, job_id: str) -> AsyncIterator[asyncio.Event]:
        """An Event set whenever the job reports progress, finishes or is cancelled, while inside.

        Only a wake-up: core NATS may drop a message, and not every change is announced
        (a worker claiming a job is not), so the holder re-reads the job's row.
        `job_id` must be a real job id (it becomes part of a subject)."""
        changed = asyncio.Event()

        async def on_event(_message) -> None:
            changed.set()

        subjects = (progress_subject(job_id), finished_subject(job_id), cancel_subject(job_id))
        subscriptions = [await self.nc.subscribe(subject, cb=on_event) for subject in subjects]
        try:
            # Subscribed on the server before the holder's first read, so no change falls in between.
            await self.nc.flush(timeout=2)
            yield changed
        finally:
            for subscription in subscriptions:
                with contextlib.suppress(Exception):  # the connection may be closing
                    await subscription.unsubscribe()

    async def ping(self) -> None:
        """Round trip to the server and JetStream."""
        await self.nc.flush(timeout=2)
        await self.js.account_info()

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.drain()
