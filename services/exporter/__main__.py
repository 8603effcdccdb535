"""Exporter: `python -m services.exporter`. Stateless renderer over PostgreSQL."""

from __future__ import annotations

from kazru.db.session import create_sessionmaker
from kazru.grpc.server import GrpcServer
from kazru.service_runner import Serving, Startup, run_service
from kazru.settings import Settings
from kazru.v1 import exporter_service_pb2, exporter_service_pb2_grpc
from services.exporter.grpc_api import ExporterServicer


def create_server(settings: Settings, servicer: ExporterServicer) -> GrpcServer:
    return GrpcServer(
        settings.exporter_address,
        lambda server: exporter_service_pb2_grpc.add_ExporterServiceServicer_to_server(servicer, server),
        [exporter_service_pb2.DESCRIPTOR.services_by_name["ExporterService"].full_name],
    )


async def open_exporter(settings: Settings, startup: Startup) -> Serving:
    await startup.metrics(settings)
    engine = await startup.database(settings)
    servicer = ExporterServicer(create_sessionmaker(engine))
    return Serving(
        {f"the gRPC API on {settings.exporter_address}": lambda: create_server(settings, servicer)},
        listening={"address": settings.exporter_address},
    )


def main() -> None:
    run_service("exporter", open_exporter)


if __name__ == "__main__":
    main()
