"""`python -m kazru.dev.model_install --engine gigaam`: the installer run as a person runs it. Without the model
hub it fails at once, naming the folder and the files to put there; a complete folder is taken as it is, with
no network, and is one onnx-asr loads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx_asr
import pytest
from onnx_asr.resolver import model_repos

from kazru.adapters import model_files
from kazru.dev.model_install import GIGAAM_REPOSITORIES, gigaam_folder_problems
from tests.fakes.gigaam_model import PlannedWord, build_gigaam_model

REPO = Path(__file__).resolve().parents[2]
MODEL = "gigaam-multilingual-ctc"
FILES = ["multilingual_ctc.int8.onnx", "multilingual_vocab.txt", "config.json"]
AUDIO = np.random.default_rng(23).normal(0, 0.1, 16_000 * 2).astype(np.float32)


def closed_port() -> int:
    """A local port nothing listens on: connecting is refused at once, as from a machine without the hub."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_hub() -> Iterator[str]:
    """A hub address that accepts connections and never answers (a firewall that drops, a dead proxy)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def run_installer(folder: Path, *arguments: str, hub: str, offline: bool = False) -> tuple[int, str, float]:
    """(exit status, stderr, seconds) of the installer for `folder`. Whisper base and CAM++ come from the
    shared data dir, installed by `make model` before any test runs, so only the GigaAM part does work."""
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KAZRU_ENGINE": "gigaam",
        "KAZRU_GIGAAM_MODEL_DIR": str(folder),
        "HF_ENDPOINT": hub,
        "HF_HUB_OFFLINE": "1" if offline else "0",
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "kazru.dev.model_install", *arguments],
        env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return result.returncode, result.stderr, time.monotonic() - started


@pytest.fixture(scope="module")
def complete_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as the hub's repository would leave it: the test model writes one planned word."""
    folder = tmp_path_factory.mktemp("models") / MODEL
    return build_gigaam_model(folder, [PlannedWord("сәлем", 0.5, 1.0)], audio=AUDIO)


def assert_names_folder_and_files(message: str, folder: Path) -> None:
    assert str(folder) in message
    for name in FILES:
        assert name in message, name


def test_without_the_hub_an_empty_folder_fails_at_once_naming_the_folder_and_the_files(tmp_path):
    folder = tmp_path / "models" / MODEL
    status, message, seconds = run_installer(folder, "--engine", "gigaam", hub=f"http://127.0.0.1:{closed_port()}")
    assert status != 0
    assert seconds < 10, seconds
    assert message.startswith("error: GigaAM model gigaam-multilingual-ctc (int8) is not in")
    assert_names_folder_and_files(message, folder)
    assert "Traceback" not in message
    # Nothing half-made is left where the transcriber would look.
    assert not folder.exists() or not any(folder.iterdir())


def test_offline_mode_fails_just_as_fast_with_the_same_instructions(tmp_path):
    folder = tmp_path / MODEL
    status, message, seconds = run_installer(folder, hub="http://127.0.0.1:9", offline=True)
    assert status != 0 and seconds < 10, (status, seconds)
    assert "offline mode is enabled" in message
    assert_names_folder_and_files(message, folder)


def test_a_hub_that_never_answers_is_given_up_after_the_timeout(tmp_path, silent_hub):
    status, message, seconds = run_installer(tmp_path / MODEL, "--timeout", "1", hub=silent_hub)
    assert status != 0
    assert seconds < 8, seconds  # one short wait, no retries with back-off
    assert "timed out" in message
    assert_names_folder_and_files(message, tmp_path / MODEL)


def test_a_complete_folder_is_accepted_without_network_and_onnx_asr_loads_it(complete_folder):
    before = {path.name: path.stat().st_mtime_ns for path in complete_folder.iterdir()}
    for arguments in (["--engine", "gigaam"], ["--check"]):
        status, message, _ = run_installer(
            complete_folder, *arguments, hub=f"http://127.0.0.1:{closed_port()}", offline=True
        )
        assert status == 0, message
        assert f"GigaAM model ready: {complete_folder} (gigaam-multilingual-ctc, int8)" in message
    assert {path.name: path.stat().st_mtime_ns for path in complete_folder.iterdir()} == before  # untouched
    assert sorted(before) == sorted(FILES)
    model = onnx_asr.load_model(MODEL, complete_folder, quantization="int8")
    assert model.recognize(AUDIO) == "сәлем"


def test_check_names_an_emptied_file_and_never_reaches_for_the_hub(complete_folder, tmp_path, silent_hub):
    partial = tmp_path / MODEL
    partial.mkdir()
    for path in complete_folder.iterdir():
        (partial / path.name).write_bytes(b"" if path.suffix == ".onnx" else path.read_bytes())
    status, message, seconds = run_installer(partial, "--check", hub=silent_hub)
    assert status != 0 and seconds < 5, (status, seconds)  # the silent hub would have held it for 10 s
    assert "multilingual_ctc.int8.onnx is missing or empty" in message
    assert "multilingual_vocab.txt is missing" not in message


def test_a_folder_onnx_asr_would_misread_is_not_complete(complete_folder, tmp_path):
    folder = tmp_path / MODEL
    folder.mkdir()
    for path in complete_folder.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    assert gigaam_folder_problems(folder, MODEL, "int8") == []
    # Without version v3, onnx-asr computes GigaAM v2's features without a word of warning.
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "version": "v2"}))
    assert gigaam_folder_problems(folder, MODEL, "int8") == [
        'config.json must say "model_type": "gigaam" and "version": "v3"'
    ]
    (folder / "config.json").write_text(json.dumps(config))
    # Both sizes in one folder: onnx-asr's one glob matches two graphs and it refuses to choose.
    (folder / "multilingual_large_ctc.int8.onnx").write_bytes(b"x")
    (problem,) = gigaam_folder_problems(folder, MODEL, "int8")
    assert "multilingual_ctc.int8.onnx, multilingual_large_ctc.int8.onnx" in problem
    # Full precision is another file name.
    assert gigaam_folder_problems(folder, MODEL, "") == ["multilingual_ctc.onnx is missing or empty"]


def test_the_files_and_repositories_are_those_onnx_asr_uses():
    assert {model: model_repos[model] for model in GIGAAM_REPOSITORIES} == GIGAAM_REPOSITORIES
    assert model_files.gigaam_model_files("gigaam-multilingual-large-ctc", "int8") == [
        "multilingual_large_ctc.int8.onnx", "multilingual_vocab.txt", "config.json",
    ]  # fmt: skip
