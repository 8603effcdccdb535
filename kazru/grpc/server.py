"""gRPC server plumbing shared by every service: health, reflection, metrics and tracing, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kazru.grpc.interceptors import RefuseUndecodableRequests, ServerTelemetry, client_interceptors

log = logging.getLogger(__name__)

# Large enough for upload/export chunks with headroom; chunks are 256 KiB.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# A fixed 1 MiB flow-control window per stream instead of gRPC's bandwidth-delay probing,
# which grows the window while a receiver is briefly slow: an upload's bytes then pile up
# in ingest (measured: ingest's peak during a 500 MiB upload rose from 134 MiB to 156-163 MiB
# with the CPUs busy; with the fixed window it stays at 127-130 MiB, at the same speed).
FLOW_CONTROL_WINDOW_BYTES = 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", FLOW_CONTROL_WINDOW_BYTES),
]


class GrpcServer:
    """A grpc.aio server with the health service; `port` is the bound port (0 in tests picks one)."""

    def __init__(
        self,
        address: str,
        register: Callable[[grpc.aio.Server], None],
        service_names: Iterable[str],
        reflection_enabled: bool = False,
        interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
    ):
        # Telemetry first: it also counts and times the calls the others refuse.
        self.server = grpc.aio.server(
            options=CHANNEL_OPTIONS, interceptors=[ServerTelemetry(), RefuseUndecodableRequests(), *interceptors]
        )
        register(self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names = list(service_names)
        if reflection_enabled:
            reflection.enable_server_reflection(
                [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
            )
        self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"could not bind gRPC address {address}")

    async def start(self) -> None:
        await self.server.start()
        await self.set_serving(True)

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        await self.set_serving(False)
        await self.server.stop(grace)


def channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=client_interceptors())


async def check_health(chan: grpc.aio.Channel, timeout: float = 2.0) -> bool:
    stub = health_pb2_grpc.HealthStub(chan)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    return response.status == health_pb2.HealthCheckResponse.SERVING


async def wait_for_stop_signal() -> None:
    """Return on the first SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stop signal received; shutting down")
