"""Speaker embeddings with resemblyzer's pretrained GE2E encoder, in numpy alone.

The weights and the mel filterbank were taken once from the `resemblyzer==0.1.4`
wheel by scripts/convert_ge2e.py (see README.md here), so the benchmark needs
neither torch nor librosa. The arithmetic follows resemblyzer step by step:
a power (not log) 40-band mel spectrogram, 25 ms windows every 10 ms, centred
frames with zero padding (librosa >= 0.10's default); a 3-layer LSTM whose last
hidden state goes through linear + ReLU and is L2-normalised.

The diarizer (the accuracy benchmark's `ge2e_diarizer`) calls `embed_windows`: the mel spectrogram of the whole recording is
computed once and sliced per window, and the windows go through the LSTM
together, one matrix product per time step for the whole batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kazru.adapters.audio import Recording

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # not a runtime dependency; OPENBLAS_NUM_THREADS=1 in the environment has the same effect
    threadpool_limits = None

SAMPLE_RATE = 16_000
FFT_SIZE = 400  # 25 ms
FRAME_STEP = 160  # 10 ms
FRAMES_PER_SECOND = SAMPLE_RATE // FRAME_STEP
PARTIAL_FRAMES = 160  # resemblyzer's partial utterance: 1.6 s
EMBEDDING_SIZE = 256
DEFAULT_ASSET = Path(__file__).resolve().parent / "ge2e.npz"

# Frames of the STFT computed at a time, so a long recording never holds all of them at once.
_STFT_BLOCK_FRAMES = 8192
# Batch size × time steps run through the LSTM at a time: bounds the gate buffers to ~100 MB.
_LSTM_BLOCK_STEPS = 24_576


def normalize_volume(wav: np.ndarray, target_dbfs: float = -30.0, increase_only: bool = True) -> np.ndarray:
    """Scale to `target_dbfs` RMS, as resemblyzer's preprocessing does (the model was trained on such audio)."""
    wav = np.asarray(wav, dtype=np.float32)
    int16_max = 2**15 - 1
    rms = float(np.sqrt(np.mean((wav.astype(np.float64) * int16_max) ** 2))) if wav.size else 0.0
    if rms == 0.0:
        return wav
    change_db = target_dbfs - 20 * np.log10(rms / int16_max)
    if change_db < 0 and increase_only:
        return wav
    return (wav * (10 ** (change_db / 20))).astype(np.float32)


def partial_slices(n_samples: int, rate: float = 1.3, min_coverage: float = 0.75) -> list[slice]:
    """Mel-frame slices of the partial utterances `embed_utterance` averages (resemblyzer's rule)."""
    if not 0 < min_coverage <= 1:
        raise ValueError("min_coverage must be in (0, 1]")
    n_frames = int(np.ceil((n_samples + 1) / FRAME_STEP))
    frame_step = int(np.round((SAMPLE_RATE / rate) / FRAME_STEP))
    if not 0 < frame_step <= PARTIAL_FRAMES:
        raise ValueError(f"rate {rate} puts partials {frame_step} frames apart; allowed 1..{PARTIAL_FRAMES}")
    steps = max(1, n_frames - PARTIAL_FRAMES + frame_step + 1)
    slices = [slice(start, start + PARTIAL_FRAMES) for start in range(0, steps, frame_step)]
    last = slices[-1]
    coverage = (n_samples - last.start * FRAME_STEP) / (PARTIAL_FRAMES * FRAME_STEP)
    if coverage < min_coverage and len(slices) > 1:
        slices.pop()
    return slices


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """The LSTM's per-step products are small: OpenBLAS threads only spin and fight the
    recogniser for the cores (measured 2-7x slower with 2 threads on a busy 2-core machine)."""
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _sigmoid_inplace(values: np.ndarray) -> None:
    # 1/(1+exp(-x)) written with tanh: no overflow warnings for large |x|.
    values *= 0.5
    np.tanh(values, out=values)
    values *= 0.5
    values += 0.5


@dataclass(frozen=True)
class _LstmLayer:
    input_weights: np.ndarray  # (inputs, 4H), gate columns ordered i, f, o, g
    recurrent_weights: np.ndarray  # (H, 4H), same order
    bias: np.ndarray  # (4H,), input and recurrent biases summed


class VoiceEncoder:
    """resemblyzer.VoiceEncoder's forward pass and embedding helpers, without torch."""

    def __init__(
        self,
        layers: Sequence[_LstmLayer],
        linear_weights: np.ndarray,
        linear_bias: np.ndarray,
        mel_filterbank: np.ndarray,
    ) -> None:
        self._layers = tuple(layers)
        self._hidden = self._layers[0].recurrent_weights.shape[0]
        self._linear_weights = linear_weights  # (H, E)
        self._linear_bias = linear_bias
        self._mel_filterbank_t = np.ascontiguousarray(mel_filterbank.T)  # (FFT bins, mels)
        # librosa's default window: periodic Hann over the whole FFT.
        self._window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FFT_SIZE) / FFT_SIZE)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_ASSET) -> VoiceEncoder:
        """Read the weights written by scripts/convert_ge2e.py."""
        with np.load(path) as asset:
            n_layers = int(asset["num_layers"])
            layers = []
            for index in range(n_layers):
                layers.append(
                    _LstmLayer(
                        input_weights=cls._gates_ifog(asset[f"lstm_weight_ih_l{index}"].T),
                        recurrent_weights=cls._gates_ifog(asset[f"lstm_weight_hh_l{index}"].T),
                        bias=cls._gates_ifog(asset[f"lstm_bias_ih_l{index}"] + asset[f"lstm_bias_hh_l{index}"]),
                    )
                )
            return cls(
                layers,
                linear_weights=np.ascontiguousarray(asset["linear_weight"].T, dtype=np.float32),
                linear_bias=asset["linear_bias"].astype(np.float32),
                mel_filterbank=asset["mel_filterbank"].astype(np.float32),
            )

    @staticmethod
    def _gates_ifog(weights: np.ndarray) -> np.ndarray:
        """Reorder torch's i, f, g, o gate columns to i, f, o, g: the three sigmoid gates become one slice."""
        i, f, g, o = np.split(weights, 4, axis=-1)
        return np.ascontiguousarray(np.concatenate([i, f, o, g], axis=-1), dtype=np.float32)

    # -- features -------------------------------------------------------------------------------

    def mel_frames(self, wav: np.ndarray) -> np.ndarray:
        """(T, 40) float32 power mel spectrogram of 16 kHz audio, T = 1 + len(wav) // 160."""
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise ValueError("wav must be one channel: a 1-D array")
        half = FFT_SIZE // 2
        padded = np.pad(wav, (half, half))
        n_frames = 1 + len(wav) // FRAME_STEP
        frames = np.lib.stride_tricks.sliding_window_view(padded, FFT_SIZE)[::FRAME_STEP][:n_frames]
        mel = np.empty((n_frames, self._mel_filterbank_t.shape[1]), dtype=np.float32)
        for start in range(0, n_frames, _STFT_BLOCK_FRAMES):
            block = frames[start : start + _STFT_BLOCK_FRAMES]
            # Float64 FFT cast to complex64, as librosa's stft does for float32 input.
            spectrum = np.fft.rfft(block * self._window, axis=-1).astype(np.complex64)
            power = spectrum.real**2 + spectrum.imag**2
            np.matmul(power, self._mel_filterbank_t, out=mel[start : start + len(block)])
        return mel

    # -- network --------------------------------------------------------------------------------

    def embed_frames_batch(self, mels: np.ndarray) -> np.ndarray:
        """(B, T, 40) mel frames -> (B, 256) L2-normalised embeddings (resemblyzer's `forward`)."""
        mels = np.asarray(mels, dtype=np.float32)
        if mels.ndim != 3 or mels.shape[1] == 0:
            raise ValueError("mels must be (batch, frames >= 1, mel bands)")
        batch, n_frames, _ = mels.shape
        lengths = np.full(batch, n_frames)
        with _single_threaded_blas():
            return self._embed_padded(np.ascontiguousarray(mels.transpose(1, 0, 2)), lengths)

    def _embed_padded(self, time_major: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(T, B, 40) frames, each sequence valid up to its length -> (B, 256) embeddings.

        An LSTM's state at step t depends only on steps <= t, so sequences of different lengths
        share one padded batch: each one's final state is read at its own last step.
        """
        hidden = self._hidden
        n_steps, batch, _ = time_major.shape
        sequence = time_major
        last_hidden = np.empty((batch, hidden), dtype=np.float32)
        ends_at = [np.flatnonzero(lengths == step + 1) for step in range(n_steps)]
        for depth, layer in enumerate(self._layers):
            is_last_layer = depth == len(self._layers) - 1
            # Input contributions of every step at once: one large matrix product per layer.
            input_gates = np.matmul(sequence.reshape(n_steps * batch, -1), layer.input_weights)
            input_gates += layer.bias
            input_gates = input_gates.reshape(n_steps, batch, 4 * hidden)
            outputs = None if is_last_layer else np.empty((n_steps, batch, hidden), dtype=np.float32)
            h = np.zeros((batch, hidden), dtype=np.float32)
            c = np.zeros((batch, hidden), dtype=np.float32)
            gates = np.empty((batch, 4 * hidden), dtype=np.float32)
            scratch = np.empty((batch, hidden), dtype=np.float32)
            for step in range(n_steps):
                np.matmul(h, layer.recurrent_weights, out=gates)
                gates += input_gates[step]
                _sigmoid_inplace(gates[:, : 3 * hidden])
                input_gate = gates[:, :hidden]
                forget_gate = gates[:, hidden : 2 * hidden]
                output_gate = gates[:, 2 * hidden : 3 * hidden]
                candidate = gates[:, 3 * hidden :]
                np.tanh(candidate, out=candidate)
                c *= forget_gate
                np.multiply(input_gate, candidate, out=scratch)
                c += scratch
                np.tanh(c, out=scratch)
                np.multiply(output_gate, scratch, out=h)
                if outputs is not None:
                    outputs[step] = h
                elif len(ends_at[step]):
                    last_hidden[ends_at[step]] = h[ends_at[step]]
            if outputs is not None:
                sequence = outputs
        raw = np.matmul(last_hidden, self._linear_weights)
        raw += self._linear_bias
        np.maximum(raw, 0, out=raw)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return raw / np.maximum(norms, np.finfo(np.float32).tiny)

    # -- embeddings -----------------------------------------------------------------------------

    def embed_utterance(
        self, wav: np.ndarray, rate: float = 1.3, min_coverage: float = 0.75, return_partials: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """One embedding for a whole utterance: the L2-normalised mean of its 1.6 s partials (resemblyzer's rule).

        With `return_partials`, also the (n, 256) partial embeddings.
        """
        wav = np.asarray(wav, dtype=np.float32)
        slices = partial_slices(len(wav), rate, min_coverage)
        needed = slices[-1].stop * FRAME_STEP
        if needed >= len(wav):
            wav = np.pad(wav, (0, needed - len(wav)))
        mel = self.mel_frames(wav)
        partials = self.embed_frames_batch(np.stack([mel[s] for s in slices]))
        mean = partials.mean(axis=0)
        embedding = mean / np.linalg.norm(mean)
        return (embedding, partials) if return_partials else embedding

    def embed_windows(self, wav: np.ndarray | Recording, windows: Sequence[tuple[float, float]]) -> np.ndarray:
        """(N, 256) embeddings of the windows (start, end in seconds) of one recording.

        A window covers mel frames round(start * 100) up to round(end * 100), cut at the end of
        the audio; each embedding equals `embed_frames_batch` of exactly those frames.
        """
        if not windows:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        if isinstance(wav, Recording):  # the previous diarizer's encoder, kept for short benchmark clips
            wav = wav.read(0, wav.sample_count)
        mel = self.mel_frames(wav)
        bounds = np.rint(np.asarray(windows, dtype=np.float64) * FRAMES_PER_SECOND).astype(np.int64)
        starts = np.clip(bounds[:, 0], 0, len(mel))
        stops = np.clip(bounds[:, 1], 0, len(mel))
        lengths = stops - starts
        if (lengths <= 0).any():
            bad = int(np.flatnonzero(lengths <= 0)[0])
            audio_seconds = (len(mel) - 1) / FRAMES_PER_SECOND
            raise ValueError(f"window {windows[bad]} holds no audio frames (the audio lasts {audio_seconds:.2f} s)")
        embeddings = np.empty((len(windows), EMBEDDING_SIZE), dtype=np.float32)
        # Longest first, so each block pads its windows to similar lengths.
        order = np.argsort(-lengths, kind="stable")
        position = 0
        with _single_threaded_blas():
            while position < len(order):
                block_steps = int(lengths[order[position]])
                block_size = max(1, _LSTM_BLOCK_STEPS // block_steps)
                block = order[position : position + block_size]
                frame_index = starts[block][None, :] + np.arange(block_steps)[:, None]  # (T, B)
                valid = frame_index < stops[block][None, :]
                time_major = mel[np.minimum(frame_index, len(mel) - 1)]
                time_major[~valid] = 0.0  # beyond a window's end: padding whose outputs are never read
                embeddings[block] = self._embed_padded(time_major, lengths[block])
                position += len(block)
        return embeddings
