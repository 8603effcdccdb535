"""Janitor: `python -m services.janitor`. Sweeps every KAZRU_JANITOR_INTERVAL_SECONDS."""

from __future__ import annotations

import asyncio
import logging

from kazru.adapters.bus import Bus
from kazru.adapters.engine_copies import for_engine
from kazru.adapters.storage import ObjectStore
from kazru.db.session import create_engine, create_sessionmaker
from kazru.grpc.server import GrpcServer, wait_for_stop_signal
from kazru.observability.logs import prepare_process
from kazru.observability.metrics import start_metrics_server
from kazru.settings import Settings
from services.janitor.expiry import Janitor

log = logging.getLogger("services.janitor")


async def sweep_forever(janitor: Janitor, interval: float) -> None:
    while True:
        try:
            await janitor.sweep()
        except Exception:
            log.exception("sweep failed; will try again")
        await asyncio.sleep(interval)


async def main() -> None:
    settings = Settings()
    prepare_process("janitor", settings.log_level)
    start_metrics_server(settings)  # a daemon thread: it ends with the process
    engine = create_engine(settings)
    # It only lists and deletes objects: it is not given the master keys that open them.
    store = ObjectStore(settings, with_keys=False)
    await store.ensure_bucket()
    # The bus: republishing jobs whose enqueue was never confirmed, and telling workers to stop.
    bus = await Bus.connect(settings, "janitor")
    await bus.ensure_jobs_stream()
    external_copies = for_engine(settings)  # expiry deletes a SpeechKit copy too
    janitor = Janitor(settings, create_sessionmaker(engine), store, bus, external_copies=external_copies)
    health = GrpcServer(settings.janitor_address, lambda server: None, ["kazru.v1.Janitor"])
    await health.start()
    sweeping = asyncio.create_task(sweep_forever(janitor, settings.janitor_interval_seconds))
    await wait_for_stop_signal()
    sweeping.cancel()
    await health.stop(0)
    await external_copies.close()
    await bus.close()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
