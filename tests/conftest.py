"""Shared fixtures: real PostgreSQL, NATS JetStream and S3 on free ports in a temp dir.

The servers start once per test session, only when a test asks for them (unit
tests need none), and are stopped at the end. Nothing touches the default ports.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from kazru.bus import Bus
from kazru.db.migrate import upgrade
from kazru.db.session import create_engine, create_sessionmaker
from kazru.devservers import NatsServer, PostgresServer, S3Server, free_port
from kazru.settings import REPO_ROOT, Settings
from kazru.storage import ObjectStore

FIXTURES = Path(__file__).parent / "fixtures" / "audio"
# The e2e and transcriber tests expect these words from Whisper base on this clip.
SPEECH_CLIP = FIXTURES / "ru_weather_m3.flac"
SPEECH_WORDS = ("погода", "сегодня", "очень")


@dataclass
class Infrastructure:
    postgres: PostgresServer
    nats: NatsServer
    s3: S3Server
    root: Path

    def settings(self, **overrides) -> Settings:
        base = dict(
            database_url=self.postgres.url,
            nats_url=self.nats.url,
            s3_endpoint=self.s3.endpoint,
            s3_access_key=self.s3.access_key,
            s3_secret_key=self.s3.secret_key,
            # The model installed by `make model`, shared with local runs.
            data_dir=REPO_ROOT / ".kazru",
        )
        return Settings(**{**base, **overrides})

    @staticmethod
    def env(settings: Settings) -> dict[str, str]:
        """Environment for service subprocesses: exactly `settings`, nothing inherited."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("KAZRU_")}
        return {**inherited, **settings.as_environment()}


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infrastructure]:
    root = tmp_path_factory.mktemp("servers")
    postgres = PostgresServer(root / "postgres", free_port())
    nats = NatsServer(root / "nats", free_port())
    s3 = S3Server(root / "s3", free_port(), access_key="test-key", secret_key="test-secret-" + uuid.uuid4().hex)
    started = []
    try:
        postgres.start(fsync=False)
        started.append(postgres)
        nats.start()
        started.append(nats)
        s3.start()
        started.append(s3)
        upgrade(postgres.url)
        yield Infrastructure(postgres, nats, s3, root)
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="session")
def settings(infra: Infrastructure) -> Settings:
    return infra.settings()


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
    try:
        await bus.js.delete_stream(settings.jobs_stream)
    except Exception:  # noqa: BLE001 - not there yet
        pass
    await bus.ensure_jobs_stream()
    yield bus
    await bus.close()
