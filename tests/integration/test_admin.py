"""`kazru-admin` as an operator runs it: a separate process (`python -m kazru.admin`) against real PostgreSQL,
with the services' settings. Through the whole stack, a key it makes opens the API: tests/e2e/test_cli.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from kazru.db import usage
from kazru.db.api_keys import hash_key
from kazru.db.models import ApiKey, Job, JobState


def kazru_admin(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kazru.admin", *args], env={**os.environ, **settings.as_environment()},
        capture_output=True, timeout=60,
    )  # fmt: skip


async def test_keys_create_list_revoke_round_trip(settings, database):
    name = "admin-" + uuid.uuid4().hex[:8]
    created = kazru_admin(settings, "keys", "create", name, "--owner", "owner-" + name)
    assert created.returncode == 0, created.stderr
    key = created.stdout.decode().strip()
    key_id = created.stderr.decode().split()[2]
    async with database() as session:
        stored = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    assert (str(stored.id), stored.name, stored.owner_id) == (key_id, name, "owner-" + name)

    listed = kazru_admin(settings, "keys", "list").stdout.decode()
    row = next(line.split() for line in listed.splitlines() if line.startswith(key_id))
    assert row[1:3] == [name, "owner-" + name] and row[-1] == "-" and key not in listed

    assert kazru_admin(settings, "keys", "revoke", key_id).returncode == 0
    listed = kazru_admin(settings, "keys", "list").stdout.decode()
    assert next(line for line in listed.splitlines() if line.startswith(key_id)).split()[-1] != "-"

    unknown = kazru_admin(settings, "keys", "revoke", str(uuid.uuid4()))
    assert unknown.returncode == 3
    assert unknown.stderr.decode().strip().startswith("kazru-admin: API_KEY_NOT_FOUND: no such API key")


async def test_usage_reports_the_days_as_json_and_as_a_table(settings, database):
    job = Job(
        id=uuid.uuid4(), owner_id="owner-usage", state=JobState.SUCCEEDED, filename="a.flac",
        content_type="audio/flac", size_bytes=1, object_key="jobs/x", container="flac", languages=["kk"],
        duration_seconds=90.0, created_at=datetime.now(UTC), expires_at=datetime.now(UTC),
    )  # fmt: skip
    async with database.begin() as session:
        session.add(job)
        await usage.record_usage(session, job, settings)

    report = kazru_admin(settings, "usage", "--days", "2", "--json")
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)
    assert len(figures["days"]) == 2 and figures["days"][0]["files"] >= 1 and figures["days"][0]["succeeded"] >= 1
    assert figures["totals"]["files"] >= figures["days"][0]["files"]
    table = kazru_admin(settings, "usage", "--days", "1").stdout.decode().splitlines()
    assert table[0].split()[:3] == ["DAY", "FILES", "AUDIO"] and table[-1].startswith("total")
    assert len(table) == 3  # the header, today, the total
