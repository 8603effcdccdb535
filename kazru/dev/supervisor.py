"""Keeping `make run`'s services alive: a dead one is restarted, as Kubernetes restarts a dead container.

A service that dies is started again after a delay that doubles with each crash (0.5 s up to 30 s) and
starts afresh once the service has stayed up a minute. A service that keeps dying at start-up (5 times in
a row within seconds of being started) is a broken configuration, not bad luck: the supervisor gives up,
and `make run` stops with a message that names the service and its log.

What the supervisor knows is written to a small JSON file (`status_file`, replaced whole, so a reader
never sees half of it); the gateway reads it into `/api/v1/health`. A file rather than the gateway
asking each service: the gateway's gRPC probe already says a service is down, but only the supervisor
knows it was restarted, how often and why it died, and the gateway cannot see the processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RestartPolicy:
    first_delay: float = 0.5
    max_delay: float = 30.0
    # Up this long, a service is well again: its next crash waits the first delay again.
    stable_after: float = 60.0
    # Dying sooner than this after being started is failing at start-up...
    startup_seconds: float = 10.0
    # ...and this many such failures in a row is a service that cannot start: give up.
    startup_failures_allowed: int = 5


class RestartBackoff:
    """One service's restart delays under a policy, as plain arithmetic on how long each run lived."""

    def __init__(self, policy: RestartPolicy):
        self._policy = policy
        self._crashes_since_stable = 0
        self.startup_failures = 0

    def delay_after(self, lived: float) -> float | None:
        """The wait before starting again a service that died after `lived` seconds; None: give up."""
        policy = self._policy
        if lived >= policy.stable_after:
            self._crashes_since_stable = 0
        self.startup_failures = self.startup_failures + 1 if lived < policy.startup_seconds else 0
        if self.startup_failures >= policy.startup_failures_allowed:
            return None
        delay = min(policy.max_delay, policy.first_delay * 2**self._crashes_since_stable)
        self._crashes_since_stable += 1
        return delay


class ServiceKeepsDying(RuntimeError):
    """A service died at start-up too many times in a row; everything is to stop."""


def describe_exit(returncode: int) -> str:
    """`killed by SIGKILL` for a negative return code (Popen's way of saying a signal), else the code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class Supervised:
    """A service process and its restart history."""

    name: str
    start: Callable[[], subprocess.Popen]
    log: Path
    process: subprocess.Popen
    backoff: RestartBackoff
    started_at: float = field(default_factory=time.monotonic)
    restarts: int = 0
    last_exit: str | None = None
    # While dead: when it is to be started again.
    restart_at: float | None = None


class Supervisor:
    """Watches processes started by `start` callables; `check()` (called in a loop) restarts the dead."""

    def __init__(self, status_file: Path, policy: RestartPolicy = RestartPolicy(), say=print):
        self._status_file = status_file
        self._policy = policy
        self._say = say
        self._services: dict[str, Supervised] = {}

    def watch(self, name: str, process: subprocess.Popen, start: Callable[[], subprocess.Popen], log: Path) -> None:
        self._services[name] = Supervised(name, start, log, process, RestartBackoff(self._policy))
        self._write_status()

    @property
    def processes(self) -> dict[str, subprocess.Popen]:
        """The processes alive or not yet reaped, by service (for stopping them all)."""
        return {name: service.process for name, service in self._services.items()}

    def check(self) -> None:
        """Notice deaths, schedule and make restarts; raises ServiceKeepsDying to stop everything."""
        now = time.monotonic()
        changed = False
        for service in self._services.values():
            if service.restart_at is None and service.process.poll() is not None:
                self._on_death(service, now)
                changed = True
            elif service.restart_at is not None and now >= service.restart_at:
                service.process = service.start()
                service.started_at, service.restart_at = time.monotonic(), None
                self._say(f"{service.name} restarted (pid {service.process.pid}).", flush=True)
                changed = True
        if changed:
            self._write_status()

    def _on_death(self, service: Supervised, now: float) -> None:
        service.last_exit = describe_exit(service.process.returncode)
        delay = service.backoff.delay_after(now - service.started_at)
        if delay is None:
            self._write_status()
            raise ServiceKeepsDying(
                f"{service.name} keeps dying at start-up ({service.backoff.startup_failures} times in a row within "
                f"{self._policy.startup_seconds:g} s of starting; last: {service.last_exit}); see {service.log}"
            )
        service.restarts += 1
        service.restart_at = now + delay
        self._say(
            f"{service.name} {service.last_exit} (pid {service.process.pid}); restart {service.restarts} "
            f"in {delay:g} s. Its log: {service.log}",
            flush=True,
        )

    def _write_status(self) -> None:
        report = {
            "services": {
                name: {
                    "pid": service.process.pid,
                    "state": "running" if service.restart_at is None else "restarting",
                    "restarts": service.restarts,
                    "last_exit": service.last_exit,
                }
                for name, service in self._services.items()
            }
        }
        partial = self._status_file.with_name(self._status_file.name + ".partial")
        partial.write_text(json.dumps(report, indent=2))
        os.replace(partial, self._status_file)
