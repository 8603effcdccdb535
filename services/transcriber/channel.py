"""What a recording's channel does to voices, measured on the recording itself.

Two people on an 8 kHz telephone line sound more alike to the speaker encoder than they do face to face (the band
above 4 kHz, where much of what tells voices apart lives, is gone); one voice in loud background noise sounds less
like itself from window to window. So the diarizer's speakers are cut at a similarity that depends on the channel
(ClusteringLimits.for_channel), and the channel is measured here, from the audio and the speech regions alone:

- `high_band_share`: the share of the speech's spectral energy (above 300 Hz) that lies above 4 kHz. A telephone
  band leaves none (0.0000 on every telephone conversation of bench/diarization, at least 0.0003 on every other).
- `speech_to_pause_db`: the median energy of 32 ms frames inside speech over the median of frames inside pauses,
  in dB: background noise at 5-20 dB SNR reads 2-20 dB, clean and reverberant rooms 12-62 dB.

The recording is read in blocks of about 30 s; what is kept is one energy per frame (0.9 MB per hour) and one
spectrum sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kazru.adapters.audio import SAMPLE_RATE, Recording, as_recording
from kazru.domain.recognition import SpeechRegion

FRAME_SAMPLES = 512
BLOCK_FRAMES = 938  # ~30 s
HIGH_BAND_HZ = 4000.0
LOW_CUT_HZ = 300.0
# Fewer pause frames than this (0.3 s) say nothing about the noise: the channel is taken as quiet.
MIN_PAUSE_FRAMES = 10
_WINDOW = np.hanning(FRAME_SAMPLES)
_FREQUENCIES = np.fft.rfftfreq(FRAME_SAMPLES, 1 / SAMPLE_RATE)


@dataclass(frozen=True)
class Channel:
    high_band_share: float
    # None: too little pause to tell.
    speech_to_pause_db: float | None


def measure_channel(audio: np.ndarray | Recording, speech: Sequence[SpeechRegion]) -> Channel:
    recording = as_recording(audio)
    spectrum = np.zeros(len(_FREQUENCIES))
    speech_energies: list[np.ndarray] = []
    pause_energies: list[np.ndarray] = []
    block = FRAME_SAMPLES * BLOCK_FRAMES
    whole_frames = recording.sample_count // FRAME_SAMPLES
    for first in range(0, whole_frames * FRAME_SAMPLES, block):
        samples = recording.read(first, min(first + block, whole_frames * FRAME_SAMPLES))
        frames = samples.reshape(-1, FRAME_SAMPLES).astype(np.float64)
        inside = _speech_share(speech, first, len(frames))
        energy = np.mean(frames**2, axis=1) + 1e-12
        spoken = inside > 0.99  # frames wholly inside speech
        speech_energies.append(energy[spoken])
        pause_energies.append(energy[inside < 0.01])  # wholly inside a pause
        if spoken.any():
            spectrum += np.sum(np.abs(np.fft.rfft(frames[spoken] * _WINDOW, axis=1)) ** 2, axis=0)
    in_speech, in_pauses = np.concatenate(speech_energies or [[]]), np.concatenate(pause_energies or [[]])
    audible = spectrum[_FREQUENCIES >= LOW_CUT_HZ].sum()
    high_band_share = float(spectrum[_FREQUENCIES >= HIGH_BAND_HZ].sum() / audible) if audible > 0 else 0.0
    speech_to_pause_db = None
    if len(in_speech) and len(in_pauses) >= MIN_PAUSE_FRAMES:
        speech_to_pause_db = float(10 * np.log10(np.median(in_speech) / np.median(in_pauses)))
    return Channel(high_band_share, speech_to_pause_db)


def _speech_share(speech: Sequence[SpeechRegion], first_sample: int, frame_count: int) -> np.ndarray:
    """For each frame of a block starting at `first_sample`, the share of its samples inside speech."""
    start, stop = first_sample, first_sample + frame_count * FRAME_SAMPLES
    inside = np.zeros(stop - start, dtype=bool)
    for region in speech:
        first, last = int(region.start * SAMPLE_RATE), int(region.end * SAMPLE_RATE)
        if last > start and first < stop:
            inside[max(first, start) - start : min(last, stop) - start] = True
    return inside.reshape(frame_count, FRAME_SAMPLES).mean(axis=1)
