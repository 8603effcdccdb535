"""Transcriber: `python -m services.transcriber`. Loads the model once, then consumes jobs."""

from __future__ import annotations

import asyncio

from kazru.adapters.storage import ObjectStore
from kazru.db.job_repository import JobRepository
from kazru.db.session import create_sessionmaker
from kazru.grpc.server import GrpcServer
from kazru.service_runner import Serving, Startup, run_service
from kazru.settings import Settings
from services.transcriber.pipeline import create_pipeline
from services.transcriber.scratch import ScratchSpace
from services.transcriber.worker import TranscriptionWorker


async def open_transcriber(settings: Settings, startup: Startup) -> Serving:
    await startup.metrics(settings)
    # The engine is chosen by KAZRU_ENGINE; models load before the health check says SERVING.
    pipeline = await startup.step("the speech models", lambda: asyncio.to_thread(create_pipeline, settings))
    database = await startup.database(settings)
    bus = await startup.bus(settings, "transcriber")
    jobs = JobRepository(create_sessionmaker(database), settings)
    store = await startup.step("the object store's settings", lambda: ObjectStore(settings))
    # Removes what dead transcribers left there (a killed worker's decoded audio) before any job starts.
    scratch = await startup.open(
        f"the scratch space in {settings.scratch_dir}",
        lambda: asyncio.to_thread(ScratchSpace.open, settings.scratch_dir),
        lambda space: asyncio.to_thread(space.close),
    )
    worker = TranscriptionWorker(settings, jobs, store, bus, pipeline, scratch)
    return Serving(
        {f"the health check on {settings.transcriber_address}": lambda: GrpcServer(
            settings.transcriber_address, lambda server: None, ["kazru.v1.Transcriber"]
        )},
        # Asked to stop, it lets a running job finish within the grace period; otherwise the job is
        # cancelled and handed back to the queue.
        background={"the jobs consumer": worker.run},
    )  # fmt: skip


def main() -> None:
    run_service("transcriber", open_transcriber)


if __name__ == "__main__":
    main()
