"""The local speech engine: faster-whisper (CTranslate2) with the offline default model.

Language is chosen among the job's allowed languages only (default kk, ru):
Whisper's free detection often picks an unrelated language on short or
accented speech, and a restricted choice is what the user asked for.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel

from kazru import errors
from kazru.audio import SAMPLE_RATE
from kazru.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSegment:
    start: float
    end: float
    text: str
    confidence: float
    language: str


@dataclass(frozen=True)
class EngineResult:
    language: str
    segments: list[EngineSegment]


class WhisperEngine:
    """Blocking API: call `transcribe` from a worker thread."""

    def __init__(self, settings: Settings):
        model = settings.whisper_model_path
        if settings.whisper_model == "" and not (Path(model) / "model.bin").is_file():
            raise RuntimeError(f"the default model is not installed in {model}: run `make model`")
        self._model = WhisperModel(
            model,
            device=settings.whisper_device,
            compute_type=settings.whisper_compute_type,
            cpu_threads=settings.whisper_cpu_threads,
        )
        self._beam_size = settings.whisper_beam_size

    def choose_language(self, samples: np.ndarray, allowed: Sequence[str]) -> str:
        if len(allowed) == 1:
            return allowed[0]
        _, _, probabilities = self._model.detect_language(samples)
        scores = dict(probabilities)
        return max(allowed, key=lambda language: scores.get(language, 0.0))

    def transcribe(
        self, samples: np.ndarray, allowed_languages: Sequence[str], on_progress: Callable[[float], None]
    ) -> EngineResult:
        if not allowed_languages:
            raise errors.InvalidArgument("no language allowed for the job", code="NO_LANGUAGE")
        duration = len(samples) / SAMPLE_RATE
        if duration == 0:
            return EngineResult(language=allowed_languages[0], segments=[])
        language = self.choose_language(samples, allowed_languages)
        pieces, _ = self._model.transcribe(
            samples,
            language=language,
            beam_size=self._beam_size,
            vad_filter=True,
            # Conditioning on earlier text makes Whisper loop on repeated phrases.
            condition_on_previous_text=False,
        )
        segments = []
        for piece in pieces:  # a lazy generator: decoding happens as we iterate
            text = piece.text.strip()
            if text:
                confidence = min(1.0, max(0.0, math.exp(piece.avg_logprob)))
                segments.append(EngineSegment(piece.start, piece.end, text, confidence, language))
            on_progress(min(piece.end / duration, 1.0))
        return EngineResult(language=language, segments=segments)
