"""Deleting and expiring jobs on real PostgreSQL, NATS and S3: everything of the job goes at once,
a tombstone stays, illegal changes are refused, and the day's usage figures survive."""

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from kazru.adapters.engine_copies import for_engine
from kazru.adapters.storage import ObjectStore
from kazru.db.job_repository import JobRepository
from kazru.db.models import Job, JobState
from kazru.domain import errors
from kazru.domain.external_copies import NO_EXTERNAL_COPIES
from kazru.jobs import retention
from kazru.settings import SpeechKitSettings
from services.janitor.expiry import Janitor
from tests.fakes.bus import RecordingBus
from tests.helpers import queued_messages, remains_of, store_finished_job, usage_of_day

NOTHING = {"objects": [], "segments": 0, "words": 0, "speakers": 0}


async def state_of(database, job_id) -> Job:
    async with database() as session:
        return await session.scalar(select(Job).where(Job.id == job_id).execution_options(populate_existing=True))


async def test_owner_deletes_a_finished_job_and_a_tombstone_stays(settings, database, store, bus):
    job = await store_finished_job(database, store, owner="owner-d", billed_seconds=120.0)
    other = await store_finished_job(database, store, owner="owner-d")
    assert (await remains_of(database, store, job.id))["objects"] == [f"jobs/{job.id}/intermediate.pcm", job.object_key]
    day = job.created_at.date()
    usage_before = await usage_of_day(database, day)
    priced = settings.model_copy(update={"usage_cost_per_billed_minute": 0.5})

    deleted = await retention.JobRemoval(database, store, bus, priced, NO_EXTERNAL_COPIES).delete_owned(
        "owner-d", str(job.id)
    )

    assert deleted.state == JobState.DELETED
    assert await remains_of(database, store, job.id) == NOTHING
    assert (await state_of(database, job.id)).state == JobState.DELETED
    assert (await remains_of(database, store, other.id))["segments"] == 1, "another job of the owner is untouched"
    usage = await usage_of_day(database, day)
    assert usage["files"] == usage_before.get("files", 0) + 1
    assert usage["succeeded"] == usage_before.get("succeeded", 0) + 1
    assert usage["engine_billed_seconds"] == pytest.approx(usage_before.get("engine_billed_seconds", 0) + 120.0)
    assert usage["estimated_cost"] == pytest.approx(usage_before.get("estimated_cost", 0) + 1.0)

    with pytest.raises(errors.Gone) as again:  # as every other route on a deleted job answers
        await retention.JobRemoval(database, store, bus, settings, NO_EXTERNAL_COPIES).delete_owned(
            "owner-d", str(job.id)
        )
    assert again.value.code == "JOB_DELETED"
    assert await usage_of_day(database, day) == usage, "a job is counted once"
    from kazru.db import jobs

    with pytest.raises(errors.Gone) as gone:
        jobs.require_transcript(await state_of(database, job.id))
    assert gone.value.code == "JOB_DELETED"


async def test_another_owner_cannot_delete(settings, database, store, bus):
    job = await store_finished_job(database, store, owner="owner-a")
    for owner, job_id in (("owner-b", str(job.id)), ("owner-a", str(uuid.uuid4())), ("owner-a", "not-a-uuid")):
        with pytest.raises(errors.NotFound):
            await retention.JobRemoval(database, store, bus, settings, NO_EXTERNAL_COPIES).delete_owned(owner, job_id)
    assert (await remains_of(database, store, job.id))["segments"] == 1
    assert (await state_of(database, job.id)).state == JobState.SUCCEEDED


@pytest.mark.parametrize("state", ["PENDING", "RUNNING"])
async def test_deleting_an_active_job_cancels_it_and_takes_its_message_off_the_queue(
    settings, database, store, bus, state
):
    """Also a RUNNING job's: if its worker is dead on the last delivery, JetStream would keep the
    message for ever; if it is alive, its ack of a removed message changes nothing."""
    from kazru.jobs import outbox

    job = await store_finished_job(database, store, owner="owner-p", state=state, extra_objects=())
    await outbox.publish_job(JobRepository(database, settings), bus, job)
    assert await queued_messages(bus, settings) == 1
    cancels = []

    async def heard(msg) -> None:
        cancels.append(msg.subject)

    subscription = await bus.nc.subscribe(f"kazru.jobs.cancel.{job.id}", cb=heard)
    day = job.created_at.date()
    cancelled_before = (await usage_of_day(database, day)).get("cancelled", 0)

    await retention.JobRemoval(database, store, bus, settings, NO_EXTERNAL_COPIES).delete_owned("owner-p", str(job.id))

    await bus.nc.flush()
    await subscription.unsubscribe()
    assert len(cancels) == 1, "a worker holding the job is told to stop"
    assert await queued_messages(bus, settings) == 0, "the bus holds nothing of the job"
    assert await remains_of(database, store, job.id) == NOTHING
    tombstone = await state_of(database, job.id)
    assert tombstone.state == JobState.DELETED and tombstone.finished_at is not None
    assert (await usage_of_day(database, day))["cancelled"] == cancelled_before + 1


async def test_janitor_expires_everything_of_a_job_and_counts_it_once(settings, database, store, bus):
    failed = await store_finished_job(database, store, state="FAILED", expires_in_hours=-0.01)
    pending = await store_finished_job(database, store, state="PENDING", expires_in_hours=-0.01, extra_objects=())
    alive = await store_finished_job(database, store, expires_in_hours=1)
    day = failed.created_at.date()
    before = await usage_of_day(database, day)
    janitor = Janitor(settings, database, store, bus, external_copies=NO_EXTERNAL_COPIES)

    await janitor.sweep()
    await janitor.sweep()

    for job in (failed, pending):
        assert await remains_of(database, store, job.id) == NOTHING
        assert (await state_of(database, job.id)).state == JobState.EXPIRED
    assert (await remains_of(database, store, alive.id))["speakers"] == 1
    after = await usage_of_day(database, day)
    assert after["files"] == before.get("files", 0) + 2
    assert after["failed"] == before.get("failed", 0) + 1
    assert after["audio_seconds"] == pytest.approx(before.get("audio_seconds", 0) + 2 * 2.9)


async def test_janitor_aborts_abandoned_multipart_uploads(infra, database, store):
    key = f"jobs/{uuid.uuid4()}/original"
    upload_id = store._client._create_multipart_upload(store.bucket, key, {})  # test-only: a crashed ingest's upload
    assert key in [name for name, _, _ in await store.list_multipart_uploads("jobs/")]

    await Janitor(infra.settings(), database, store, RecordingBus(), external_copies=NO_EXTERNAL_COPIES).sweep()
    assert key in [name for name, _, _ in await store.list_multipart_uploads("jobs/")], "young uploads stay"

    keyless = ObjectStore(infra.settings(), with_keys=False)  # the janitor as deployed: no master keys
    await Janitor(
        infra.settings(abandoned_upload_hours=1e-9),
        database,
        keyless,
        RecordingBus(),
        external_copies=NO_EXTERNAL_COPIES,
    ).sweep()
    assert key not in [name for name, _, _ in await store.list_multipart_uploads("jobs/")]
    assert upload_id


async def test_objects_of_a_tombstone_are_swept(settings, database, store, monkeypatch):
    from datetime import timedelta

    from services.janitor import expiry

    job = await store_finished_job(database, store, expires_in_hours=-0.01)
    janitor = Janitor(settings, database, store, RecordingBus(), external_copies=NO_EXTERNAL_COPIES)
    await janitor.sweep()
    # A worker that had not heard of the expiry writes an object afterwards.
    await store_object(store, f"jobs/{job.id}/late.pcm")
    monkeypatch.setattr(expiry, "ORPHAN_GRACE", timedelta(seconds=-60))
    await janitor.sweep()
    assert await remains_of(database, store, job.id) == NOTHING
    assert datetime.now(UTC) > job.expires_at


async def store_object(store, key):
    from tests.helpers import aiter_of

    await store.put_stream(key, aiter_of([b"x"]))


async def test_janitor_deletes_the_copy_kept_at_speechkit(infra, database, store):
    import time

    from tests.fakes.speechkit_server import FakeSpeechKit, _Operation

    fake = FakeSpeechKit(api_key="AQVN-janitor-key")
    address = await fake.start()
    try:
        fake._operations["e03kept"] = _Operation("e03kept", time.monotonic(), time.monotonic())  # a kept result
        job = await store_finished_job(database, store, expires_in_hours=-0.01, billed_seconds=15.0)
        async with database.begin() as session:
            (await session.get(Job, job.id)).external_operation_id = "e03kept"
        settings = infra.settings(engine="speechkit", speechkit=SpeechKitSettings(
            api_key="AQVN-janitor-key", endpoint=address, operation_endpoint=address, tls=False))  # fmt: skip

        speechkit = for_engine(settings)  # as the janitor's composition root builds it
        await Janitor(settings, database, store, RecordingBus(), external_copies=speechkit).sweep()
        await speechkit.close()

        assert fake.deleted == ["e03kept"] and fake.problems == []
        tombstone = await state_of(database, job.id)
        assert tombstone.state == JobState.EXPIRED and tombstone.external_operation_id is None
    finally:
        await fake.stop()


async def test_a_job_whose_worker_died_on_its_last_delivery_is_failed_with_a_reason(infra, database, store, bus):
    from datetime import timedelta

    from nats.js.errors import NotFoundError
    from sqlalchemy import update

    from kazru.jobs import outbox

    settings = infra.settings(job_ack_wait_seconds=1.0, job_max_deliver=3)
    lost = await store_finished_job(database, store, state="RUNNING")
    retrying = await store_finished_job(database, store, state="RUNNING")
    alive = await store_finished_job(database, store, state="RUNNING")
    for job in (lost, retrying):  # their messages, still in the stream (JetStream stops delivering, never drops)
        await outbox.publish_job(JobRepository(database, settings), bus, job)
    long_ago = datetime.now(UTC) - timedelta(seconds=10)
    async with database.begin() as session:
        await session.execute(update(Job).where(Job.id == lost.id).values(attempts=3, updated_at=long_ago))
        await session.execute(update(Job).where(Job.id == retrying.id).values(attempts=2, updated_at=long_ago))
        await session.execute(update(Job).where(Job.id == alive.id).values(attempts=3))
    finished = []

    async def heard(msg) -> None:
        finished.append(msg.subject)

    subscription = await bus.nc.subscribe(f"kazru.jobs.finished.{lost.id}", cb=heard)

    await Janitor(settings, database, store, bus, external_copies=NO_EXTERNAL_COPIES).sweep()

    await bus.nc.flush()
    await subscription.unsubscribe()
    failed = await state_of(database, lost.id)
    assert (failed.state, failed.error_code) == (JobState.FAILED, "WORKER_LOST") and failed.finished_at
    assert "3 attempts" in failed.error_message and failed.usage_counted
    assert finished == [f"kazru.jobs.finished.{lost.id}"]
    with pytest.raises(NotFoundError):  # nothing of the failed job stays on the bus
        await bus.js.get_msg(settings.jobs_stream, lost.queue_sequence)
    assert (await bus.js.get_msg(settings.jobs_stream, retrying.queue_sequence)).data, "its redelivery is still due"
    # JetStream still redelivers the one with attempts left; the other's worker is alive.
    assert (await state_of(database, retrying.id)).state == JobState.RUNNING
    assert (await state_of(database, alive.id)).state == JobState.RUNNING
    await bus.remove_queued(retrying.queue_sequence)  # the stream is shared with the other tests


async def test_a_delivery_lost_before_its_claim_still_counts_towards_the_last(infra, database, store, bus):
    """Delivery 2 of 3 died before the worker's claim committed: the claim of delivery 3 must
    still count 3 attempts, or the janitor never sees that its worker died on the last one."""
    from datetime import timedelta

    from sqlalchemy import update

    settings = infra.settings(job_ack_wait_seconds=1.0, job_max_deliver=3)
    job = await store_finished_job(database, store, state="PENDING")
    async with database.begin() as session:  # as ingest leaves it
        await session.execute(update(Job).where(Job.id == job.id).values(attempts=0))
    jobs = JobRepository(database, settings)
    assert (await jobs.claim(job.id, 1)).attempts == 1
    assert (await jobs.claim(job.id, 3)).attempts == 3, "the delivery count, not one more than before"
    assert (await jobs.claim(job.id, 1)).attempts == 4, "a republished message counts on from the row"
    async with database.begin() as session:  # the worker of that last delivery dies: its heartbeat stops
        await session.execute(update(Job).where(Job.id == job.id).values(
            attempts=3, updated_at=datetime.now(UTC) - timedelta(seconds=10)))  # fmt: skip

    await Janitor(settings, database, store, bus, external_copies=NO_EXTERNAL_COPIES).sweep()

    failed = await state_of(database, job.id)
    assert (failed.state, failed.error_code) == (JobState.FAILED, "WORKER_LOST")
