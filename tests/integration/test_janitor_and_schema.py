"""Expiry on real servers, and the migrated schema matching the models."""

import uuid
from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, select

from kazru.adapters.storage import ObjectStore
from kazru.db import jobs
from kazru.db.models import Base, Job, JobState, Segment
from kazru.domain import errors
from kazru.domain.external_copies import NO_EXTERNAL_COPIES
from services.janitor.expiry import Janitor
from tests.conftest import SPEECH_CLIP
from tests.fakes.bus import RecordingBus
from tests.helpers import aiter_of


def test_migrations_create_exactly_the_model_schema(settings):
    engine = create_engine(settings.database_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


async def make_finished_job(database, store, expires_at: datetime) -> Job:
    job_id = uuid.uuid4()
    key = f"jobs/{job_id}/original"
    await store.put_stream(key, aiter_of([SPEECH_CLIP.read_bytes()]))
    job = Job(id=job_id, owner_id="owner-j", state=JobState.SUCCEEDED, progress=100, filename="a.flac",
              content_type="audio/flac", size_bytes=1, object_key=key, container="flac", languages=["ru"],
              created_at=expires_at - timedelta(hours=24), expires_at=expires_at)  # fmt: skip
    async with database.begin() as session:
        session.add(job)
        session.add(Segment(job_id=job_id, position=0, start_seconds=0, end_seconds=1, text="сөз", language="kk",
                            confidence=0.5))  # fmt: skip
    return job


async def test_expired_job_loses_audio_and_text_and_keeps_a_tombstone(settings, database, store):
    expired = await make_finished_job(database, store, datetime.now(UTC) - timedelta(seconds=1))
    alive = await make_finished_job(database, store, datetime.now(UTC) + timedelta(hours=1))

    # As deployed: the janitor's store has no master keys, and needs none to delete.
    await Janitor(
        settings, database, ObjectStore(settings, with_keys=False), RecordingBus(), external_copies=NO_EXTERNAL_COPIES
    ).sweep()

    assert not await store.exists(expired.object_key)
    assert await store.exists(alive.object_key)
    async with database() as session:
        tombstone = await session.get(Job, expired.id)
        assert tombstone.state == JobState.EXPIRED
        assert list(await session.scalars(select(Segment).where(Segment.job_id == expired.id))) == []
        assert len(list(await session.scalars(select(Segment).where(Segment.job_id == alive.id)))) == 1
        still_there = await session.get(Job, alive.id)
        assert still_there.state == JobState.SUCCEEDED
    try:
        jobs.require_transcript(tombstone)
    except errors.Gone as gone:
        assert gone.code == "JOB_EXPIRED"
    else:
        raise AssertionError("an expired job must answer Gone")


async def test_orphan_objects_are_removed_after_the_grace(settings, database, store, monkeypatch):
    from services.janitor import expiry

    key = f"jobs/{uuid.uuid4()}/original"
    await store.put_stream(key, aiter_of([b"orphan"]))
    janitor = Janitor(
        settings, database, ObjectStore(settings, with_keys=False), RecordingBus(), external_copies=NO_EXTERNAL_COPIES
    )
    await janitor.sweep()
    assert await store.exists(key), "too young to be called an orphan"
    monkeypatch.setattr(expiry, "ORPHAN_GRACE", timedelta(seconds=-60))
    await janitor.sweep()
    assert not await store.exists(key)
