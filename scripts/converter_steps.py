"""What the model converter scripts (convert_campplus.py, convert_ge2e.py) share. Each runs in two
places: the project's Python, and a throwaway virtual environment under /tmp (never the project's
.venv) with torch and the original model's packages, where the script runs itself again with a hidden
option. Standard library only: both Pythons import this."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def inner_step_argument(description: str, option: str) -> Path | None:
    """Parse the command line: the path given with the hidden `option` when the script runs as the step
    inside the throwaway environment, None when a developer runs it."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(option, type=Path, dest="inner", help=argparse.SUPPRESS)  # the step inside the throwaway venv
    return parser.parse_args().inner


def make_throwaway_venv(directory: Path, packages: Sequence[str]) -> Path:
    """The environment in `directory` (made once, then reused) with `packages` installed; its python."""
    python = directory / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], check=True)
    return python


def run_inner_step(python: Path, script: str, option: str, path: Path) -> None:
    """Run `script` again with the throwaway environment's `python`, as its inner step on `path`."""
    subprocess.run([str(python), script, option, str(path)], check=True)
