"""How every service starts and stops: `python -m services.<name>` is `run_service(name, open_service)`.

A service declares itself as one function, `open_service(settings, startup) -> Serving`: it opens what it
needs through `startup` (each step named; the close of what a step opens goes onto an exit stack the
moment it is open) and returns what it serves: servers (gRPC, HTTP) and background work (the
transcriber's consumer, the janitor's sweep). The runner then starts the servers in order, starts the
work, and waits for SIGTERM or SIGINT. Stopping is the exit stack unwinding (ARCHITECTURE.md §6):
health NOT_SERVING → the work asked to stop and given `shutdown_grace_seconds` to finish (then
cancelled: the transcriber's job is handed back) → the servers stopped with that grace → what was
opened closed, last opened first.

If a step fails on the way up, only what was opened before it is closed, and the service exits 1 with
one line that names the service and the step. Background work that ends by itself (the consumer died)
stops the service the same way, also with exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from kazru.adapters.bus import Bus
from kazru.adapters.engine_copies import for_engine
from kazru.db.session import create_engine
from kazru.domain.external_copies import ExternalCopies
from kazru.grpc.server import wait_for_stop_signal
from kazru.observability.logs import prepare_process
from kazru.observability.metrics import start_metrics_server
from kazru.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


class Server(Protocol):
    """What the runner serves: `GrpcServer`, or the gateway's uvicorn servers."""

    async def start(self) -> None: ...

    async def set_serving(self, serving: bool) -> None: ...

    async def stop(self, grace: float) -> None: ...


# Background work: runs until the event is set, then finishes what it holds (or is cancelled after the grace).
Work = Callable[[asyncio.Event], Awaitable[None]]


@dataclass
class Serving:
    """What a service serves once its resources are open."""

    # What each one is ("the gRPC API on 127.0.0.1:50051", for messages) → what makes it (a gRPC server
    # binds its port as it is made); made and started in this order.
    servers: Mapping[str, Callable[[], Server]]
    background: Mapping[str, Work] = field(default_factory=dict)
    # The extras of the "<service> listening" line logged once everything serves; None: no such line.
    listening: Mapping[str, str] | None = None


async def _result(value):
    return await value if inspect.isawaitable(value) else value


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class Startup:
    """What a service's declaration opens its resources with."""

    def __init__(self, stack: contextlib.AsyncExitStack):
        self._stack = stack
        # The step under way: what a start-up failure names.
        self.current_step = "the start-up"
        # Closes and drains that failed while stopping: the service then exits non-zero.
        self.stop_errors = 0

    async def step(self, what: str, action: Callable[[], T | Awaitable[T]]) -> T:
        """Do `action` (sync or async) as the step `what`; nothing to close afterwards."""
        self.current_step = what
        result = await _result(action())
        # What fails between steps (building a service's parts) is named by the step it came after.
        self.current_step = f"the start-up after {what}"
        return result

    async def open(self, what: str, factory: Callable[[], T | Awaitable[T]], close: Callable[[T], object]) -> T:
        """Open a resource as the step `what`; `close(resource)` (sync or async) runs when the service stops."""
        resource = await self.step(what, factory)
        self.on_stop(what, functools.partial(close, resource))
        return resource

    def on_stop(self, what: str, close: Callable[[], object]) -> None:
        """Run `close` (sync or async) when the service stops, before whatever was pushed earlier. A close
        that fails is logged and the others still run."""

        async def closing() -> None:
            try:
                await _result(close())
            except Exception as error:
                self.stop_errors += 1
                log.exception("could not close %s: %s", what, _describe(error))

        self._stack.push_async_callback(closing)

    # The resources most services share.

    async def metrics(self, settings: Settings) -> None:
        """/metrics on its own port, in a thread (none when KAZRU_METRICS_PORT is 0)."""

        def stop(server) -> None:
            if server is not None:
                server.shutdown()
                server.server_close()

        await self.open(
            "the metrics server", lambda: start_metrics_server(settings), lambda server: asyncio.to_thread(stop, server)
        )

    async def database(self, settings: Settings) -> AsyncEngine:
        return await self.open("the database engine", lambda: create_engine(settings), AsyncEngine.dispose)

    async def bus(self, settings: Settings, name: str) -> Bus:
        return await self.open("the NATS connection", lambda: Bus.connect(settings, name), Bus.close)

    async def external_copies(self, settings: Settings) -> ExternalCopies:
        """What forgets the copies the configured engine keeps (SpeechKit's operations API)."""
        return await self.open(
            "the engine's copies client", lambda: for_engine(settings), lambda copies: copies.close()
        )


OpenService = Callable[[Settings, Startup], Awaitable[Serving]]


async def _not_serving(servers: list[Server]) -> None:
    for server in servers:
        await server.set_serving(False)


async def _drain(startup: Startup, tasks: Mapping[asyncio.Task, str], stop: asyncio.Event, grace: float) -> None:
    """Ask the work to stop, give it `grace` seconds to finish, then cancel what is left. Work that had
    already ended was reported when it ended."""
    running = [task for task in tasks if not task.done()]
    stop.set()
    if not running:
        return
    _, late = await asyncio.wait(running, timeout=grace)
    for task in late:
        log.warning("%s did not finish within %g s; cancelling it", tasks[task], grace)
        task.cancel()
    await asyncio.wait(running)
    for task in running:
        if not task.cancelled() and task.exception() is not None:
            startup.stop_errors += 1
            log.error("%s failed while stopping: %s", tasks[task], _describe(task.exception()),
                      exc_info=task.exception())  # fmt: skip


async def _until_stopped(service: str, tasks: Mapping[asyncio.Task, str], stop_signal) -> bool:
    """Wait for the stop signal or for background work to end; True when the work ended (a failure)."""
    signal_wait = asyncio.create_task(stop_signal())
    try:
        done, _ = await asyncio.wait({signal_wait, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signal_wait.cancel()
    ended = [task for task in done if task is not signal_wait]
    for task in ended:
        if task.cancelled():
            why, error = "was cancelled", None
        elif task.exception() is not None:
            why, error = f"failed: {_describe(task.exception())}", task.exception()
        else:
            why, error = "ended without being asked to stop", None
        log.error("%s is stopping: %s %s", service, tasks[task], why, exc_info=error, extra={"work": tasks[task]})
    return bool(ended)


async def serve(
    service: str,
    settings: Settings,
    open_service: OpenService,
    stop_signal: Callable[[], Awaitable[None]] = wait_for_stop_signal,
) -> int:
    """Open, serve until `stop_signal()` returns, stop; the exit code: 0 after a clean stop, 1 when a step
    of the start-up, the background work or a close failed (each logged in one line)."""
    grace = settings.shutdown_grace_seconds
    async with contextlib.AsyncExitStack() as stack:
        startup = Startup(stack)
        try:
            serving = await open_service(settings, startup)
            servers = []
            for what, make in serving.servers.items():
                server = await startup.open(what, make, lambda server: server.stop(grace))  # also if start fails
                await startup.step(what, server.start)
                servers.append(server)
            stop = asyncio.Event()
            tasks = {asyncio.create_task(work(stop), name=what): what for what, work in serving.background.items()}
            startup.on_stop("the background work", functools.partial(_drain, startup, tasks, stop, grace))
            # Pushed last, so done first: load balancers and probes look away before anything stops.
            startup.on_stop("the health status", functools.partial(_not_serving, servers))
        except Exception as error:
            log.error("%s could not start: %s failed: %s", service, startup.current_step, _describe(error),
                      exc_info=error, extra={"step": startup.current_step})  # fmt: skip
            return 1  # leaving the block closes what was opened, last first
        if serving.listening is not None:
            # In the service's own logger, as each service logged it before the runner.
            logging.getLogger(f"services.{service}").info(f"{service} listening", extra=dict(serving.listening))
        work_ended = await _until_stopped(service, tasks, stop_signal)
    return 1 if work_ended or startup.stop_errors else 0


def run_service(service: str, open_service: OpenService, streams_large_bodies: bool = False) -> None:
    """A service's `main()`: settings from the environment, JSON logs, serve, exit with `serve`'s code."""
    settings = Settings()
    prepare_process(service, settings.log_level, streams_large_bodies=streams_large_bodies)
    sys.exit(asyncio.run(serve(service, settings, open_service)))
