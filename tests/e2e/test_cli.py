"""The `kazru` command line as a user runs it: a separate process against the whole stack over gRPC
(and `kazru-admin`, for keys and usage, against its PostgreSQL). Output, files and the exit codes scripts rely on."""

from __future__ import annotations

import functools
import json
import os
import pty
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from kazru.dev.devstack import service_environment, start_services, stop_services
from tests import export_checks
from tests.conftest import FIXTURES, REAL_SPEECH_CLIP, REAL_SPEECH_SECONDS, REAL_SPEECH_WORDS, SPEECH_CLIP
from tests.e2e.conftest import API_KEY


def cli_environment(stack, api_key: str | None = API_KEY, server: str | None = None) -> dict[str, str]:
    environment = {
        **os.environ,
        **stack.settings.as_environment(),  # KAZRU_DATABASE_URL for `kazru-admin`
        "KAZRU_SERVER": server or stack.settings.public_grpc_address,
    }
    environment.pop("KAZRU_API_KEY", None)
    if api_key:
        environment["KAZRU_API_KEY"] = api_key
    return environment


def kazru(stack, *args: str, api_key: str | None = API_KEY, server: str | None = None, timeout: float = 180,
          module: str = "kazru.cli"):  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", module, *args], env=cli_environment(stack, api_key, server),
        capture_output=True, timeout=timeout,
    )  # fmt: skip


# The database administrator's command: PostgreSQL, no API key.
kazru_admin = functools.partial(kazru, api_key=None, module="kazru.admin")


def one_error_line(result) -> str:
    """The error: one line, the last on stderr (progress lines may come before it)."""
    lines = result.stderr.decode().strip().splitlines()
    assert [line for line in lines if line.startswith("kazru: ")] == lines[-1:], lines
    return lines[-1]


@pytest.fixture(scope="module")
def finished_job(stack, tmp_path_factory) -> tuple[str, str]:
    """`kazru transcribe` of the speech clip to SRT: (job id, the SRT file's text)."""
    out = tmp_path_factory.mktemp("cli") / "speech.srt"
    result = kazru(
        stack, "transcribe", str(REAL_SPEECH_CLIP), "--format", "srt", "-o", str(out), "--languages", "kk,ru"
    )
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert result.stdout == b""  # the transcript went to the file
    assert "upload: 100%" in stderr and "transcription: 100% succeeded" in stderr
    job_id = next(line.split()[1] for line in stderr.splitlines() if line.startswith("job "))
    return job_id, out.read_text(encoding="utf-8")


def test_transcribe_writes_the_srt_with_the_spoken_words(finished_job):
    _, srt_text = finished_job
    captions = export_checks.parse_srt(srt_text.encode())
    text = " ".join(caption.content for caption in captions).lower()
    for word in REAL_SPEECH_WORDS:
        assert word in text
    assert captions[0].start.total_seconds() < captions[-1].end.total_seconds() <= REAL_SPEECH_SECONDS + 0.05


def test_jobs_show_and_export_to_stdout(stack, finished_job):
    job_id, _ = finished_job
    listed = kazru(stack, "jobs")
    assert listed.returncode == 0 and any(
        line.split()[:2] == [job_id, "SUCCEEDED"] for line in listed.stdout.decode().splitlines()
    ), listed.stdout
    shown = kazru(stack, "show", job_id)
    assert shown.returncode == 0
    job = json.loads(shown.stdout)
    assert job["name"] == f"jobs/{job_id}" and job["state"] == "SUCCEEDED" and job["progress"] == 100
    vtt = kazru(stack, "export", f"jobs/{job_id}", "--format", "vtt")
    assert vtt.returncode == 0
    assert REAL_SPEECH_WORDS[0] in " ".join(caption.text for caption in export_checks.parse_vtt(vtt.stdout)).lower()


def test_show_prints_the_job_as_the_http_api_answers_it(stack, finished_job):
    job_id, _ = finished_job
    shown = json.loads(kazru(stack, "show", job_id).stdout)
    answered = httpx.get(f"{stack.http}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert shown == answered  # the same names and the same types: created_at, size_bytes as a number, ...
    assert isinstance(shown["size_bytes"], int) and shown["created_at"].endswith("Z")


def test_binary_export_is_never_written_to_a_terminal(stack, finished_job):
    job_id, _ = finished_job
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "kazru.cli", "export", job_id, "--format", "docx"],
            env=cli_environment(stack), stdout=terminal, stderr=subprocess.PIPE, timeout=60,
        )  # fmt: skip
        os.set_blocking(controller, False)
        try:
            written = os.read(controller, 65536)
        except BlockingIOError:
            written = b""
    finally:
        os.close(controller)
        os.close(terminal)
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "kazru: BINARY_TO_TERMINAL: docx is a binary file and stdout is a terminal; "
        "write it with -o FILE.docx (or redirect stdout)"
    )
    assert b"PK" not in written  # no ZIP bytes reached the terminal
    # Redirected, it is written as asked.
    assert kazru(stack, "export", job_id, "--format", "docx").stdout.startswith(b"PK")


def test_a_closed_pipe_ends_quietly(stack, finished_job):
    job_id, _ = finished_job
    for args in (("export", job_id, "--format", "txt"), ("jobs",), ("show", job_id)):
        process = subprocess.Popen(
            [sys.executable, "-m", "kazru.cli", *args], env=cli_environment(stack),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        process.stdout.close()  # the reader is gone before a byte is written (`| head` that has had enough)
        assert process.wait(timeout=60) == 0, args
        assert process.stderr.read() == b"", args


def test_an_output_that_cannot_be_written_is_refused_before_the_upload(stack, finished_job, tmp_path):
    jobs_before = kazru(stack, "jobs", "--limit", "100").stdout.count(b"\n")
    missing = tmp_path / "no such folder" / "speech.srt"
    refused = kazru(stack, "transcribe", str(REAL_SPEECH_CLIP), "-o", str(missing))
    assert refused.returncode == 2
    assert one_error_line(refused) == (
        f"kazru: OUTPUT_NOT_WRITABLE: cannot write {missing}: the folder {missing.parent} does not exist"
    )
    assert kazru(stack, "jobs", "--limit", "100").stdout.count(b"\n") == jobs_before  # nothing was uploaded
    job_id, _ = finished_job
    into_a_folder = kazru(stack, "export", job_id, "--format", "srt", "-o", str(tmp_path))
    assert into_a_folder.returncode == 2
    assert (
        one_error_line(into_a_folder)
        == f"kazru: OUTPUT_NOT_WRITABLE: cannot write {tmp_path}: it is a folder; name a file"
    )
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_speaker_bounds_mean_what_the_api_means(stack, tmp_path):
    both = kazru(stack, "transcribe", str(REAL_SPEECH_CLIP), "--speakers", "2", "--max-speakers", "3")
    assert both.returncode == 2 and b"not allowed with argument" in both.stderr
    bounded = kazru(
        stack, "transcribe", str(REAL_SPEECH_CLIP), "--min-speakers", "1", "--max-speakers", "3",
        "-o", str(tmp_path / "bounded.txt"),
    )  # fmt: skip
    assert bounded.returncode == 0, bounded.stderr
    job_id = next(line.split()[1] for line in bounded.stderr.decode().splitlines() if line.startswith("job "))
    shown = json.loads(kazru(stack, "show", job_id).stdout)
    assert (shown["min_speakers"], shown["max_speakers"]) == (1, 3)


def test_usage_for_the_operator_and_each_owner_its_own(stack, finished_job):
    report = kazru_admin(stack, "usage", "--days", "2", "--json")
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)
    today = figures["days"][0]
    assert len(figures["days"]) == 2 and today["files"] >= 1 and today["succeeded"] >= 1
    assert today["audio_seconds"] >= REAL_SPEECH_SECONDS - 0.1 and figures["totals"]["files"] >= today["files"]
    table = kazru_admin(stack, "usage", "--days", "1").stdout.decode().splitlines()
    assert table[0].split()[:3] == ["DAY", "FILES", "AUDIO"] and table[-1].startswith("total")
    # Through the API, each owner sees its own figures: this key's owner its jobs, a new owner none.
    mine = httpx.get(f"{stack.http}/api/v1/usage", params={"days": 1}, headers={"Authorization": f"Bearer {API_KEY}"})
    assert mine.status_code == 200 and mine.json()["days"][0]["files"] >= 1
    assert mine.json()["days"][0]["files"] <= today["files"]
    with httpx.Client(base_url=stack.http) as browser:
        fresh = browser.get("/api/v1/usage").json()  # an anonymous session: an owner of its own
    assert len(fresh["days"]) == 30 and fresh["totals"]["files"] == 0


def test_unknown_job_exits_3_with_the_servers_code(stack):
    for args in (("show", str(uuid.uuid4())), ("export", str(uuid.uuid4()), "--format", "srt")):
        result = kazru(stack, *args)
        assert result.returncode == 3
        assert one_error_line(result) == "kazru: JOB_NOT_FOUND: job not found"
        assert result.stdout == b""


def test_usage_errors_exit_2(stack, tmp_path):
    assert kazru(stack, "export", str(uuid.uuid4())).returncode == 2  # --format is required
    assert kazru(stack, "transcribe", str(tmp_path / "missing.flac")).returncode == 2
    refused = kazru(stack, "transcribe", str(SPEECH_CLIP), "--speakers", "11")  # the server's limit is 10
    # Refused before anything is sent, naming the option typed (not the min_speakers it sets).
    last = refused.stderr.decode().strip().splitlines()[-1]
    assert refused.returncode == 2 and last.endswith("argument --speakers: at most 10 speakers are told apart"), last


def test_server_down_exits_5(stack):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = f"127.0.0.1:{probe.getsockname()[1]}"
    result = kazru(stack, "jobs", server=free, timeout=60)
    assert result.returncode == 5
    assert one_error_line(result).startswith(f"kazru: UNAVAILABLE: {free}")


def watched_transcribe(stack, clip: Path, out: Path) -> tuple[subprocess.Popen, str]:
    """`kazru transcribe clip -o out` in the background, once it has named its job on stderr (and is
    watching it): the process and the job id. The caller kills the process when done."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kazru.cli", "transcribe", str(clip), "-o", str(out)],
        env=cli_environment(stack), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        lines = []
        while not (lines and lines[-1].startswith("job ")):
            lines.append(process.stderr.readline())
            assert lines[-1], f"the CLI ended before naming its job: {lines}"
    except BaseException:
        process.kill()
        raise
    return process, lines[-1].split()[1]


def test_a_job_that_ends_without_a_transcript_exits_4(stack, tmp_path):
    out = tmp_path / "never.srt"
    process, job_id = watched_transcribe(stack, FIXTURES / "conversation_3spk.flac", out)
    try:
        # The owner deletes it from elsewhere while the CLI is watching.
        deleted = httpx.delete(f"{stack.http}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {API_KEY}"})
        assert deleted.status_code == 200
        assert process.wait(timeout=60) == 4
        last = process.stderr.read().strip().splitlines()[-1]
    finally:
        process.kill()
    assert last == "kazru: JOB_DELETED: the job ended DELETED", last
    assert not out.exists()


def test_delete_then_the_transcript_is_gone(stack, finished_job):
    job_id, _ = finished_job
    deleted = kazru(stack, "delete", job_id)
    assert deleted.returncode == 0 and deleted.stdout.decode().split() == [job_id, "DELETED"]
    gone = kazru(stack, "export", job_id, "--format", "txt")
    assert gone.returncode == 3 and one_error_line(gone).startswith("kazru: JOB_DELETED:")
    again = kazru(stack, "delete", job_id)  # deleting what is deleted: not found, as the README says
    assert again.returncode == 3 and one_error_line(again).startswith("kazru: JOB_DELETED:")


def test_keys_create_list_revoke_round_trip(stack):
    name = "cli-" + uuid.uuid4().hex[:8]
    created = kazru_admin(stack, "keys", "create", name)
    assert created.returncode == 0, created.stderr
    key = created.stdout.decode().strip()
    assert key.startswith("kz_") and len(key) > 40
    key_id = created.stderr.decode().split()[2]

    # The new key is its own owner: it works, and sees none of the test key's jobs.
    as_new_owner = kazru(stack, "jobs", api_key=key)
    assert as_new_owner.returncode == 0 and len(as_new_owner.stdout.decode().splitlines()) == 1

    listed = kazru_admin(stack, "keys", "list").stdout.decode()
    row = next(line.split() for line in listed.splitlines() if line.startswith(key_id))
    assert row[1] == name and row[-1] == "-" and key not in listed

    assert kazru_admin(stack, "keys", "revoke", key_id).returncode == 0
    listed = kazru_admin(stack, "keys", "list").stdout.decode()
    assert next(line for line in listed.splitlines() if line.startswith(key_id)).split()[-1] != "-"
    refused = kazru(stack, "jobs", api_key=key)
    assert refused.returncode == 1 and one_error_line(refused) == "kazru: INVALID_API_KEY: the API key is not valid"

    unknown = kazru_admin(stack, "keys", "revoke", str(uuid.uuid4()))
    assert (unknown.returncode, unknown.stderr.decode()) == (3, "kazru-admin: API_KEY_NOT_FOUND: no such API key\n")


def test_transcribe_survives_a_gateway_restart_while_watching(stack, tmp_path):
    out = tmp_path / "after-restart.txt"
    process, _ = watched_transcribe(stack, FIXTURES / "conversation_2spk.flac", out)
    try:
        stop_services({"gateway": stack.processes.pop("gateway")}, grace=15)
        stack.processes.update(start_services(service_environment(stack.settings), tmp_path / "logs", ("gateway",)))
        assert process.wait(timeout=240) == 0, process.stderr.read()
    finally:
        process.kill()
    assert out.read_text(encoding="utf-8").strip()
