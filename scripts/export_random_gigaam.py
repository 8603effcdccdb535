"""Build GigaAM-Multilingual CTC at its real size with random weights, export it as onnx-asr expects
the real one, and quantize it to int8: a model folder that costs the CPU what the real model costs.

Run by a developer, not by the build (the real weights cannot be downloaded here; speed and memory
do not depend on the weights):

    .venv/bin/python scripts/export_random_gigaam.py OUT_FOLDER [--model gigaam-multilingual-large-ctc]
        [--venv /tmp/kazru-gigaam-export] [--gigaam 'gigaam @ git+https://github.com/salute-developers/GigaAM@8555893']

1. In a throwaway virtual environment (never the project's .venv) with torch (CPU wheel), onnx,
   onnxruntime and GigaAM's own code (installed without its dependencies: only its Conformer encoder
   and CTC head are used, which need torch alone), the script runs itself again and
   - builds `gigaam.encoder.ConformerEncoder` + `gigaam.decoder.CTCHead` with the multilingual
     geometry below, random weights (torch's default initialisation), in eval mode;
   - exports it the way GigaAM exports its CTC models (`GigaAMASR._to_onnx`: TorchScript exporter,
     opset 17, inputs `features` [batch, 64, seq_len] and `feature_lengths` [batch], outputs
     `log_probs` [batch, seq_len/4, 71] and `encoded_lengths` [batch], the same dynamic axes);
   - quantizes it with onnxruntime.quantization.quantize_dynamic (int8 weights, as istupakov's
     `*.int8.onnx` files are) to `multilingual[_large]_ctc.int8.onnx`;
   - prints the parameter count and file sizes as JSON.
2. With the project's Python: writes `multilingual_vocab.txt` and `config.json` (the same as the test
   model, tests/fakes/gigaam_model.py) and checks that onnx-asr loads the folder and decodes audio.

The geometry. GigaAM's configs travel inside its checkpoints (and the multilingual ones on the model
hub), which cannot be fetched here. `ConformerEncoder`'s own defaults in salute-developers/GigaAM
(gigaam/encoder.py at commit 8555893) are the v3 base geometry: 64 mel features in, 16 layers,
d_model 768, 16 heads, feed-forward x4, rotary attention; GigaAM v3's checkpoints set conv1d
subsampling by 4 with kernel 5, a convolution kernel of 5 and layer norm in the convolution module
(the values independent ports of GigaAM v3 load its checkpoints with, e.g. the candle and morok
ports). The large multilingual model is the same with d_model 1024 and 24 layers. Counted here:
~220 M and ~585 M parameters, the sizes the model card gives (220M / 600M).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from converter_steps import inner_step_argument, make_throwaway_venv

REPO = Path(__file__).resolve().parent.parent
GIGAAM_SOURCE = "gigaam @ git+https://github.com/salute-developers/GigaAM@85558932f047bf80d03f2b2e9dc2584c26e8bda6"
TORCH = "torch==2.13.0+cpu"
INNER_OPTION = "--inner-export"

GEOMETRY = {
    "gigaam-multilingual-ctc": {"d_model": 768, "n_layers": 16},
    "gigaam-multilingual-large-ctc": {"d_model": 1024, "n_layers": 24},
}
COMMON = {
    "feat_in": 64,
    "n_heads": 16,
    "subsampling": "conv1d",
    "subs_kernel_size": 5,
    "subsampling_factor": 4,
    "ff_expansion_factor": 4,
    "self_attention_model": "rotary",
    "pos_emb_max_len": 5000,
    "conv_norm_type": "layer_norm",
    "conv_kernel_size": 5,
}
CLASSES = 71  # 70 symbols + blank (tests/fakes/gigaam_model.py VOCABULARY)


def import_gigaam_network():
    """GigaAM's encoder and CTC head without its package `__init__` (which loads the whole toolkit:
    hydra, sentencepiece, tqdm) and with placeholders for the audio I/O libraries gigaam/utils.py
    imports at its top for functions the encoder never calls (torchaudio, soundfile)."""
    import importlib.util

    spec = importlib.util.find_spec("gigaam")
    package = types.ModuleType("gigaam")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["gigaam"] = package
    for name in ("torchaudio", "soundfile"):
        sys.modules.setdefault(name, types.ModuleType(name))
    from gigaam.decoder import CTCHead
    from gigaam.encoder import ConformerEncoder

    return ConformerEncoder, CTCHead


def export(inner: Path) -> None:
    """Inside the torch environment: build, export, quantize into `inner`/model.json's folder."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    job = json.loads(inner.read_text())
    folder, model_name = Path(job["folder"]), job["model"]
    ConformerEncoder, CTCHead = import_gigaam_network()

    class ExportedCtc(torch.nn.Module):
        """GigaAMASR.forward_for_export: encoder then CTC head, lengths passed through."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = ConformerEncoder(**COMMON, **GEOMETRY[model_name])
            self.head = CTCHead(GEOMETRY[model_name]["d_model"], CLASSES)

        def forward(self, features, feature_lengths):
            encoded, encoded_lengths = self.encoder(features, feature_lengths)
            return self.head(encoded), encoded_lengths

    torch.manual_seed(23)
    network = ExportedCtc().eval()
    parameters = sum(p.numel() for p in network.parameters())
    stem = {"gigaam-multilingual-ctc": "multilingual_ctc", "gigaam-multilingual-large-ctc": "multilingual_large_ctc"}
    full = Path(tempfile.mkdtemp(dir=folder)) / f"{stem[model_name]}.onnx"
    started = time.monotonic()
    export_mode = getattr(network.encoder, "onnx_export_mode", None)
    with torch.no_grad(), (export_mode() if export_mode else torch.no_grad()):
        torch.onnx.export(
            network,
            network.encoder.input_example(batch_size=2, seqlen=200),
            str(full),
            input_names=["features", "feature_lengths"],
            output_names=["log_probs", "encoded_lengths"],
            dynamic_axes={
                "features": {0: "batch_size", 2: "seq_len"},
                "feature_lengths": {0: "batch_size"},
                "log_probs": {0: "batch_size", 1: "seq_len"},
                "encoded_lengths": {0: "batch_size"},
            },
            opset_version=17,
            dynamo=False,
            external_data=parameters * 4 > 1.8e9,  # protobuf's 2 GB limit: the large model's fp32 weights
        )
    exported = time.monotonic() - started
    quantized = folder / f"{stem[model_name]}.int8.onnx"
    quantize_dynamic(full, quantized, weight_type=QuantType.QInt8)  # defaults: weights of MatMul/Conv/Gather
    full_bytes = sum(path.stat().st_size for path in full.parent.iterdir())
    for path in full.parent.iterdir():
        path.unlink()
    full.parent.rmdir()
    print(json.dumps({
        "model": model_name,
        "parameters": parameters,
        "geometry": {**COMMON, **GEOMETRY[model_name], "classes": CLASSES},
        "fp32_onnx_bytes": full_bytes,
        "int8_onnx_bytes": quantized.stat().st_size,
        "int8_file": quantized.name,
        "export_seconds": round(exported, 1),
        "torch": torch.__version__,
    }))


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", choices=sorted(GEOMETRY), default="gigaam-multilingual-ctc")
    parser.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "kazru-gigaam-export")
    parser.add_argument("--gigaam", default=GIGAAM_SOURCE, help="pip requirement for GigaAM's code")
    args = parser.parse_args()

    python = make_throwaway_venv(args.venv, [TORCH, "onnx==1.23.2", "onnxruntime==1.32.0", "numpy"])
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", args.gigaam], check=True)
    args.folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as job:
        json.dump({"folder": str(args.folder.resolve()), "model": args.model}, job)
    report = subprocess.run([str(python), __file__, INNER_OPTION, job.name], check=True, capture_output=True,
                            text=True).stdout
    Path(job.name).unlink()
    figures = json.loads(report.strip().splitlines()[-1])

    sys.path.insert(0, str(REPO))
    import numpy as np
    import onnx_asr

    from tests.fakes.gigaam_model import write_vocabulary_and_config

    write_vocabulary_and_config(args.folder)
    model = onnx_asr.load_model(args.model, args.folder, quantization="int8")
    noise = np.random.default_rng(0).normal(0, 0.1, 16000 * 3).astype(np.float32)
    figures["decodes"] = isinstance(model.recognize(noise), str)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    if INNER_OPTION in sys.argv:
        export(inner_step_argument(__doc__, INNER_OPTION))
    else:
        main()
