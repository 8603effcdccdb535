"""The local speech engine: faster-whisper (CTranslate2) with the offline default model.

Whisper decides one language per 30 s window. We recognise each speech region
(a speaker turn from the diarizer) on its own, so each turn gets its own
language, chosen among the job's allowed languages only: from one encoder pass,
a short greedy decode in each allowed language, scored by log-probability per
*character* of the text it produced; then a full decode (beam search, word
timestamps) in the winner from the same encoder output.

Why not Whisper's language head: restricted to kk/ru it says Russian for nearly
all Kazakh speech (it saw far more Russian in training). Why per character, not
per token: Whisper's tokenizer cuts Kazakh into more, shorter tokens than
Russian, each easier to predict, so per-token scores favour Kazakh for any
audio. Text that loops (Whisper's failure mode) scores nothing.
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
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
# Tokens of the greedy decode that compares languages.
LANGUAGE_PROBE_TOKENS = 64
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
        max_tokens = int(MAX_TOKENS_PER_SECOND * (region.end - region.start)) + 8
        language = self.choose_language(encoder_output, languages, min(max_tokens, LANGUAGE_PROBE_TOKENS))
        stages["language_seconds"] += time.perf_counter() - started

        started = time.perf_counter()
        words = self._decode(features, encoder_output, language, region, max_tokens)
        stages["decode_seconds"] += time.perf_counter() - started
        if not words:
            return None
        return RecognizedSpan(start=region.start, end=region.end, language=language, words=tuple(words))

    def _decode(
        self, features: np.ndarray, encoder_output, language: str, region: SpeechRegion, max_tokens: int
    ) -> list[RecognizedWord]:
        tokenizer = self._tokenizer(language)
        options = self._options(tokenizer, max_tokens)
        words = []
        for piece in self._model.generate_segments(features, tokenizer, options, False, encoder_output):
            if piece.compression_ratio > COMPRESSION_RATIO_THRESHOLD:
                continue  # a loop, not speech
            for word in piece.words or ():
                text = word.word.strip()
                if not text:
                    continue
                start = min(region.start + word.start, region.end)
                end = min(max(region.start + word.end, start), region.end)
                words.append(RecognizedWord(round(start, 3), round(end, 3), text, float(word.probability)))
        return words

    def choose_language(self, encoder_output, languages: Sequence[str], probe_tokens: int) -> str:
        if len(languages) == 1:
            return languages[0]
        scores = {language: self._language_score(encoder_output, language, probe_tokens) for language in languages}
        return max(languages, key=lambda language: scores[language])

    def _language_score(self, encoder_output, language: str, probe_tokens: int) -> float:
        """Log-probability per character of a greedy decode in `language`."""
        tokenizer = self._tokenizer(language)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = self._model.model.generate(
            encoder_output,
            [prompt],
            beam_size=1,
            max_length=len(prompt) + probe_tokens,
            return_scores=True,
            suppress_blank=True,
        )[0]
        tokens = [token for token in result.sequences_ids[0] if token < tokenizer.eot]
        text = tokenizer.decode(tokens).strip()
        if not text or _loops(text):
            return -math.inf
        # CTranslate2 reports the log-probability divided by the length (length_penalty 1).
        return result.scores[0] * len(result.sequences_ids[0]) / len(text)

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


def _loops(text: str) -> bool:
    """Whisper's loop signs: text that compresses too well, or one word three times running."""
    encoded = text.encode("utf-8")
    if len(encoded) / len(zlib.compress(encoded)) > COMPRESSION_RATIO_THRESHOLD:
        return True
    words = [word.lower().strip(".,!?-") for word in text.split()]
    return any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2))
