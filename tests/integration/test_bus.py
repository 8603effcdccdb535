"""The jobs stream on a real JetStream server: its configuration, and a clear refusal at start-up."""

from __future__ import annotations

import uuid

import pytest
from nats.js.errors import NotFoundError

from kazru.adapters.bus import Bus
from kazru.v1 import events_pb2


async def test_jobs_stream_is_created_with_the_configured_replicas_and_kept_on_restart(bus, settings):
    # The `bus` fixture has just created the stream, as a starting service does.
    config = (await bus.js.stream_info(settings.jobs_stream)).config
    assert config.num_replicas == 1 and config.duplicate_window == 120.0
    # A second service starting (or a restart) finds the stream and leaves it as it is.
    await bus.ensure_jobs_stream()
    assert (await bus.js.stream_info(settings.jobs_stream)).config.num_replicas == 1


async def test_more_replicas_than_servers_fails_at_start_naming_the_setting(bus, settings):
    # The test server is a single JetStream server: it can hold one copy only.
    await bus.js.delete_stream(settings.jobs_stream)
    three = await Bus.connect(settings.model_copy(update={"jobs_stream_replicas": 3}), "stream-test")
    try:
        with pytest.raises(RuntimeError, match="KAZRU_JOBS_STREAM_REPLICAS") as refused:
            await three.ensure_jobs_stream()
        assert "3 replicas" in str(refused.value) and "non-clustered" in str(refused.value)
        with pytest.raises(NotFoundError):  # nothing half-made left behind
            await bus.js.stream_info(settings.jobs_stream)
    finally:
        await three.close()
        await bus.ensure_jobs_stream()  # as the other tests expect it


async def test_removing_a_message_the_stream_no_longer_holds_is_not_an_error(bus, settings):
    """A PENDING job whose message is gone (taken, or lost with the stream) must still be deletable:
    the owner's DELETE and the janitor's expiry both take it off the queue first."""
    sequence = await bus.publish_uploaded(events_pb2.JobUploaded(job_id=str(uuid.uuid4()), owner_id="o"))
    assert await bus.remove_queued(sequence) is True
    assert await bus.remove_queued(sequence) is False  # already removed
    await bus.js.purge_stream(settings.jobs_stream)
    assert await bus.remove_queued(sequence + 1) is False  # never held
