"""Gateway: `python -m services.gateway`. HTTP (API, page) and the public gRPC API in one process."""

from __future__ import annotations

import asyncio
import contextlib
import functools

import uvicorn

from kazru.adapters.storage import ObjectStore
from kazru.db.session import create_sessionmaker
from kazru.grpc import server as grpc_server
from kazru.grpc.server import GrpcServer
from kazru.service_runner import Serving, Startup, run_service
from kazru.settings import Settings
from kazru.v1 import job_service_pb2, job_service_pb2_grpc
from services.gateway.auth import Authenticator
from services.gateway.core import Gateway, create_gateway
from services.gateway.grpc_api import JobServicer
from services.gateway.grpc_auth import AuthInterceptor
from services.gateway.http_api import create_app
from services.gateway.operations import create_operations_app


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling (the runner stops it in order), saying when it listens."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        self.listening.set()


class HttpServer:
    """A uvicorn server as the service runner serves it: `stop` lets requests in flight finish within the
    config's `timeout_graceful_shutdown`."""

    def __init__(self, config: uvicorn.Config):
        self._address = f"{config.host}:{config.port}"
        self._server = _Uvicorn(config)
        self._serving: asyncio.Task | None = None

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except SystemExit:  # uvicorn's way of failing to start (it has logged why): not the whole process's
            raise RuntimeError(
                f"uvicorn could not serve HTTP on {self._address} (its line just before says why)"
            ) from None

    async def start(self) -> None:
        self._serving = asyncio.create_task(self._serve())
        listening = asyncio.create_task(self._server.listening.wait())
        await asyncio.wait({self._serving, listening}, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if self._serving.done():
            self._serving.result()  # why it stopped
            raise RuntimeError(f"HTTP on {self._address} stopped while starting")

    async def set_serving(self, serving: bool) -> None:
        """The HTTP health (/api/v1/health) says what the gateway can reach, not whether it is stopping."""

    async def stop(self, grace: float) -> None:
        if self._serving is not None and not self._serving.done():  # a failed start has said why already
            self._server.should_exit = True
            await self._serving


def create_grpc_server(settings: Settings, gateway: Gateway, auth: Authenticator) -> GrpcServer:
    job_service = job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
    return GrpcServer(
        settings.public_grpc_address,
        lambda server: job_service_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(gateway), server),
        [job_service],
        reflection_enabled=True,
        interceptors=[AuthInterceptor(auth, [job_service])],
    )


async def open_gateway(settings: Settings, startup: Startup) -> Serving:
    database = await startup.database(settings)
    sessions = create_sessionmaker(database)
    bus = await startup.bus(settings, "gateway")
    channels = {}
    for name, address in {
        "ingest": settings.ingest_address,
        "exporter": settings.exporter_address,
        "transcriber": settings.transcriber_address,
        "janitor": settings.janitor_address,
    }.items():
        channels[name] = await startup.open(f"the channel to {name}", functools.partial(grpc_server.channel, address),
                                            lambda chan: chan.close())  # fmt: skip
    # What the owner's DELETE asks to forget a SpeechKit copy.
    external_copies = await startup.external_copies(settings)
    store = await startup.step("the object store's settings", lambda: ObjectStore(settings))
    gateway = create_gateway(settings, sessions, bus, store, channels, external_copies)
    auth = Authenticator(settings, sessions)
    await startup.step("registering the bootstrap API key", auth.register_bootstrap_key)

    def http_server(app, host: str, port: int) -> HttpServer:
        return HttpServer(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                         timeout_graceful_shutdown=settings.shutdown_grace_seconds))  # fmt: skip

    servers = {
        f"the public gRPC API on {settings.public_grpc_address}": lambda: create_grpc_server(settings, gateway, auth),
        f"HTTP on {settings.http_host}:{settings.http_port}": lambda: http_server(
            create_app(settings, gateway, auth), settings.http_host, settings.http_port
        ),
    }
    if settings.metrics_port:  # metrics and the queue in detail, on a port of their own (services.gateway.operations)
        servers[f"the operations HTTP on {settings.metrics_host}:{settings.metrics_port}"] = lambda: http_server(
            create_operations_app(gateway), settings.metrics_host, settings.metrics_port
        )
    return Serving(servers, listening={"http": f"{settings.http_host}:{settings.http_port}",
                                       "grpc": settings.public_grpc_address,
                                       "metrics": f"{settings.metrics_host}:{settings.metrics_port}"
                                       if settings.metrics_port else "off"})  # fmt: skip


def main() -> None:
    run_service("gateway", open_gateway, streams_large_bodies=True)


if __name__ == "__main__":
    main()
