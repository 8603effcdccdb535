"""The local speech engine: faster-whisper (CTranslate2) with the offline default model.

Whisper decides one language per 30 s window. We recognise each speech region
(a speaker turn from the diarizer) on its own, so each turn gets its own
language, chosen among the job's allowed languages only:
1. Whisper's language head on the region's encoder output ranks the allowed languages;
2. the region is decoded in the most likely one; when Whisper itself would call
   that decode failed (average log-probability below -1, or repetitive text),
   the next allowed language is tried from the same encoder output, and taken
   only if its decode does not fail. Whisper's language head is biased towards
   the languages it saw most in training (Russian far above Kazakh); a failed
   decode is the evidence that the head was wrong.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

from kazru import errors
from kazru.audio import SAMPLE_RATE
from kazru.settings import Settings
from services.transcriber.recognition import (
    ProgressCallback,
    Recognition,
    RecognizedSpan,
    RecognizedWord,
    SpeechRegion,
)

# Whisper's own thresholds for a failed decode (faster-whisper's defaults).
LOG_PROB_THRESHOLD = -1.0
COMPRESSION_RATIO_THRESHOLD = 2.4
# Speech carries at most a few tokens a second; a decode far beyond that is a loop.
MAX_TOKENS_PER_SECOND = 8
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
        self._temperatures = list(settings.whisper_temperatures)
        self._tokenizers: dict[str, Tokenizer] = {}

    async def recognize(
        self,
        samples: np.ndarray,
        languages: Sequence[str],
        regions: Sequence[SpeechRegion],
        on_progress: ProgressCallback,
    ) -> Recognition:
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
        stages = {"language_seconds": 0.0, "decode_seconds": 0.0}
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
        ranked = self.rank_languages(encoder_output, languages)
        stages["language_seconds"] += time.perf_counter() - started

        started = time.perf_counter()
        max_tokens = int(MAX_TOKENS_PER_SECOND * (region.end - region.start)) + 8
        chosen: tuple[str, list[RecognizedWord]] | None = None
        for language in ranked:
            quality, words = self._decode(features, encoder_output, language, region, max_tokens)
            if chosen is None or quality >= LOG_PROB_THRESHOLD:
                chosen = (language, words)
            if quality >= LOG_PROB_THRESHOLD:
                break
        stages["decode_seconds"] += time.perf_counter() - started
        language, words = chosen
        if not words:
            return None
        return RecognizedSpan(start=region.start, end=region.end, language=language, words=tuple(words))

    def _decode(
        self, features: np.ndarray, encoder_output, language: str, region: SpeechRegion, max_tokens: int
    ) -> tuple[float, list[RecognizedWord]]:
        """(quality, words): quality is the token-weighted average log-probability,
        -inf when the text shows Whisper's loop signs."""
        tokenizer = self._tokenizer(language)
        options = self._options(tokenizer, max_tokens)
        pieces = list(self._model.generate_segments(features, tokenizer, options, False, encoder_output))
        tokens = sum(len(piece.tokens) for piece in pieces)
        if tokens == 0:
            return -math.inf, []
        quality = sum(piece.avg_logprob * len(piece.tokens) for piece in pieces) / tokens
        words = []
        for piece in pieces:
            for word in piece.words or ():
                text = word.word.strip()
                if not text:
                    continue
                start = min(region.start + word.start, region.end)
                end = min(max(region.start + word.end, start), region.end)
                words.append(RecognizedWord(round(start, 3), round(end, 3), text, float(word.probability)))
        if _is_repetitive(pieces, words):
            quality = -math.inf
        return quality, words

    def rank_languages(self, encoder_output, languages: Sequence[str]) -> list[str]:
        """The allowed languages, most likely first by Whisper's language head."""
        if len(languages) == 1:
            return list(languages)
        probabilities = {
            token[2:-2]: probability for token, probability in self._model.model.detect_language(encoder_output)[0]
        }
        return sorted(languages, key=lambda language: probabilities.get(language, 0.0), reverse=True)

    def _tokenizer(self, language: str) -> Tokenizer:
        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(
                self._model.hf_tokenizer, multilingual=True, task="transcribe", language=language
            )
        return self._tokenizers[language]

    def _options(self, tokenizer: Tokenizer, max_new_tokens: int) -> TranscriptionOptions:
        return TranscriptionOptions(
            beam_size=self._beam_size,
            best_of=5,
            patience=1.0,
            length_penalty=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            log_prob_threshold=LOG_PROB_THRESHOLD,
            no_speech_threshold=0.6,
            compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD,
            # Conditioning on earlier text makes Whisper loop on repeated phrases.
            condition_on_previous_text=False,
            prompt_reset_on_temperature=0.5,
            temperatures=self._temperatures,
            initial_prompt=None,
            prefix=None,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            without_timestamps=False,
            max_initial_timestamp=1.0,
            word_timestamps=True,
            prepend_punctuations="\"'“¿([{-",
            append_punctuations="\"'.。,，!！?？:：”)]}、",
            multilingual=False,
            max_new_tokens=max_new_tokens,
            clip_timestamps="0",
            hallucination_silence_threshold=None,
            hotwords=None,
        )


def _is_repetitive(pieces, words: Sequence[RecognizedWord]) -> bool:
    """Whisper's loop signs: text that compresses too well, or one word three times running."""
    if any(piece.compression_ratio > COMPRESSION_RATIO_THRESHOLD for piece in pieces):
        return True
    texts = [word.text.lower().strip(".,!?-") for word in words]
    return any(texts[i] == texts[i + 1] == texts[i + 2] for i in range(len(texts) - 2))
