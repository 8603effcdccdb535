"""Shared fixtures: real PostgreSQL, NATS JetStream and S3 on free ports in a temp dir.

The servers start once per test session, only when a test asks for them (unit
tests need none), and are stopped at the end. Nothing touches the default ports.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.js.api import StorageType, StreamConfig

from kazru.adapters.bus import Bus
from kazru.adapters.storage import ObjectStore
from kazru.db.session import create_engine, create_sessionmaker
from kazru.dev.devstack import Servers, start_servers
from kazru.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures" / "audio"
# JetStream removes an account's storage folder when its last stream is deleted, and a stream created
# right after can find the folder gone ("could not create storage directory": 3 of 400 delete-and-create
# cycles on this server, 0 of 400 with a second stream). The `bus` fixture deletes the jobs stream
# before every test, so this stream, never deleted, keeps the folder.
STORAGE_KEEPER_STREAM = StreamConfig(
    name="KAZRU_TESTS_KEEPER", subjects=["kazru.tests.keeper"], storage=StorageType.FILE
)
# A short espeak clip for the tests that need any decodable speech.
SPEECH_CLIP = FIXTURES / "ru_weather_m3.flac"
# Real recorded Russian (festvox-ru, fixtures/audio/README.md) for the tests that check what the real
# model hears: Whisper base gets it word for word, while what it makes of espeak changes with the
# CPU's int8 kernels.
REAL_SPEECH_CLIP = FIXTURES / "ru_festvox_0695.flac"
REAL_SPEECH_SECONDS = 4.56
REAL_SPEECH_WORDS = ("может", "оказать", "услугу")


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    servers = start_servers(tmp_path_factory.mktemp("servers"), durable=False, s3_secret="test-" + uuid.uuid4().hex)
    yield servers
    servers.stop()


@pytest.fixture
def scratch(tmp_path: Path):
    """A transcriber's scratch space of its own, for workers built in-process."""
    from services.transcriber.scratch import ScratchSpace

    space = ScratchSpace.open(tmp_path / "scratch")
    yield space
    space.close()


@pytest.fixture(scope="session")
def settings(infra: Servers) -> Settings:
    return infra.settings()


@pytest.fixture(scope="session")
def pipeline(settings):
    """The real engine and speaker encoder, loaded once for every test that transcribes in-process."""
    from services.transcriber.pipeline import create_pipeline

    return create_pipeline(settings)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database(settings: Settings):
    engine = create_engine(settings)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def store(settings: Settings) -> ObjectStore:
    store = ObjectStore(settings)
    await store.ensure_bucket()
    return store


@pytest_asyncio.fixture(loop_scope="session")
async def bus(settings: Settings):
    """A connected bus with an empty jobs stream (each test starts with no queued jobs)."""
    bus = await Bus.connect(settings, "tests")
    await bus.js.add_stream(STORAGE_KEEPER_STREAM)  # the same again is no change
    try:
        await bus.js.delete_stream(settings.jobs_stream)
    except Exception:  # noqa: BLE001 - not there yet
        pass
    await bus.ensure_jobs_stream()
    yield bus
    await bus.close()
