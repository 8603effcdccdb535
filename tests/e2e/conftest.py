"""The whole stack as separate processes (`python -m services.<name>`), as `make run` starts it."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from kazru.devservers import free_port, stop_process
from kazru.devstack import SERVICES, start_services
from kazru.settings import Settings
from tests.conftest import Infrastructure

API_KEY = "e2e-test-key-0123456789abcdef"


@dataclass
class Stack:
    settings: Settings
    processes: dict
    logs: Path
    missing: set = field(default_factory=set)  # services deliberately not started

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.logs.glob("*.log")))


def wait_until_healthy(stack: Stack, timeout: float = 120.0, require_all: bool = True) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for name, process in stack.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{stack.log_text()[-4000:]}")
        try:
            last = httpx.get(f"{stack.http}/api/v1/health", timeout=5)
            checks = last.json()["checks"]
            if all(check["ok"] for name, check in checks.items() if require_all or name not in stack.missing):
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"stack not healthy: {last.text if last is not None else 'no answer'}")


def start_stack(infra: Infrastructure, tmp: Path, services=SERVICES, **overrides) -> Stack:
    settings = infra.settings(
        http_port=free_port(),
        public_grpc_address=f"127.0.0.1:{free_port()}",
        ingest_address=f"127.0.0.1:{free_port()}",
        exporter_address=f"127.0.0.1:{free_port()}",
        transcriber_address=f"127.0.0.1:{free_port()}",
        janitor_address=f"127.0.0.1:{free_port()}",
        bootstrap_api_key=API_KEY,
        shutdown_grace_seconds=3,
        **overrides,
    )
    logs = tmp / "logs"
    stack = Stack(settings, start_services(infra.env(settings), logs, services), logs, set(SERVICES) - set(services))
    wait_until_healthy(stack, require_all=not stack.missing)
    return stack


def stop_stack(stack: Stack) -> None:
    for process in stack.processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in stack.processes.values():
        stop_process(process, grace=15)


@pytest.fixture(scope="module")
def stack(infra: Infrastructure, tmp_path_factory) -> Iterator[Stack]:
    started = start_stack(infra, tmp_path_factory.mktemp("stack"))
    yield started
    stop_stack(started)
