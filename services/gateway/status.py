"""What `GET /api/v1/status` and the gateway's `/metrics` read: the queue from JetStream, jobs,
recent throughput and the ages the alert rules watch from PostgreSQL.

The queue is the transcriber's durable consumer: `num_pending` jobs not yet delivered (the
consumer lag), `num_ack_pending` delivered and being worked on (each worker takes one at a
time, so this is also the busy workers), `num_waiting` pull requests of idle workers (each
idle worker keeps one open). Workers are counted from these, so a worker that died holding a
job counts until JetStream redelivers it (one ack wait).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru.adapters.bus import Bus, QueueState
from kazru.db.models import Job, JobState
from kazru.observability import metrics
from kazru.settings import Settings

THROUGHPUT_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class Throughput:
    finished: int  # jobs workers finished (or were stopped in) within the window
    mean_processing_seconds: float | None  # claim to finish, over those jobs

    @property
    def per_second(self) -> float:
        return self.finished / THROUGHPUT_WINDOW.total_seconds()


async def recent_throughput(sessions: async_sessionmaker[AsyncSession]) -> Throughput:
    since = datetime.now(UTC) - THROUGHPUT_WINDOW
    async with sessions() as session:
        finished, mean = (
            await session.execute(
                select(func.count(), func.avg(func.extract("epoch", Job.finished_at - Job.started_at))).where(
                    Job.finished_at >= since, Job.started_at.is_not(None)
                )
            )
        ).one()
    return Throughput(finished, float(mean) if mean is not None else None)


def estimated_wait_seconds(queue: QueueState, throughput: Throughput) -> float | None:
    """Until a job uploaded now is picked up. The rate is the recent throughput, or what the
    workers there are now manage at the recent mean processing time if that is more (the
    throughput undercounts capacity when workers were idle). None: no recent job to go by."""
    if queue.pending == 0 and queue.idle_workers > 0:
        return 0.0
    workers = queue.in_progress + queue.idle_workers
    rate = throughput.per_second
    if throughput.mean_processing_seconds and workers:
        rate = max(rate, workers / throughput.mean_processing_seconds)
    if rate <= 0:
        return None
    # The jobs ahead, and with every worker busy, the one a worker must finish first.
    ahead = queue.pending + (1 if queue.idle_workers == 0 else 0)
    return round(ahead / rate, 1)


async def service_status(sessions: async_sessionmaker[AsyncSession], bus: Bus, settings: Settings) -> dict:
    queue = await bus.queue_state()
    throughput = await recent_throughput(sessions)
    mean = throughput.mean_processing_seconds
    return {
        "queue": {"pending": queue.pending, "in_progress": queue.in_progress},
        "workers": {
            "active": queue.in_progress + queue.idle_workers,
            "busy": queue.in_progress,
            "idle": queue.idle_workers,
        },
        "throughput": {
            "window_minutes": THROUGHPUT_WINDOW.total_seconds() / 60,
            "jobs_finished": throughput.finished,
            "jobs_per_minute": round(throughput.per_second * 60, 3),
            "mean_processing_seconds": round(mean, 2) if mean is not None else None,
        },
        "estimated_wait_seconds": estimated_wait_seconds(queue, throughput),
    }


async def refresh_gauges(sessions: async_sessionmaker[AsyncSession], bus: Bus, settings: Settings) -> None:
    """Read jobs by state and the queue into the gauges, just before a scrape."""
    async with sessions() as session:
        counts = dict((await session.execute(select(Job.state, func.count()).group_by(Job.state))).all())
    for state in JobState:
        metrics.JOBS.labels(state.value).set(counts.get(state.value, 0))
    queue = await bus.queue_state()
    metrics.QUEUE_PENDING.set(queue.pending)
    metrics.QUEUE_ACK_PENDING.set(queue.in_progress)
    metrics.QUEUE_WAITING_PULLS.set(queue.idle_workers)
    await refresh_promise_gauges(sessions)


async def refresh_promise_gauges(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The ages the alert rules watch: the oldest waiting job, the most overdue expiry, engine copies kept."""
    now = datetime.now(UTC)
    live = Job.state.not_in((JobState.EXPIRED, JobState.DELETED))
    async with sessions() as session:
        oldest_pending = await session.scalar(select(func.min(Job.created_at)).where(Job.state == JobState.PENDING))
        first_overdue = await session.scalar(select(func.min(Job.expires_at)).where(live, Job.expires_at < now))
        copies = await session.scalar(
            select(func.count()).where(Job.external_operation_id.is_not(None), Job.expires_at < now)
        )
    metrics.OLDEST_PENDING_SECONDS.set((now - oldest_pending).total_seconds() if oldest_pending else 0)
    metrics.EXPIRY_OVERDUE_SECONDS.set((now - first_overdue).total_seconds() if first_overdue else 0)
    metrics.ENGINE_COPIES_OVERDUE.set(copies or 0)


class ServiceStatus:
    """The queue and the recent throughput, read for operators, users and the metrics scrape."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: Bus, settings: Settings):
        self._sessions = sessions
        self._bus = bus
        self._settings = settings

    async def report(self) -> dict:
        return await service_status(self._sessions, self._bus, self._settings)

    async def refresh_gauges(self) -> None:
        await refresh_gauges(self._sessions, self._bus, self._settings)
