"""Transcriber: `python -m services.transcriber`. Loads the model once, then consumes jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kazru.adapters.bus import Bus
from kazru.adapters.storage import ObjectStore
from kazru.db.job_repository import JobRepository
from kazru.db.session import create_engine, create_sessionmaker
from kazru.grpc.server import GrpcServer, wait_for_stop_signal
from kazru.observability.logs import prepare_process
from kazru.observability.metrics import start_metrics_server
from kazru.settings import Settings
from services.transcriber.pipeline import create_pipeline
from services.transcriber.worker import TranscriptionWorker

log = logging.getLogger("services.transcriber")


async def main() -> None:
    settings = Settings()
    prepare_process("transcriber", settings.log_level)
    start_metrics_server(settings)  # a daemon thread: it ends with the process
    # The engine is chosen by KAZRU_ENGINE; models load before the health check says SERVING.
    pipeline = await asyncio.to_thread(create_pipeline, settings)
    database = create_engine(settings)
    bus = await Bus.connect(settings, "transcriber")
    jobs = JobRepository(create_sessionmaker(database), settings)
    worker = TranscriptionWorker(settings, jobs, ObjectStore(settings), bus, pipeline)
    health = GrpcServer(settings.transcriber_address, lambda server: None, ["kazru.v1.Transcriber"])
    await health.start()

    stop = asyncio.Event()
    consuming = asyncio.create_task(worker.run(stop))
    signal_wait = asyncio.create_task(wait_for_stop_signal())
    await asyncio.wait({consuming, signal_wait}, return_when=asyncio.FIRST_COMPLETED)
    if consuming.done():
        consuming.result()  # the consumer died: surface why
    stop.set()
    await health.set_serving(False)
    # Let a running job finish within the grace period; otherwise it is handed back to the queue.
    try:
        await asyncio.wait_for(asyncio.shield(consuming), settings.shutdown_grace_seconds)
    except TimeoutError:
        consuming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consuming
    await health.stop(0)
    await bus.close()
    await database.dispose()


if __name__ == "__main__":
    asyncio.run(main())
