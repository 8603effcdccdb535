"""A Debian package's files, without root and without installing it: `apt-get download` and `dpkg-deb -x`
into a cache folder, once. For the tools and data the tests and benchmarks take from Debian (promtool from
`prometheus`, the festvox-ru voice), which pip cannot give."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path


class PackageUnavailable(RuntimeError):
    pass


def extracted_package(package: str, cache_dir: Path, marker: str) -> Path:
    """The folder the package's files are extracted into (`cache_dir/package`), fetched on first use.
    `marker`: a file of the package, relative to that folder, whose presence means a whole extraction."""
    target = cache_dir / package
    if (target / marker).exists():
        return target
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise PackageUnavailable(f"{package} needs apt-get and dpkg-deb (Debian/Ubuntu)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    # A scratch folder inside the cache, renamed into place only when complete: an interrupted run
    # leaves no half-extracted package that a later run would take as whole.
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        download = _download(package, scratch)
        if download.returncode != 0 and os.geteuid() == 0:
            # As root (CI), apt may only lack its package lists.
            subprocess.run(["apt-get", "update"], capture_output=True, check=False)
            download = _download(package, scratch)
        debs = list(Path(scratch).glob(f"{package}_*.deb"))
        if download.returncode != 0 or not debs:
            raise PackageUnavailable(
                f"`apt-get download {package}` failed: {download.stderr.strip()[-500:]}\n"
                "If apt does not know the package, its lists are missing: run `apt-get update` (as root) and retry."
            )
        extracted = Path(scratch) / "root"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(extracted)], check=True)
        shutil.rmtree(target, ignore_errors=True)
        extracted.rename(target)
    return target


def _download(package: str, folder: str) -> subprocess.CompletedProcess:
    return subprocess.run(["apt-get", "download", package], cwd=folder, capture_output=True, text=True, check=False)
