"""`make run` survives a dead service (issue 22, "One crash stops everything").

The real devstack (`python -m kazru.dev.devstack`, as `make run` starts it) runs on free ports with a data
dir of its own, using the test servers as a user's own PostgreSQL, NATS and S3. Its transcriber is killed
with SIGKILL in the middle of a job, as the OOM killer would: the devstack starts a new one within
seconds and says so on its console and in /api/v1/health, the gateway answers throughout, and the job,
handed on by JetStream after the local run's short ack wait, ends SUCCEEDED on the new transcriber.
Ctrl-C (SIGTERM) then stops everything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from kazru.db.models import Job
from kazru.dev.devstack import LOCAL_JOB_ACK_WAIT_SECONDS, SUPERVISOR_STATUS_FILE, isolated_addresses
from tests.helpers import long_speech

REPO = Path(__file__).resolve().parents[2]
READY_LINE = "KazRu-STT Pro is running."


def devstack_environment(infra, data_dir: Path) -> tuple[dict[str, str], str]:
    """What a user with their own servers sets, on free ports and `data_dir`; and the HTTP address."""
    addresses = isolated_addresses()
    environment = {name: value for name, value in os.environ.items() if not name.startswith("KAZRU_")}
    environment.update({f"KAZRU_{name.upper()}": str(value) for name, value in addresses.items()})
    environment.update(
        PYTHONPATH=str(REPO),
        KAZRU_DATA_DIR=str(data_dir),
        KAZRU_DATABASE_URL=infra.postgres.url,
        KAZRU_NATS_URL=infra.nats.url,
        KAZRU_S3_ENDPOINT=infra.s3.endpoint,
        KAZRU_S3_ACCESS_KEY=infra.s3.access_key,
        KAZRU_S3_SECRET_KEY=infra.s3.secret_key,
        KAZRU_ENCRYPTION_KEYS=infra.encryption_keys,
        # The test servers' database is shared by every module: this job must run, not copy another's.
        KAZRU_REUSE_IDENTICAL_UPLOADS="false",
        KAZRU_SHUTDOWN_GRACE_SECONDS="3",
    )
    return environment, f"http://127.0.0.1:{addresses['http_port']}"


def wait_for(what: str, done, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := done():
            return result
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout}s")


async def test_a_transcriber_killed_mid_job_is_restarted_and_its_job_succeeds(infra, database, tmp_path):
    data_dir = tmp_path / "kazru"
    data_dir.mkdir()
    (data_dir / "models").symlink_to(infra.settings().model_dir.parent)  # the installed models, not a copy
    environment, http = devstack_environment(infra, data_dir)
    console_path = tmp_path / "console.txt"
    status_file = data_dir / SUPERVISOR_STATUS_FILE
    with console_path.open("w") as console_file:
        devstack = subprocess.Popen(
            [sys.executable, "-m", "kazru.dev.devstack"], cwd=REPO, env=environment,
            stdout=console_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def console() -> str:
        return console_path.read_text()

    def transcriber() -> dict:
        return json.loads(status_file.read_text())["services"]["transcriber"]

    try:
        wait_for("the devstack is ready", lambda: READY_LINE in console() or devstack.poll() is not None, 180)
        assert devstack.poll() is None, console()
        # No credentials: under `make run` curl, the CLI and the page are one local owner.
        upload = httpx.post(f"{http}/api/v1/upload", files={"file": ("long.flac", long_speech(tmp_path / "long.flac"))})
        assert upload.status_code == 202, upload.text
        job_url = f"{http}/api/v1/jobs/{upload.json()['job_id']}"
        wait_for("the job runs", lambda: httpx.get(job_url).json()["state"] == "RUNNING", 60, interval=0.1)
        time.sleep(1.0)  # into its work: decoding, the engine
        assert httpx.get(job_url).json()["state"] == "RUNNING", "finished before it could be killed"

        killed_pid = transcriber()["pid"]
        os.kill(killed_pid, signal.SIGKILL)
        killed_at = time.monotonic()

        # The gateway answers all along, and its health tells of the restart.
        answers: list[dict] = []
        restarted_after = None
        while True:
            health = httpx.get(f"{http}/api/v1/health", timeout=10)
            answers.append(health.json()["checks"]["transcriber"])
            if restarted_after is None and transcriber()["pid"] != killed_pid:
                restarted_after = time.monotonic() - killed_at
            if health.status_code == 200 and restarted_after is not None:
                break
            assert time.monotonic() - killed_at < 90, f"not serving again: {answers[-1]}"
            time.sleep(0.2)
        serving_after = time.monotonic() - killed_at
        assert restarted_after < 5, restarted_after
        assert transcriber() == {
            "pid": transcriber()["pid"], "state": "running", "restarts": 1, "last_exit": "killed by SIGKILL",
        }  # fmt: skip
        assert f"transcriber killed by SIGKILL (pid {killed_pid}); restart 1 in 0.5 s." in console()
        serving = answers[-1]
        assert (serving["ok"], serving["restarts"], serving["restarting"]) == (True, 1, False), serving
        assert serving["last_exit"] == "killed by SIGKILL"
        assert any(not answer["ok"] for answer in answers), "health never saw the transcriber down"
        for service in ("ingest", "exporter", "janitor"):  # the others kept serving, never restarted
            check = httpx.get(f"{http}/api/v1/health").json()["checks"][service]
            assert check["ok"] and check["restarts"] == 0, (service, check)

        # JetStream hands the job on after the local run's ack wait; the new transcriber finishes it.
        job = wait_for(
            "the job ends",
            lambda: (job := httpx.get(job_url).json())["state"] in {"SUCCEEDED", "FAILED"} and job,
            LOCAL_JOB_ACK_WAIT_SECONDS + 90,
        )
        finished_after = time.monotonic() - killed_at
        assert job["state"] == "SUCCEEDED", job
        async with database() as session:
            row = await session.get(Job, uuid.UUID(job["job_id"]))
        assert row.attempts == 2, "run again by the restarted transcriber"
        print(f"\nafter kill -9: new pid {restarted_after:.1f}s, serving {serving_after:.1f}s, "
              f"SUCCEEDED {finished_after:.1f}s")  # fmt: skip

        devstack.send_signal(signal.SIGTERM)  # Ctrl-C
        assert devstack.wait(60) == 0, console()
        assert console().rstrip().endswith("Stopped."), console()
        for service in json.loads(status_file.read_text())["services"].values():
            assert not Path(f"/proc/{service['pid']}").exists(), service
    finally:
        if devstack.poll() is None:
            devstack.send_signal(signal.SIGTERM)
            devstack.wait(60)
