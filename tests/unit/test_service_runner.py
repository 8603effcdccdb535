"""The service runner (kazru/service_runner.py) with recording fakes: what it opens, starts, stops and
closes, in which order, on a stop signal, a start-up failure and background work that dies."""

from __future__ import annotations

import asyncio
import logging

from grpc_health.v1 import health_pb2

from kazru.grpc.server import GrpcServer, channel, check_health
from kazru.service_runner import Serving, Startup, serve
from kazru.settings import Settings

SETTINGS = Settings(shutdown_grace_seconds=0.5)


class FakeServer:
    def __init__(self, name: str, events: list[str], fail_start: bool = False):
        self.name, self.events, self.fail_start = name, events, fail_start

    async def start(self) -> None:
        self.events.append(f"start {self.name}")
        if self.fail_start:
            raise OSError("address already in use")

    async def set_serving(self, serving: bool) -> None:
        self.events.append(f"{self.name} {'SERVING' if serving else 'NOT_SERVING'}")

    async def stop(self, grace: float) -> None:
        self.events.append(f"stop {self.name} within {grace:g} s")


def declaration(events: list[str], fail_at: str | None = None, servers=("grpc", "http"), background=None):
    """Opens `a` (closed by a plain function) and `b` (closed by a coroutine), checks `c`, opens `d`; the
    step named `fail_at` raises instead."""

    def act(name: str):
        if name == fail_at:
            raise RuntimeError(f"{name} is down")
        events.append(f"open {name}")
        return name

    async def open_service(settings: Settings, startup: Startup) -> Serving:
        await startup.open("a", lambda: act("a"), lambda name: events.append(f"close {name}"))

        async def close_b(name: str) -> None:
            events.append(f"close {name}")

        await startup.open("b", lambda: asyncio.sleep(0, act("b")), close_b)
        await startup.step("c", lambda: act("c"))
        await startup.open("d", lambda: act("d"), lambda name: events.append(f"close {name}"))
        return Serving(
            {name: (lambda name=name: FakeServer(name, events, fail_start=name == fail_at)) for name in servers},
            background=background or {},
        )

    return open_service


def work_until_stopped(events: list[str], running: asyncio.Event):
    async def work(stop: asyncio.Event) -> None:
        events.append("work running")
        running.set()
        await stop.wait()
        events.append("work finished its job")

    return work


async def test_opens_in_order_then_on_the_signal_not_serving_drain_stop_and_close_in_reverse():
    events: list[str] = []
    running = asyncio.Event()

    async def stop_signal() -> None:
        await running.wait()
        events.append("SIGTERM")

    open_service = declaration(events, background={"the consumer": work_until_stopped(events, running)})
    code = await serve("svc", SETTINGS, open_service, stop_signal=stop_signal)

    assert code == 0
    assert events == [
        "open a", "open b", "open c", "open d",
        "start grpc", "start http", "work running",
        "SIGTERM",
        "grpc NOT_SERVING", "http NOT_SERVING",  # health first...
        "work finished its job",  # ...then the drain...
        "stop http within 0.5 s", "stop grpc within 0.5 s",  # ...then the servers, with the grace...
        "close d", "close b", "close a",  # ...then what was opened, last first
    ]  # fmt: skip


async def test_a_step_that_fails_closes_only_what_was_opened_before_it_and_exits_1(caplog):
    events: list[str] = []
    with caplog.at_level(logging.ERROR, logger="kazru.service_runner"):
        code = await serve("svc", SETTINGS, declaration(events, fail_at="c"), stop_signal=asyncio.Event().wait)

    assert code == 1
    assert events == ["open a", "open b", "close b", "close a"]  # d never opened, no server made
    [record] = caplog.records
    assert record.getMessage() == "svc could not start: c failed: RuntimeError: c is down"
    assert record.step == "c"
    assert "\n" not in record.getMessage()


async def test_a_server_that_cannot_start_is_stopped_with_those_before_it():
    events: list[str] = []
    code = await serve("svc", SETTINGS, declaration(events, fail_at="http"), stop_signal=asyncio.Event().wait)

    assert code == 1
    assert events == [
        "open a", "open b", "open c", "open d", "start grpc", "start http",
        "stop http within 0.5 s", "stop grpc within 0.5 s", "close d", "close b", "close a",
    ]  # fmt: skip


async def test_a_failure_between_steps_names_the_step_it_came_after(caplog):
    async def open_service(settings: Settings, startup: Startup) -> Serving:
        await startup.step("the bucket", lambda: None)
        raise ValueError("bad wiring")

    with caplog.at_level(logging.ERROR, logger="kazru.service_runner"):
        assert await serve("svc", SETTINGS, open_service, stop_signal=asyncio.Event().wait) == 1
    assert (
        caplog.records[-1].getMessage()
        == "svc could not start: the start-up after the bucket failed: ValueError: bad wiring"
    )


async def test_background_work_that_dies_stops_the_service_in_order_with_exit_1(caplog):
    events: list[str] = []

    async def consumer(stop: asyncio.Event) -> None:
        events.append("work running")
        await asyncio.sleep(0)
        raise ConnectionError("stream gone")

    with caplog.at_level(logging.ERROR, logger="kazru.service_runner"):
        code = await serve(
            "svc",
            SETTINGS,
            declaration(events, background={"the consumer": consumer}),
            stop_signal=asyncio.Event().wait,
        )

    assert code == 1
    assert events[events.index("work running") + 1 :] == [
        "grpc NOT_SERVING", "http NOT_SERVING", "stop http within 0.5 s", "stop grpc within 0.5 s",
        "close d", "close b", "close a",
    ]  # fmt: skip
    [record] = caplog.records
    assert record.getMessage() == "svc is stopping: the consumer failed: ConnectionError: stream gone"


async def test_work_still_running_after_the_grace_is_cancelled_before_the_servers_stop(caplog):
    events: list[str] = []
    running = asyncio.Event()

    async def slow_job(stop: asyncio.Event) -> None:
        running.set()
        try:
            await asyncio.sleep(60)  # deaf to `stop`
        except asyncio.CancelledError:
            events.append("job cancelled: handed back")
            raise

    started = asyncio.get_running_loop().time()
    with caplog.at_level(logging.WARNING, logger="kazru.service_runner"):
        code = await serve(
            "svc", SETTINGS, declaration(events, servers=("grpc",), background={"the job": slow_job}),
            stop_signal=running.wait,
        )  # fmt: skip

    assert code == 0
    assert 0.5 <= asyncio.get_running_loop().time() - started < 5
    assert events[events.index("start grpc") + 1 :] == [
        "grpc NOT_SERVING", "job cancelled: handed back", "stop grpc within 0.5 s", "close d", "close b", "close a"
    ]  # fmt: skip
    assert "the job did not finish within 0.5 s; cancelling it" in caplog.messages


async def test_a_close_that_fails_is_logged_the_others_still_run_and_the_exit_is_1(caplog):
    events: list[str] = []

    async def open_service(settings: Settings, startup: Startup) -> Serving:
        await startup.open("a", lambda: "a", lambda name: events.append("close a"))
        await startup.open("the bus", lambda: "bus", lambda name: 1 / 0)
        return Serving({})

    with caplog.at_level(logging.ERROR, logger="kazru.service_runner"):
        code = await serve("svc", SETTINGS, open_service, stop_signal=lambda: asyncio.sleep(0))

    assert code == 1
    assert events == ["close a"]
    assert caplog.messages == ["could not close the bus: ZeroDivisionError: division by zero"]


async def test_a_real_grpc_server_reads_not_serving_while_the_work_drains():
    """What a probe sees: SERVING once started, NOT_SERVING from the signal on, while the work still runs."""
    seen: dict[str, bool] = {}
    running = asyncio.Event()
    server: GrpcServer | None = None

    async def open_service(settings: Settings, startup: Startup) -> Serving:
        def make() -> GrpcServer:
            nonlocal server
            server = GrpcServer("127.0.0.1:0", lambda grpc_server: None, ["kazru.v1.Test"])
            return server

        async def work(stop: asyncio.Event) -> None:
            async with channel(f"127.0.0.1:{server.port}") as probe:
                seen["before"] = await check_health(probe)
                running.set()
                await stop.wait()
                seen["draining"] = await check_health(probe)

        return Serving({"the health check": make}, background={"the work": work})

    assert await serve("svc", SETTINGS, open_service, stop_signal=running.wait) == 0
    assert seen == {"before": True, "draining": False}
    status = await server.health.Check(health_pb2.HealthCheckRequest(service=""), None)
    assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
