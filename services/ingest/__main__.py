"""Ingest: `python -m services.ingest`. Composition root and lifecycle."""

from __future__ import annotations

import asyncio
import logging

from kazru.adapters.bus import Bus
from kazru.adapters.storage import ObjectStore
from kazru.db.job_repository import JobRepository
from kazru.db.session import create_engine, create_sessionmaker
from kazru.grpc.server import GrpcServer, wait_for_stop_signal
from kazru.observability.logs import prepare_process
from kazru.observability.metrics import start_metrics_server
from kazru.settings import Settings
from kazru.v1 import ingest_service_pb2, ingest_service_pb2_grpc
from services.ingest.grpc_api import IngestServicer
from services.ingest.uploads import UploadService

log = logging.getLogger("services.ingest")


def create_server(settings: Settings, uploads: UploadService) -> GrpcServer:
    return GrpcServer(
        settings.ingest_address,
        lambda server: ingest_service_pb2_grpc.add_IngestServiceServicer_to_server(IngestServicer(uploads), server),
        [ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name],
    )


async def main() -> None:
    settings = Settings()
    prepare_process("ingest", settings.log_level, streams_large_bodies=True)
    start_metrics_server(settings)  # a daemon thread: it ends with the process
    engine = create_engine(settings)
    store = ObjectStore(settings)
    await store.ensure_bucket()
    bus = await Bus.connect(settings, "ingest")
    await bus.ensure_jobs_stream()
    server = create_server(
        settings, UploadService(settings, JobRepository(create_sessionmaker(engine), settings), store, bus)
    )
    await server.start()
    log.info("ingest listening", extra={"address": settings.ingest_address})
    await wait_for_stop_signal()
    await server.stop(settings.shutdown_grace_seconds)
    await bus.close()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
