"""The speech models' files on disk: what a finished CAM++ install is, which files a GigaAM folder holds.

One answer for the installer (`kazru.dev.model_install`: `make model`, the Dockerfile) and for the
transcriber, which refuses to start on a missing or partial install. CAM++: the weights file named by the
committed manifest, the marker holding its sha256 (written last), and the committed graph itself.
GigaAM-Multilingual: the three files onnx-asr 0.12 loads from a local folder.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

CAMPPLUS_GRAPH = "campplus.onnx"
CAMPPLUS_MANIFEST = "campplus.weights.json"
CAMPPLUS_MARKER = "campplus.onnx.data.sha256"


def campplus_assets() -> tuple[bytes, dict[str, Any]]:
    """The committed graph and the manifest of its external weights (services/transcriber/assets)."""
    assets = resources.files("services.transcriber") / "assets"
    return (assets / CAMPPLUS_GRAPH).read_bytes(), json.loads((assets / CAMPPLUS_MANIFEST).read_text())


def is_campplus_installed(target: Path) -> bool:
    graph, manifest = campplus_assets()
    marker = target / CAMPPLUS_MARKER
    installed_graph = target / CAMPPLUS_GRAPH
    return (
        marker.is_file()
        and marker.read_text().strip() == manifest["sha256"]
        and (target / manifest["weights_file"]).is_file()
        and installed_graph.is_file()
        and installed_graph.read_bytes() == graph
    )


# onnx-asr finds the graph with the glob `multilingual*_ctc{.quantization}.onnx`, which matches both sizes:
# each size keeps its own folder.
GIGAAM_MODEL_STEMS = {
    "gigaam-multilingual-ctc": "multilingual_ctc",
    "gigaam-multilingual-large-ctc": "multilingual_large_ctc",
}
GIGAAM_VOCABULARY = "multilingual_vocab.txt"
GIGAAM_CONFIG = "config.json"


def gigaam_model_files(model: str, quantization: str) -> list[str]:
    """The files a GigaAM-Multilingual folder must hold for `onnx_asr.load_model(model, folder, quantization)`."""
    if model not in GIGAAM_MODEL_STEMS:
        raise ValueError(f"unknown GigaAM model {model!r}: one of {sorted(GIGAAM_MODEL_STEMS)}")
    suffix = f".{quantization}" if quantization else ""
    return [f"{GIGAAM_MODEL_STEMS[model]}{suffix}.onnx", GIGAAM_VOCABULARY, GIGAAM_CONFIG]


def missing_gigaam_files(folder: Path, model: str, quantization: str) -> list[str]:
    """Those of gigaam_model_files that `folder` lacks or holds empty (an interrupted copy)."""
    return [
        name
        for name in gigaam_model_files(model, quantization)
        if not (folder / name).is_file() or (folder / name).stat().st_size == 0
    ]
