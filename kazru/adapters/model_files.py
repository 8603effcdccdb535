"""The speech models' files on disk: what a finished CAM++ install is.

One answer for the installer (`kazru.dev.model_install`: `make model`, the Dockerfile) and for the
transcriber, which refuses to start on a missing or partial install: the weights file named by the
committed manifest, the marker holding its sha256 (written last), and the committed graph itself.
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
