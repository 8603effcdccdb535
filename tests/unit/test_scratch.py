"""The transcriber's scratch space: a killed worker's decoded audio does not outlive it.

Real processes hold the folders: one killed with SIGKILL (no clean-up runs, as under the OOM killer)
and one alive, as a replica sharing the disk would be."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from services.transcriber.scratch import FOLDER_PREFIX, NEW_FOLDER_PREFIX, ScratchSpace, sweep_abandoned

REPO = Path(__file__).resolve().parents[2]

# A transcriber in miniature: opens its scratch space, decodes "a job" (1 MB) into it, says where, waits.
HOLDER = textwrap.dedent("""
    import sys, time, uuid
    from pathlib import Path
    from services.transcriber.scratch import ScratchSpace
    space = ScratchSpace.open(Path(sys.argv[1]))
    job = space.for_job(uuid.uuid4())
    (Path(job.name) / "audio.pcm").write_bytes(bytes(1_000_000))
    print(space.folder, flush=True)
    time.sleep(600)
""")


@pytest.fixture
def holders(tmp_path):
    """Start holder processes on a scratch root; each yields its folder. All are killed afterwards."""
    started: list[subprocess.Popen] = []

    def start(root: Path) -> tuple[subprocess.Popen, Path]:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(root)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        return process, Path(process.stdout.readline().strip())

    yield start
    for process in started:
        process.kill()
        process.wait()
        process.stdout.close()


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_a_killed_workers_audio_is_removed_by_the_next_to_start_and_a_living_ones_is_kept(tmp_path, holders, caplog):
    root = tmp_path / "scratch"
    killed, killed_folder = holders(root)
    living, living_folder = holders(root)
    kill(killed)
    assert (killed_folder / ".lock").exists() and any(killed_folder.rglob("audio.pcm")), "SIGKILL cleaned nothing"

    space = ScratchSpace.open(root)
    try:
        assert not killed_folder.exists()
        assert any(living_folder.rglob("audio.pcm")), "a living transcriber's job is left alone"
        assert sorted(root.iterdir()) == sorted([living_folder, space.folder])
        [warning] = [r for r in caplog.records if r.name == "services.transcriber.scratch"]
        assert (warning.folders, warning.bytes) == (1, 1_000_000)
    finally:
        space.close()
    assert not space.folder.exists() and living_folder.exists(), "closing removes its own folder only"


def test_a_job_folder_lives_inside_the_process_folder_until_its_cleanup(tmp_path):
    space = ScratchSpace.open(tmp_path)
    job = space.for_job(uuid.uuid4())
    audio = Path(job.name) / "audio.pcm"
    audio.write_bytes(b"pcm")
    assert audio.parent.parent == space.folder and space.folder.name.startswith(FOLDER_PREFIX)
    assert space.folder.stat().st_mode & 0o777 == 0o700, "decoded audio is readable by its owner only"
    job.cleanup()
    assert [path.name for path in space.folder.iterdir()] == [".lock"]
    space.close()


def test_a_folder_still_being_made_and_unrelated_files_are_never_swept(tmp_path):
    being_made = tmp_path / f"{NEW_FOLDER_PREFIX}abc"
    being_made.mkdir()
    other = tmp_path / "not-ours"
    other.write_text("kept")
    assert sweep_abandoned(tmp_path).folders == 0
    assert being_made.exists() and other.read_text() == "kept"


def test_a_root_that_someone_else_could_write_to_or_a_link_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by no one else"):
        ScratchSpace.open(shared)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    with pytest.raises(PermissionError, match="not a link"):
        ScratchSpace.open(link)
    assert list(shared.iterdir()) == [] and list((tmp_path / "elsewhere").iterdir()) == []
