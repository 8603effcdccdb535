"""The whole stack as separate processes (`python -m services.<name>`), as `make run` starts it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.dialects.postgresql import insert

from kazru.db.api_keys import hash_key
from kazru.db.models import ApiKey
from kazru.dev.devstack import (
    SERVICES,
    Servers,
    isolated_addresses,
    service_environment,
    start_services,
    stop_services,
    wait_until_healthy,
)
from kazru.settings import Settings

API_KEY = "e2e-test-key-0123456789abcdef"


async def register_api_key(database, owner_id: str, key: str) -> dict[str, str]:
    """Register `key` for another owner straight in the database (as `kazru-admin keys create`
    does); returns the request headers that use it."""
    async with database.begin() as session:
        await session.execute(
            insert(ApiKey)
            .values(id=uuid.uuid4(), owner_id=owner_id, name=owner_id, key_hash=hash_key(key))
            .on_conflict_do_nothing()
        )
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Stack:
    settings: Settings
    processes: dict
    logs: Path  # each service's <name>.log

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"


def start_stack(
    infra: Servers,
    tmp: Path,
    services=SERVICES,
    environment: Callable[[str], dict[str, str]] | None = None,
    **overrides,
) -> Stack:
    """`overrides`: settings for this stack (e.g. a short ack wait for fault tests). `environment`: the
    variables a service's process gets besides the settings, by service name (e.g. its own metrics port)."""
    settings = infra.settings(
        **{
            **isolated_addresses(),
            "bootstrap_api_key": API_KEY,
            "shutdown_grace_seconds": 3,
            # The tests upload far faster than a person; test_rate_limits.py sets its own limit.
            "upload_rate_limit_per_minute": 0,
            # Every module's stack shares one database and one owner: with reuse on, an upload would get
            # the transcript of the same clip from an earlier module instead of running (test_openai_api.py
            # turns it on to test it, with a file of its own).
            "reuse_identical_uploads": False,
            # Its transcribers' scratch space, for the tests that look at what a killed one left there.
            "scratch_dir": tmp / "scratch",
            **overrides,
        }
    )
    logs = tmp / "logs"
    common = service_environment(settings)
    # The health of services deliberately not started is not waited for.
    required = {"postgres", "nats", "s3", *services} - {"gateway"}
    processes: dict = {}
    try:
        for name in services:  # one at a time: each with its own `environment`
            processes.update(start_services({**common, **(environment(name) if environment else {})}, logs, [name]))
        wait_until_healthy(settings, processes, required=required)
    except BaseException:
        stop_services(processes, grace=15)
        raise
    return Stack(settings, processes, logs)


def stop_stack(stack: Stack) -> None:
    stop_services(stack.processes, grace=15)


def stack_fixture(name: str, services=SERVICES, **overrides):
    """A module-scoped fixture: a stack started with start_stack(services, **overrides), logs under a
    temporary directory named `name`, stopped after the module. A module that needs a stack of its own
    assigns it as `stack = stack_fixture("name", ...)`."""

    @pytest.fixture(scope="module")
    def fixture(infra: Servers, tmp_path_factory) -> Iterator[Stack]:
        started = start_stack(infra, tmp_path_factory.mktemp(name), services, **overrides)
        yield started
        stop_stack(started)

    return fixture


# The whole stack with the e2e defaults, for the modules that need nothing else.
stack = stack_fixture("stack")
