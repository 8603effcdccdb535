"""Convert resemblyzer's GE2E speaker encoder to numpy, once, and record torch reference outputs.

Run by a developer, not by the build:   .venv/bin/python scripts/convert_ge2e.py

1. With the project's Python, decodes the fixture clips to 16 kHz mono with our ffmpeg
   (kazru.adapters.audio.decode_pcm16k), so the reference is computed on exactly the samples the
   test later feeds to the numpy encoder.
2. Creates a throwaway virtual environment under /tmp (never the project's .venv) with
   torch (the CPU wheel in /opt/wheels), resemblyzer==0.1.4 and its needs (librosa,
   webrtcvad; setuptools<81 because webrtcvad imports pkg_resources).
3. Inside that environment, loads resemblyzer's VoiceEncoder and writes
   - bench/ge2e/ge2e.npz: float32 LSTM and linear weights (torch's layout
     and names) and the 40-band mel filterbank exactly as librosa builds it for resemblyzer;
   - tests/fixtures/ge2e_reference.npz: the decoded clips (int16) and resemblyzer's own
     mel spectrograms, partial embeddings and utterance embeddings of them
     (also of a quieter copy after resemblyzer's volume normalisation).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from converter_steps import inner_step_argument, make_throwaway_venv, run_inner_step

REPO = Path(__file__).resolve().parent.parent
ASSET = REPO / "bench" / "ge2e" / "ge2e.npz"
REFERENCE = REPO / "tests" / "fixtures" / "ge2e_reference.npz"
FIXTURES = ("ru_weather_m3", "ru_weather_f3", "kk_city_f3")
THROWAWAY_VENV = Path(tempfile.gettempdir()) / "kazru-ge2e-convert-venv"
QUIET_GAIN = 0.02  # stored in the reference as quiet_gain for the test
REQUIREMENTS = ("torch==2.13.0", "resemblyzer==0.1.4", "setuptools<81")


def decode_fixtures(destination: Path) -> None:
    import numpy as np

    sys.path.insert(0, str(REPO))
    from kazru.adapters.audio import decode_pcm16k

    clips = {}
    for name in FIXTURES:
        wav = asyncio.run(decode_pcm16k(str(REPO / "tests" / "fixtures" / "audio" / f"{name}.flac")))
        # decode_pcm16k divides s16le samples by 32768, so this recovers them exactly.
        clips[name] = np.round(wav * 32768).astype(np.int16)
    np.savez(destination, **clips)


def convert(clips_path: Path) -> None:
    """Runs inside the throwaway environment: the only place torch, librosa and resemblyzer exist."""
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)

    from importlib.metadata import version

    import librosa
    import numpy as np
    import resemblyzer
    import torch
    from resemblyzer import VoiceEncoder, audio, hparams

    encoder = VoiceEncoder("cpu", verbose=False)
    checkpoint = torch.load(Path(resemblyzer.__file__).parent / "pretrained.pt", map_location="cpu")
    state = checkpoint["model_state"]
    weights = {
        key.replace(".", "_"): value.numpy().astype(np.float32)
        for key, value in state.items()
        if key.startswith(("lstm.", "linear."))
    }
    n_fft = int(hparams.sampling_rate * hparams.mel_window_length / 1000)
    # The same call librosa.feature.melspectrogram makes inside resemblyzer's wav_to_mel_spectrogram.
    mel_filterbank = librosa.filters.mel(sr=hparams.sampling_rate, n_fft=n_fft, n_mels=hparams.mel_n_channels)
    provenance = {
        "source": np.array("resemblyzer==0.1.4 resemblyzer/pretrained.pt (Apache-2.0)"),
        "converted_with": np.array(
            f"torch {torch.__version__}, librosa {librosa.__version__}, resemblyzer {version('resemblyzer')}"
        ),
    }
    ASSET.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        ASSET,
        **weights,
        mel_filterbank=mel_filterbank.astype(np.float32),
        num_layers=np.array(hparams.model_num_layers),
        **provenance,
    )

    reference = dict(provenance, quiet_gain=np.array(QUIET_GAIN, dtype=np.float32))
    with np.load(clips_path) as clips:
        for name in FIXTURES:
            pcm = clips[name]
            wav = pcm.astype(np.float32) / 32768.0
            embedding, partials, _ = encoder.embed_utterance(wav, return_partials=True)
            # Espeak clips are already louder than -30 dBFS, which normalize_volume leaves alone:
            # a quieter copy exercises the scaling the model was trained with.
            quiet = wav * np.float32(QUIET_GAIN)
            normalized = audio.normalize_volume(quiet, hparams.audio_norm_target_dBFS, increase_only=True)
            reference[f"pcm_{name}"] = pcm
            reference[f"mel_{name}"] = audio.wav_to_mel_spectrogram(wav)
            reference[f"embedding_{name}"] = embedding.astype(np.float32)
            reference[f"partials_{name}"] = partials.astype(np.float32)
            reference[f"quiet_normalized_embedding_{name}"] = encoder.embed_utterance(normalized).astype(np.float32)
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(REFERENCE, **reference)
    print(f"wrote {ASSET} ({ASSET.stat().st_size} bytes) and {REFERENCE} ({REFERENCE.stat().st_size} bytes)")


def main() -> None:
    inner = inner_step_argument(__doc__, "--convert-clips")
    if inner:
        convert(inner)
        return
    with tempfile.TemporaryDirectory() as scratch:
        clips = Path(scratch) / "clips.npz"
        decode_fixtures(clips)
        python = make_throwaway_venv(THROWAWAY_VENV, REQUIREMENTS)
        run_inner_step(python, __file__, "--convert-clips", clips)


if __name__ == "__main__":
    main()
