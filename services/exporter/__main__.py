"""Exporter: `python -m services.exporter`. Stateless renderer over PostgreSQL."""

from __future__ import annotations

import asyncio
import logging

from kazru.db.session import create_engine, create_sessionmaker
from kazru.grpc.server import GrpcServer, wait_for_stop_signal
from kazru.observability.logs import prepare_process
from kazru.observability.metrics import start_metrics_server
from kazru.settings import Settings
from kazru.v1 import exporter_service_pb2, exporter_service_pb2_grpc
from services.exporter.grpc_api import ExporterServicer

log = logging.getLogger("services.exporter")


def create_server(settings: Settings, servicer: ExporterServicer) -> GrpcServer:
    return GrpcServer(
        settings.exporter_address,
        lambda server: exporter_service_pb2_grpc.add_ExporterServiceServicer_to_server(servicer, server),
        [exporter_service_pb2.DESCRIPTOR.services_by_name["ExporterService"].full_name],
    )


async def main() -> None:
    settings = Settings()
    prepare_process("exporter", settings.log_level)
    start_metrics_server(settings)  # a daemon thread: it ends with the process
    engine = create_engine(settings)
    server = create_server(settings, ExporterServicer(create_sessionmaker(engine)))
    await server.start()
    log.info("exporter listening", extra={"address": settings.exporter_address})
    await wait_for_stop_signal()
    await server.stop(settings.shutdown_grace_seconds)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
