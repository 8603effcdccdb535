"""Gateway: `python -m services.gateway`. HTTP (API, page) and the public gRPC API in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import uvicorn

from kazru.adapters.bus import Bus
from kazru.adapters.engine_copies import for_engine
from kazru.adapters.storage import ObjectStore
from kazru.db.session import create_engine, create_sessionmaker
from kazru.grpc import server as grpc_server
from kazru.grpc.server import GrpcServer, wait_for_stop_signal
from kazru.observability.logs import prepare_process
from kazru.settings import Settings
from kazru.v1 import job_service_pb2, job_service_pb2_grpc
from services.gateway.auth import Authenticator
from services.gateway.core import Gateway, create_gateway
from services.gateway.grpc_api import JobServicer
from services.gateway.grpc_auth import AuthInterceptor
from services.gateway.http_api import create_app
from services.gateway.operations import create_operations_app

log = logging.getLogger("services.gateway")


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway stops it in order."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def create_grpc_server(settings: Settings, gateway: Gateway, auth: Authenticator) -> GrpcServer:
    job_service = job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
    return GrpcServer(
        settings.public_grpc_address,
        lambda server: job_service_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(gateway), server),
        [job_service],
        reflection_enabled=True,
        interceptors=[AuthInterceptor(auth, [job_service])],
    )


async def main() -> None:
    settings = Settings()
    prepare_process("gateway", settings.log_level, streams_large_bodies=True)
    database = create_engine(settings)
    sessions = create_sessionmaker(database)
    bus = await Bus.connect(settings, "gateway")
    channels = {
        "ingest": grpc_server.channel(settings.ingest_address),
        "exporter": grpc_server.channel(settings.exporter_address),
        "transcriber": grpc_server.channel(settings.transcriber_address),
        "janitor": grpc_server.channel(settings.janitor_address),
    }
    external_copies = for_engine(settings)  # what the owner's DELETE asks to forget a SpeechKit copy
    gateway = create_gateway(settings, sessions, bus, ObjectStore(settings), channels, external_copies)
    auth = Authenticator(settings, sessions)
    await auth.register_bootstrap_key()

    grpc_public = create_grpc_server(settings, gateway, auth)
    await grpc_public.start()
    http = _HttpServer(
        uvicorn.Config(
            create_app(settings, gateway, auth),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )
    )
    servers = [http]
    if settings.metrics_port:  # metrics and the queue in detail, on a port of their own (services.gateway.operations)
        servers.append(_HttpServer(uvicorn.Config(
            create_operations_app(gateway), host=settings.metrics_host, port=settings.metrics_port, log_config=None,
            access_log=False, timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )))  # fmt: skip
    serving = [asyncio.create_task(server.serve()) for server in servers]
    log.info("gateway listening", extra={"http": f"{settings.http_host}:{settings.http_port}",
                                         "grpc": settings.public_grpc_address,
                                         "metrics": f"{settings.metrics_host}:{settings.metrics_port}"
                                         if settings.metrics_port else "off"})  # fmt: skip
    await wait_for_stop_signal()
    await grpc_public.set_serving(False)
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*serving)
    await grpc_public.stop(settings.shutdown_grace_seconds)
    for chan in channels.values():
        await chan.close()
    await external_copies.close()
    await bus.close()
    await database.dispose()


if __name__ == "__main__":
    asyncio.run(main())
