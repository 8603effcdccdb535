"""Where a transcriber keeps a job's decoded audio while it works, and why none outlives its process.

A job's audio is decoded to a PCM file on local disk (115 MB per hour of speech, plaintext), in a
folder removed when the job ends. A worker killed mid-job (OOM, kill -9, a node's eviction) removes
nothing, and the job is redelivered to another worker, so its PCM would stay on the disk for ever:
past the 24-hour promise and outside encryption at rest.

So each transcriber process works in a folder of its own under `settings.scratch_dir`, holding an
exclusive lock (flock) on a file inside it for as long as it lives. The kernel drops the lock when
the process dies, however it dies. A transcriber that starts removes every folder whose lock it can
take: those of processes that are gone. Folders of living transcribers (replicas sharing the disk,
the test suite's stacks) are locked and left alone.

The root must be this user's own folder, a real one that nobody else can write to: under a shared /tmp,
another local user who made it first could otherwise swap our folders for links into theirs.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import stat
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# A process's folder is named `worker-*` only once its lock is held: a starting transcriber never sees
# one it could take by mistake (a folder still being made is `.new-*`, never swept).
FOLDER_PREFIX = "worker-"
NEW_FOLDER_PREFIX = ".new-"
LOCK_NAME = ".lock"


@dataclass(frozen=True)
class Swept:
    """What a starting transcriber removed: the folders of dead processes and the bytes inside them."""

    folders: int
    bytes: int


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def _try_lock(lock_file: Path) -> int | None:
    """An fd holding the exclusive lock of `lock_file`, or None when a living process holds it."""
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except FileNotFoundError:
        return None  # removed by another transcriber's sweep just now
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def sweep_abandoned(root: Path) -> Swept:
    """Remove the folders under `root` whose process is gone (their lock is free)."""
    folders = removed_bytes = 0
    for folder in sorted(root.glob(f"{FOLDER_PREFIX}*")):
        fd = _try_lock(folder / LOCK_NAME)
        if fd is None:
            continue
        try:
            removed_bytes += _size(folder)
            shutil.rmtree(folder, ignore_errors=True)
            folders += 1
        finally:
            os.close(fd)
    return Swept(folders, removed_bytes)


def _check_private(root: Path) -> None:
    info = os.lstat(root)
    if (
        stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid()
        or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):  # fmt: skip
        raise PermissionError(
            f"{root} (KAZRU_SCRATCH_DIR) must be a folder, not a link, owned by this user and writable by no one "
            "else: it holds decoded audio"
        )


class ScratchSpace:
    """This process's folder for jobs' decoded audio: `open` it once at start-up, `close` it at the end."""

    def __init__(self, folder: Path, lock_fd: int):
        self.folder = folder
        self._lock_fd = lock_fd

    @classmethod
    def open(cls, root: Path) -> ScratchSpace:
        """Sweep what dead transcribers left under `root`, then make and lock this process's folder."""
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_private(root)
        swept = sweep_abandoned(root)
        if swept.folders:
            log.warning(
                "removed %d scratch folder(s) that stopped transcribers left (%d bytes of decoded audio)",
                swept.folders, swept.bytes, extra={"folders": swept.folders, "bytes": swept.bytes},
            )  # fmt: skip
        new = Path(tempfile.mkdtemp(prefix=NEW_FOLDER_PREFIX, dir=root))  # mode 0700
        lock_fd = os.open(new / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        folder = new.with_name(FOLDER_PREFIX + new.name.removeprefix(NEW_FOLDER_PREFIX))
        new.rename(folder)
        return cls(folder, lock_fd)

    def for_job(self, job_id: uuid.UUID) -> tempfile.TemporaryDirectory:
        """A folder for one job's files, removed by its `cleanup()` (or with this space)."""
        return tempfile.TemporaryDirectory(prefix=f"job-{job_id}-", dir=self.folder, ignore_cleanup_errors=True)

    def close(self) -> None:
        """Remove this process's folder and everything in it, then let go of the lock."""
        shutil.rmtree(self.folder, ignore_errors=True)
        os.close(self._lock_fd)
