"""The local speech engine: faster-whisper (CTranslate2) with the offline default model.

Whisper decides one language per 30 s window. We recognise each speech region
(a speaker turn from the diarizer) on its own, so each turn gets its own
language, chosen among the job's allowed languages only. From one encoder pass
the turn is decoded in each allowed language; the decode with the higher
log-probability per *character* wins, and its words are timed by Whisper's
cross-attention alignment on the same encoder output.

Why not Whisper's language head: restricted to kk/ru it says Russian for nearly
all Kazakh speech (it saw far more Russian in training). Why per character, not
per token: Whisper's tokenizer cuts Kazakh into more, shorter tokens than
Russian, each easier to predict, so per-token scores favour Kazakh for any
audio. A decode that loops (Whisper's failure mode) never wins and is dropped.
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens, merge_punctuations

from kazru import errors
from kazru.audio import SAMPLE_RATE
from kazru.settings import Settings
from services.transcriber.recognition import (
    ExternalCopyCallback,
    ProgressCallback,
    Recognition,
    RecognizedSpan,
    RecognizedWord,
    SpeechRegion,
)

# Whisper's own threshold for text that loops (faster-whisper's default).
COMPRESSION_RATIO_THRESHOLD = 2.4
# Speech carries at most a few tokens a second; a decode far beyond that is a loop.
MAX_TOKENS_PER_SECOND = 8
# faster-whisper's defaults: punctuation attached to the neighbouring word.
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


@dataclass(frozen=True)
class _Decode:
    language: str
    tokens: list[int]
    # Log-probability per character; -inf for no text or a loop.
    score: float


# Whisper's input window, in mel frames (30 s).
WINDOW_FRAMES = 3000


class WhisperEngine:
    name = "whisper"

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
        self._tokenizers: dict[str, Tokenizer] = {}
        self._suppressed: dict[str, list[int]] = {}

    async def recognize(
        self,
        samples: np.ndarray,
        languages: Sequence[str],
        regions: Sequence[SpeechRegion],
        on_progress: ProgressCallback,
        on_external_copy: ExternalCopyCallback | None = None,
    ) -> Recognition:
        del on_external_copy  # everything stays on this machine
        return await asyncio.to_thread(self.recognize_blocking, samples, languages, regions, on_progress)

    async def forget(self, external_operation_id: str) -> None:
        """Nothing is kept outside our own storage."""

    def recognize_blocking(
        self,
        samples: np.ndarray,
        languages: Sequence[str],
        regions: Sequence[SpeechRegion],
        on_progress: ProgressCallback,
    ) -> Recognition:
        if not languages:
            raise errors.InvalidArgument("no language allowed for the job", code="NO_LANGUAGE")
        stages = {"encode_seconds": 0.0, "decode_seconds": 0.0, "alignment_seconds": 0.0}
        total = sum(region.end - region.start for region in regions) or 1.0
        done = 0.0
        spans = []
        for region in regions:
            span = self._recognize_region(samples, region, languages, stages)
            if span is not None:
                spans.append(span)
            done += region.end - region.start
            on_progress(min(done / total, 1.0))
        return Recognition(engine=self.name, spans=spans, stage_seconds=stages)

    def _recognize_region(
        self, samples: np.ndarray, region: SpeechRegion, languages: Sequence[str], stages: dict[str, float]
    ) -> RecognizedSpan | None:
        chunk = samples[int(region.start * SAMPLE_RATE) : int(region.end * SAMPLE_RATE)]
        if len(chunk) < SAMPLE_RATE // 10:
            return None
        started = time.perf_counter()
        features = self._model.feature_extractor(chunk)
        window = features[:, :WINDOW_FRAMES]
        window = np.pad(window, ((0, 0), (0, WINDOW_FRAMES - window.shape[1])))
        encoder_output = self._model.encode(window)
        stages["encode_seconds"] += time.perf_counter() - started

        started = time.perf_counter()
        max_tokens = int(MAX_TOKENS_PER_SECOND * (region.end - region.start)) + 8
        decodes = [self._decode(encoder_output, language, max_tokens) for language in languages]
        best = max(decodes, key=lambda decode: decode.score)
        stages["decode_seconds"] += time.perf_counter() - started
        if best.score == -math.inf:
            return None  # nothing but silence or loops in every language

        started = time.perf_counter()
        words = self._timed_words(best, encoder_output, min(features.shape[-1], WINDOW_FRAMES), region)
        stages["alignment_seconds"] += time.perf_counter() - started
        if not words:
            return None
        return RecognizedSpan(start=region.start, end=region.end, language=best.language, words=tuple(words))

    def _decode(self, encoder_output, language: str, max_tokens: int) -> _Decode:
        """The region's text in `language`, scored by log-probability per character."""
        tokenizer = self._tokenizer(language)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = self._model.model.generate(
            encoder_output,
            [prompt],
            beam_size=self._beam_size,
            max_length=len(prompt) + max_tokens,
            return_scores=True,
            suppress_blank=True,
            suppress_tokens=self._suppressed_tokens(language),
        )[0]
        generated = result.sequences_ids[0]
        tokens = [token for token in generated if token < tokenizer.eot]
        text = tokenizer.decode(tokens).strip()
        if not text or _loops(text):
            return _Decode(language, tokens, -math.inf)
        # CTranslate2 reports the log-probability divided by the length (length_penalty 1).
        return _Decode(language, tokens, result.scores[0] * len(generated) / len(text))

    def _timed_words(self, decode: _Decode, encoder_output, frames: int, region: SpeechRegion) -> list[RecognizedWord]:
        tokenizer = self._tokenizer(decode.language)
        alignment = self._model.find_alignment(tokenizer, [decode.tokens], encoder_output, frames)[0]
        merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
        words = []
        for word in alignment:
            text = word["word"].strip()
            if not text:
                continue
            start = min(region.start + float(word["start"]), region.end)
            end = min(max(region.start + float(word["end"]), start), region.end)
            words.append(RecognizedWord(round(start, 3), round(end, 3), text, float(word["probability"])))
        return words

    def _suppressed_tokens(self, language: str) -> list[int]:
        if language not in self._suppressed:
            self._suppressed[language] = get_suppressed_tokens(self._tokenizer(language), [-1])
        return self._suppressed[language]

    def _tokenizer(self, language: str) -> Tokenizer:
        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(
                self._model.hf_tokenizer, multilingual=True, task="transcribe", language=language
            )
        return self._tokenizers[language]


def _loops(text: str) -> bool:
    """Whisper's loop signs: text that compresses too well, or one word three times running."""
    encoded = text.encode("utf-8")
    if len(encoded) / len(zlib.compress(encoded)) > COMPRESSION_RATIO_THRESHOLD:
        return True
    words = [word.lower().strip(".,!?-") for word in text.split()]
    return any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2))
