"""Ingest: `python -m services.ingest`. Composition root and lifecycle."""

from __future__ import annotations

from kazru.adapters.storage import ObjectStore
from kazru.db.job_repository import JobRepository
from kazru.db.session import create_sessionmaker
from kazru.grpc.server import GrpcServer
from kazru.service_runner import Serving, Startup, run_service
from kazru.settings import Settings
from kazru.v1 import ingest_service_pb2, ingest_service_pb2_grpc
from services.ingest.grpc_api import IngestServicer
from services.ingest.uploads import UploadService


def create_server(settings: Settings, uploads: UploadService) -> GrpcServer:
    return GrpcServer(
        settings.ingest_address,
        lambda server: ingest_service_pb2_grpc.add_IngestServiceServicer_to_server(IngestServicer(uploads), server),
        [ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name],
    )


async def open_ingest(settings: Settings, startup: Startup) -> Serving:
    await startup.metrics(settings)
    engine = await startup.database(settings)
    store = ObjectStore(settings)
    await startup.step("the object store's bucket", store.ensure_bucket)
    bus = await startup.bus(settings, "ingest")
    await startup.step("the jobs stream", bus.ensure_jobs_stream)
    uploads = UploadService(settings, JobRepository(create_sessionmaker(engine), settings), store, bus)
    return Serving(
        {f"the gRPC API on {settings.ingest_address}": lambda: create_server(settings, uploads)},
        listening={"address": settings.ingest_address},
    )


def main() -> None:
    run_service("ingest", open_ingest, streams_large_bodies=True)


if __name__ == "__main__":
    main()
