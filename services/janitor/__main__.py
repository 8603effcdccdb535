"""Janitor: `python -m services.janitor`. Sweeps every KAZRU_JANITOR_INTERVAL_SECONDS."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kazru.adapters.storage import ObjectStore
from kazru.db.session import create_sessionmaker
from kazru.grpc.server import GrpcServer
from kazru.service_runner import Serving, Startup, run_service
from kazru.settings import Settings
from services.janitor.expiry import Janitor

log = logging.getLogger("services.janitor")


async def sweep_until(stop: asyncio.Event, janitor: Janitor, interval: float) -> None:
    """A sweep every `interval` seconds until `stop`; a sweep under way when it is set is finished."""
    while not stop.is_set():
        try:
            await janitor.sweep()
        except Exception:
            log.exception("sweep failed; will try again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def open_janitor(settings: Settings, startup: Startup) -> Serving:
    await startup.metrics(settings)
    engine = await startup.database(settings)
    # It only lists and deletes objects: it is not given the master keys that open them.
    store = ObjectStore(settings, with_keys=False)
    await startup.step("the object store's bucket", store.ensure_bucket)
    # The bus: republishing jobs whose enqueue was never confirmed, and telling workers to stop.
    bus = await startup.bus(settings, "janitor")
    await startup.step("the jobs stream", bus.ensure_jobs_stream)
    # Expiry deletes a SpeechKit copy too.
    external_copies = await startup.external_copies(settings)
    janitor = Janitor(settings, create_sessionmaker(engine), store, bus, external_copies=external_copies)
    return Serving(
        {f"the health check on {settings.janitor_address}": lambda: GrpcServer(
            settings.janitor_address, lambda server: None, ["kazru.v1.Janitor"]
        )},
        background={"the sweep": lambda stop: sweep_until(stop, janitor, settings.janitor_interval_seconds)},
    )  # fmt: skip


def main() -> None:
    run_service("janitor", open_janitor)


if __name__ == "__main__":
    main()
