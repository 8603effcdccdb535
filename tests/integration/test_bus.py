"""The jobs stream on a real JetStream server: its configuration, and a clear refusal at start-up."""

from __future__ import annotations

import uuid

import pytest

from kazru.bus import Bus


async def test_jobs_stream_is_created_with_the_configured_replicas_and_kept_on_restart(settings):
    ours = settings.model_copy(update={"jobs_stream": f"TEST_{uuid.uuid4().hex[:8].upper()}"})
    bus = await Bus.connect(ours, "stream-test")
    try:
        await bus.ensure_jobs_stream()
        config = (await bus.js.stream_info(ours.jobs_stream)).config
        assert config.num_replicas == 1
        assert config.duplicate_window == 120.0
        # A second service starting (or a restart) finds the stream and leaves it as it is.
        await bus.ensure_jobs_stream()
        assert (await bus.js.stream_info(ours.jobs_stream)).config.num_replicas == 1
    finally:
        await bus.js.delete_stream(ours.jobs_stream)
        await bus.close()


async def test_more_replicas_than_servers_fails_at_start_naming_the_setting(settings):
    # The test server is a single JetStream server: it can hold one copy only.
    ours = settings.model_copy(
        update={"jobs_stream": f"TEST_{uuid.uuid4().hex[:8].upper()}", "jobs_stream_replicas": 3}
    )
    bus = await Bus.connect(ours, "stream-test")
    try:
        with pytest.raises(RuntimeError, match="KAZRU_JOBS_STREAM_REPLICAS") as refused:
            await bus.ensure_jobs_stream()
        assert "3 replica" in str(refused.value), str(refused.value)
        names = [info.config.name for info in await bus.js.streams_info()]
        assert ours.jobs_stream not in names  # nothing half-made left behind
    finally:
        await bus.close()
