"""Counters that only real work moves: the janitor's deletions, the engine's failures."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import REGISTRY

from kazru.adapters.audio import SAMPLE_RATE
from kazru.db.models import Job, JobState
from kazru.domain.external_copies import NO_EXTERNAL_COPIES
from kazru.settings import Settings, SpeechKitSettings
from services.janitor.expiry import Janitor
from services.transcriber.engines.speechkit import SpeechKitEngine
from services.transcriber.pipeline import TranscriptionPipeline, create_diarizer
from tests.fakes.bus import RecordingBus
from tests.fakes.speechkit_server import FakeSpeechKit, Scenario
from tests.helpers import store_finished_job

API_KEY = "AQVN-metrics-test"


def total(name: str, **labels) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def test_janitor_counts_what_it_expires(settings, database, store):
    before = total("kazru_janitor_deletions_total", kind="expired_jobs")
    job = await store_finished_job(database, store, expires_in_hours=-0.01)
    await Janitor(settings, database, store, RecordingBus(), external_copies=NO_EXTERNAL_COPIES).sweep()
    async with database() as session:
        assert (await session.get(Job, job.id)).state == JobState.EXPIRED
    assert total("kazru_janitor_deletions_total", kind="expired_jobs") >= before + 1


async def test_a_failing_engine_is_counted_by_engine_and_error(infra):
    fake = FakeSpeechKit(api_key=API_KEY, scenario=Scenario(operation_error=(3, "audio is broken")))
    address = await fake.start()
    settings = infra.settings(engine="speechkit", speechkit=SpeechKitSettings(
        api_key=API_KEY, endpoint=address, operation_endpoint=address, tls=False, poll_initial_seconds=0.2,
    ))  # fmt: skip
    engine = SpeechKitEngine(settings.speechkit, ffmpeg_path=settings.ffmpeg_path)
    before = total("kazru_engine_errors_total", engine="speechkit")
    noise = (np.random.default_rng(3).standard_normal(3 * SAMPLE_RATE) * 0.01).astype(np.float32)
    try:
        with pytest.raises(Exception):  # noqa: B017 - which one is the engine's business; counted either way
            await TranscriptionPipeline(engine, create_diarizer(Settings())).run(noise, ["ru"])
    finally:
        await engine.close()
        await fake.stop()
    assert total("kazru_engine_errors_total", engine="speechkit") == before + 1


async def test_the_promise_gauges_read_the_oldest_wait_the_worst_overdue_expiry_and_kept_engine_copies(database, store):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import delete, update

    from services.gateway.status import refresh_promise_gauges

    now = datetime.now(UTC)
    waiting = await store_finished_job(database, store, state="PENDING")
    overdue = await store_finished_job(database, store, expires_in_hours=-0.5)
    try:
        async with database.begin() as session:
            await session.execute(
                update(Job).where(Job.id == waiting.id).values(created_at=now - timedelta(minutes=20))
            )
            await session.execute(update(Job).where(Job.id == overdue.id).values(external_operation_id="op-123"))
        await refresh_promise_gauges(database)
        # Other tests' jobs share the database: at least these, then none of them once removed.
        assert total("kazru_oldest_pending_job_age_seconds") >= 20 * 60 - 5
        assert total("kazru_expiry_overdue_seconds") >= 30 * 60 - 5
        assert total("kazru_engine_copies_overdue") >= 1
        copies = total("kazru_engine_copies_overdue")
    finally:
        async with database.begin() as session:
            await session.execute(delete(Job).where(Job.id.in_([waiting.id, overdue.id])))
    await refresh_promise_gauges(database)
    assert total("kazru_engine_copies_overdue") == copies - 1
