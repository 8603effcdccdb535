"""Usage figures: per day of upload, files, audio minutes, outcomes, and what an external engine bills.

Counted once per job, in the transaction that finishes or tombstones it, twice over: service-wide
(usage_stats, nothing naming an owner: the operator's `kazru-admin usage`) and per owner (usage_by_owner: each
owner's own figures at GET /api/v1/usage). Counts only, no content, so both outlive the jobs they count.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from kazru.db.models import Job, JobState, OwnerUsage, UsageStats
from kazru.settings import Settings

MAX_REPORT_DAYS = 366
FIGURES = ("files", "audio_seconds", "succeeded", "failed", "cancelled", "engine_billed_seconds", "estimated_cost")


async def record_usage(session: AsyncSession, job: Job, settings: Settings) -> None:
    """Count a finished (or tombstoned) job in its upload day's usage, once. Call in the
    transaction that moves the job to a finished state or to a tombstone."""
    if job.usage_counted:
        return
    state = JobState(job.state)
    billed = job.billed_seconds or 0.0
    counts = {
        "files": 1,
        "audio_seconds": job.duration_seconds or 0.0,
        "succeeded": int(state is JobState.SUCCEEDED),
        "failed": int(state is JobState.FAILED),
        "cancelled": int(state is JobState.CANCELLED),
        "engine_billed_seconds": billed,
        "estimated_cost": billed / 60 * settings.usage_cost_per_billed_minute,
    }
    day = (job.created_at or datetime.now(UTC)).astimezone(UTC).date()
    for table, keys in ((UsageStats, {"day": day}), (OwnerUsage, {"owner_id": job.owner_id, "day": day})):
        statement = insert(table).values(**keys, **counts)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[getattr(table, key) for key in keys],
                set_={
                    **{name: getattr(table, name) + getattr(statement.excluded, name) for name in counts},
                    "updated_at": datetime.now(UTC),
                },
            )
        )
    job.usage_counted = True


@dataclass(frozen=True)
class UsageDay:
    day: date
    files: int = 0
    audio_seconds: float = 0.0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    engine_billed_seconds: float = 0.0
    estimated_cost: float = 0.0

    def as_json(self) -> dict:
        figures = asdict(self)
        figures["day"] = self.day.isoformat()
        figures["audio_minutes"] = round(self.audio_seconds / 60, 2)
        return figures


async def usage_report(
    session: AsyncSession, days: int, owner_id: str | None = None, today: date | None = None
) -> list[UsageDay]:
    """The last `days` days (today included), newest first, days without uploads included as zeros;
    service-wide, or one owner's."""
    days = max(1, min(days, MAX_REPORT_DAYS))
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    table = UsageStats if owner_id is None else OwnerUsage
    query = select(table).where(table.day >= first, table.day <= today)
    if owner_id is not None:
        query = query.where(OwnerUsage.owner_id == owner_id)
    found = {row.day: row for row in await session.scalars(query)}
    report = []
    for offset in range(days):
        day = today - timedelta(days=offset)
        row = found.get(day)
        report.append(UsageDay(day, **{name: getattr(row, name) for name in FIGURES}) if row else UsageDay(day))
    return report


def totals(report: list[UsageDay]) -> dict:
    summed = {name: sum(getattr(day, name) for day in report) for name in FIGURES}
    summed["audio_minutes"] = round(summed["audio_seconds"] / 60, 2)
    return summed
