"""Usage figures on real PostgreSQL: each finished job counted once, service-wide and for its owner, and
the reports (kazru-admin usage, GET /api/v1/usage) by day with empty days as zeros. Jobs here are dated on a
day of their own, so other tests' jobs (all of today) do not mix in."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from kazru.db import usage
from kazru.db.models import Job, JobState


def a_day_of_our_own() -> date:
    return date(2001, 1, 1) + timedelta(days=random.randrange(20 * 365))


def job_on(day: date, owner: str, state: JobState, duration: float, billed: float | None = None) -> Job:
    return Job(
        id=uuid.uuid4(), owner_id=owner, state=state, filename="a.flac", content_type="audio/flac", size_bytes=1,
        object_key="jobs/x", container="flac", languages=["kk"], duration_seconds=duration, billed_seconds=billed,
        created_at=datetime(day.year, day.month, day.day, 12, tzinfo=UTC), expires_at=datetime.now(UTC),
    )  # fmt: skip


async def test_each_job_is_counted_once_for_the_service_and_for_its_owner(database, settings):
    day = a_day_of_our_own()
    priced = settings.model_copy(update={"usage_cost_per_billed_minute": 2.0})
    jobs = [
        job_on(day, "owner-a", JobState.SUCCEEDED, 90.0, billed=120.0),
        job_on(day, "owner-a", JobState.FAILED, 30.0),
        job_on(day, "owner-b", JobState.SUCCEEDED, 60.0),
    ]
    async with database.begin() as session:
        for job in jobs:
            session.add(job)
            await usage.record_usage(session, job, priced)
            await usage.record_usage(session, job, priced)  # a second call counts nothing
    async with database() as session:
        service = await usage.usage_report(session, 3, today=day + timedelta(days=1))
        mine = await usage.usage_report(session, 3, owner_id="owner-a", today=day + timedelta(days=1))
        theirs = await usage.usage_report(session, 1, owner_id="owner-b", today=day)
    assert [d.day for d in service] == [day + timedelta(days=1), day, day - timedelta(days=1)]
    assert service[0] == usage.UsageDay(day + timedelta(days=1)) and service[2] == usage.UsageDay(
        day - timedelta(days=1)
    )
    assert (service[1].files, service[1].succeeded, service[1].failed) == (3, 2, 1)
    assert service[1].audio_seconds == pytest.approx(180.0)
    assert (mine[1].files, mine[1].failed, mine[1].engine_billed_seconds) == (2, 1, 120.0)
    assert mine[1].estimated_cost == pytest.approx(4.0)  # 2 billed minutes at 2.0
    assert (theirs[0].files, theirs[0].audio_seconds, theirs[0].failed) == (1, 60.0, 0)
    totals = usage.totals(mine)
    assert totals["files"] == 2 and totals["audio_minutes"] == 2.0
    assert mine[1].as_json()["day"] == day.isoformat() and mine[1].as_json()["audio_minutes"] == 2.0


async def test_a_report_is_bounded(database):
    async with database() as session:
        report = await usage.usage_report(session, 10_000, owner_id="nobody-" + uuid.uuid4().hex)
    assert len(report) == usage.MAX_REPORT_DAYS and all(day.files == 0 for day in report)
