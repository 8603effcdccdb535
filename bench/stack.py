"""The stack the end-to-end benchmarks measure: throwaway PostgreSQL, NATS and S3 and the services as
processes (kazru.dev.devstack, as `make run` starts them), on free ports beside a local run, open to
anonymous callers (one shared owner)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kazru.dev.devstack import (
    SERVICES,
    isolated_addresses,
    service_environment,
    start_servers,
    start_services,
    stop_services,
    wait_until_healthy,
)
from kazru.settings import REPO_ROOT, Settings

# The short clip (2.92 s of espeak Russian) the benchmarks upload again and again.
CLIP = REPO_ROOT / "tests" / "fixtures" / "audio" / "ru_weather_m3.flac"


@dataclass
class BenchStack:
    settings: Settings
    processes: dict  # a process added here is stopped with the others
    root: Path  # the servers' data; each service's <name>.log under root / "logs"


@contextmanager
def running_stack(services=SERVICES, required: set[str] | None = None, **overrides) -> Iterator[BenchStack]:
    """The stack with `services` started, once the `required` health checks (default: all) pass;
    `overrides`: settings. Everything is stopped and deleted on leaving."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        servers = start_servers(root, durable=False)
        processes: dict = {}
        try:
            settings = servers.settings(**isolated_addresses(), anonymous_access="shared", **overrides)
            processes = start_services(service_environment(settings), root / "logs", services)
            wait_until_healthy(settings, processes, required=required)
            yield BenchStack(settings, processes, root)
        finally:
            stop_services(processes, grace=15)
            servers.stop()
