"""The local speech engine: faster-whisper (CTranslate2) with the offline default model.

Whisper decides one language per 30 s window; people switch between Kazakh and
Russian from one turn to the next. So:

1. The diarizer's speaker turns are grouped into *chunks* of consecutive turns,
   each at most one Whisper window long, cut only between turns, where someone
   paused (`plan_chunks`). A chunk is recognised with the speech around each turn
   as context, as plain faster-whisper does, instead of one isolated turn at a time
   (isolated turns lost their first and last words and the sentence's context:
   WER 0.243 against plain faster-whisper's 0.182 on real Russian, BENCHMARKS.md).
2. Each chunk is encoded once and decoded (greedy by default) in the allowed
   language its language head leads with; in the other allowed languages only if
   one of its turns is not clear by itself, and, after every chunk, again where
   `turns_that_could_change` says a missing reading could still change a turn's
   language (so the choice is the one all readings would give: real Russian is
   decoded once, not once per allowed language). Every decode's words are timed by
   Whisper's cross-attention alignment, which also gives each token's probability.
3. Each turn's language is chosen from all the signals (`language_choice.py`): how
   likely each language's words in the turn are, text language ID of each decode,
   Whisper's language head for the chunk, and the other turns of the same speaker
   and recording. The turn's words are those of the chosen language's decode.

A decode ends where Whisper ends it (its end-of-text) or at Whisper's own limit of
224 new tokens; text that loops (Whisper's failure mode) is cut where the
repetition starts, instead of capping every decode at a guessed rate of tokens per
second, which cut fast speech mid-word.
"""

from __future__ import annotations

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

from kazru.adapters.audio import SAMPLE_RATE, as_recording
from kazru.domain import errors
from kazru.domain.recognition import (
    ProgressCallback,
    Recognition,
    RecognizedSpan,
    RecognizedWord,
    RecordedAudio,
    SpeechRegion,
)
from kazru.settings import Settings
from services.transcriber.engines.local import LocalEngine
from services.transcriber.language_choice import (
    Reading,
    TurnEvidence,
    choose_languages,
    clear_by_itself,
    turns_that_could_change,
)
from services.transcriber.languages_heard import LanguagesHeard

# Whisper's own threshold for text that loops (faster-whisper's default).
COMPRESSION_RATIO_THRESHOLD = 2.4
# A phrase of up to this many words said three times running is a loop, not speech.
MAX_LOOP_PHRASE_WORDS = 4
# Whisper's own cap on new tokens per 30 s window (openai-whisper's sample_len).
MAX_NEW_TOKENS = 224
# faster-whisper's defaults: punctuation attached to the neighbouring word.
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"

# Whisper's input window, in mel frames (30 s), and the chunk length that leaves room for context.
WINDOW_FRAMES = 3000
MAX_CHUNK_SECONDS = 28.0
# A longer silence between turns starts a new chunk: Whisper invents words in long silences.
CHUNK_GAP_SECONDS = 2.0
# Audio kept before and after a chunk's speech (inside the pause), so first and last sounds are whole.
CHUNK_PAD_SECONDS = 0.4


@dataclass(frozen=True)
class Chunk:
    start: float
    end: float
    # Indices of the regions recognised in this chunk.
    regions: tuple[int, ...]


@dataclass(frozen=True)
class _Word:
    start: float
    end: float
    text: str
    probability: float
    log_probability: float


def plan_chunks(regions: Sequence[SpeechRegion], duration: float) -> list[Chunk]:
    """Consecutive regions grouped into windows of at most MAX_CHUNK_SECONDS, cut between
    regions only, and at every silence longer than CHUNK_GAP_SECONDS. A region longer than
    a window (the diarizer cuts turns before that) gets windows of its own."""
    groups: list[list[int]] = []
    for index, region in enumerate(regions):
        if groups:
            first, last = regions[groups[-1][0]], regions[groups[-1][-1]]
            if region.start - last.end <= CHUNK_GAP_SECONDS and region.end - first.start <= MAX_CHUNK_SECONDS:
                groups[-1].append(index)
                continue
        groups.append([index])
    chunks = []
    for number, members in enumerate(groups):
        start, end = regions[members[0]].start, regions[members[-1]].end
        # Pad into the pause, never into the neighbouring chunk's speech.
        before = regions[groups[number - 1][-1]].end if number else 0.0
        after = regions[groups[number + 1][0]].start if number + 1 < len(groups) else duration
        padded_start = max(start - CHUNK_PAD_SECONDS, (before + start) / 2 if number else 0.0)
        padded_end = min(end + CHUNK_PAD_SECONDS, (end + after) / 2 if number + 1 < len(groups) else duration)
        while padded_end - padded_start > MAX_CHUNK_SECONDS + 2 * CHUNK_PAD_SECONDS:
            chunks.append(Chunk(padded_start, padded_start + MAX_CHUNK_SECONDS, tuple(members)))
            padded_start += MAX_CHUNK_SECONDS
        chunks.append(Chunk(padded_start, padded_end, tuple(members)))
    return chunks


class WhisperEngine(LocalEngine):
    name = "whisper"

    def __init__(self, settings: Settings):
        model = settings.whisper_model_path
        if settings.whisper.model == "" and not (Path(model) / "model.bin").is_file():
            raise RuntimeError(f"the default model is not installed in {model}: run `make model`")
        try:
            # A folder with model.bin is used as it is; anything else is a faster-whisper model name
            # ("large-v3", "large-v3-turbo", a Hugging Face repo id), fetched once into its cache.
            self._model = WhisperModel(
                model,
                device=settings.whisper.device,
                compute_type=settings.whisper.compute_type,
                cpu_threads=settings.whisper.cpu_threads,
            )
        except Exception as error:
            if Path(model).is_dir():
                raise
            raise RuntimeError(
                f"KAZRU_WHISPER_MODEL={model!r} is not a CTranslate2 model folder and could not be fetched by name "
                f"({type(error).__name__}: {error}); on a machine without internet, fetch or convert it elsewhere "
                "and set KAZRU_WHISPER_MODEL to its folder"
            ) from error
        self._beam_size = settings.whisper.beam_size
        # A folder's or a model's name ("whisper-base", "large-v3"), said as a Whisper model.
        name = Path(model).name
        self.model_name = name if "whisper" in name.lower() else f"whisper-{name}"
        self._tokenizers: dict[str, Tokenizer] = {}
        self._suppressed: dict[str, list[int]] = {}

    def recognize_blocking(
        self,
        audio: np.ndarray | RecordedAudio,
        languages: Sequence[str],
        regions: Sequence[SpeechRegion],
        on_progress: ProgressCallback,
    ) -> Recognition:
        """Recognise the regions chunk by chunk: only one chunk's audio (at most 30 s) is read at a time."""
        recording = as_recording(audio)
        if not languages:
            raise errors.InvalidArgument("no language allowed for the job", code="NO_LANGUAGE")
        languages = list(languages)
        stages = {"encode_seconds": 0.0, "decode_seconds": 0.0, "alignment_seconds": 0.0}
        chunks = plan_chunks(regions, recording.duration)
        total = sum(chunk.end - chunk.start for chunk in chunks) or 1.0
        done = 0.0
        # Per region: each language's words, and the evidence for choosing among them.
        words_by_region: list[dict[str, list[_Word]]] = [{} for _ in regions]
        evidence = [TurnEvidence(region.end - region.start, region.speaker, {}) for region in regions]
        heard = LanguagesHeard()
        for chunk in chunks:
            self._recognize_chunk(recording, chunk, regions, languages, stages, words_by_region, evidence, heard,
                                  leading_first=True)  # fmt: skip
            done += chunk.end - chunk.start
            on_progress(min(done / total, 1.0))
        # The chunks read in one language only, read again where another reading could still change a turn's
        # language; each at most once (a chunk too short to read never gets its readings).
        read_again: set[Chunk] = set()
        while unread := self._chunks_to_read_again(chunks, evidence, languages, read_again):
            for chunk in unread:
                missing = [language for language in languages
                           if any(language not in evidence[index].readings for index in chunk.regions)]  # fmt: skip
                self._recognize_chunk(recording, chunk, regions, missing, stages, words_by_region, evidence,
                                      allowed=languages)  # fmt: skip
                read_again.add(chunk)

        started = time.perf_counter()
        chosen = choose_languages(evidence, languages)
        stages["language_seconds"] = time.perf_counter() - started
        # A chunk whose turns are in different languages: each run of same-language turns is
        # recognised again on its own in its language, so that one language's forced decode
        # over the other's speech (which may loop and swallow the rest) never supplies words.
        for chunk in chunks:
            for language, members in _language_runs(chunk, chosen):
                if len(members) < len(chunk.regions):
                    sub_chunk = _sub_chunk(chunk, members, regions)
                    for index in members:
                        words_by_region[index][language] = []
                    self._recognize_chunk(recording, sub_chunk, regions, [language], stages, words_by_region)
        spans = []
        for region, language, words in zip(regions, chosen, words_by_region, strict=True):
            recognised = [
                RecognizedWord(round(w.start, 3), round(w.end, 3), w.text, w.probability)
                for w in words.get(language, [])
            ]
            if recognised:
                spans.append(RecognizedSpan(region.start, region.end, language, tuple(recognised)))
        return Recognition(
            engine=self.name, model=self.model_name, spans=spans, stage_seconds=stages, languages_heard=heard.shares()
        )

    def _recognize_chunk(
        self,
        recording: RecordedAudio,
        chunk: Chunk,
        regions: Sequence[SpeechRegion],
        languages: list[str],
        stages: dict[str, float],
        words_by_region: list[dict[str, list[_Word]]],
        evidence: list[TurnEvidence] | None = None,
        heard: LanguagesHeard | None = None,
        *,
        leading_first: bool = False,
        allowed: Sequence[str] = (),
    ) -> None:
        """Recognise the chunk in `languages`, adding each region's words (and, with `evidence`, what the
        language choice weighs). `leading_first`: read it first in the language Whisper's head leads with among
        `languages`, and in the others only if one of its turns is not clear by itself (`clear_by_itself`).
        `allowed`: the job's languages, when `languages` are only those still to read."""
        audio = recording.seconds(chunk.start, chunk.end)
        if len(audio) < SAMPLE_RATE // 10:
            return
        started = time.perf_counter()
        features = self._model.feature_extractor(audio)[:, :WINDOW_FRAMES]
        frames = features.shape[-1]
        encoder_output = self._model.encode(np.pad(features, ((0, 0), (0, WINDOW_FRAMES - frames))))
        head = {}
        if evidence is not None:
            # Over every language Whisper knows, not only the allowed ones: speech in another one is noticed.
            probabilities = self._language_head(encoder_output)
            head = _among(probabilities, list(allowed or languages))
            if heard is not None:
                heard.add(probabilities, sum(
                    max(min(chunk.end, regions[index].end) - max(chunk.start, regions[index].start), 0.0)
                    for index in chunk.regions
                ))
        stages["encode_seconds"] += time.perf_counter() - started

        if leading_first and head:
            languages = sorted(languages, key=lambda language: -head.get(language, 0.0))
            self._read(recording, chunk, regions, languages[0], encoder_output, frames, stages, words_by_region)
            self._note_evidence(chunk, head, words_by_region, evidence)
            if all(clear_by_itself(evidence[index], languages) for index in chunk.regions):
                return
            languages = languages[1:]
        for language in languages:
            self._read(recording, chunk, regions, language, encoder_output, frames, stages, words_by_region)
        self._note_evidence(chunk, head, words_by_region, evidence)

    @staticmethod
    def _note_evidence(chunk: Chunk, head: dict[str, float], words_by_region, evidence) -> None:
        for index in chunk.regions if evidence is not None else ():
            evidence[index].head = head
            evidence[index].readings = {language: _reading(words) for language, words in words_by_region[index].items()}

    @staticmethod
    def _chunks_to_read_again(
        chunks: list[Chunk], evidence: list[TurnEvidence], languages: list[str], read_again: set[Chunk]
    ) -> list[Chunk]:
        """Chunks not yet read in every language that hold a turn whose language could still change
        (`turns_that_could_change`); once the turns it names are all read in every language and some still
        could change (through their speaker's or the recording's other turns), every chunk not yet read so."""
        unsure = set(turns_that_could_change(evidence, languages))
        if not unsure:
            return []

        def unread(chunk: Chunk) -> bool:
            return chunk not in read_again and any(
                set(evidence[index].readings) != set(languages) for index in chunk.regions
            )

        named = [chunk for chunk in chunks if unread(chunk) and unsure.intersection(chunk.regions)]
        if named or not any(set(evidence[index].readings) == set(languages) for index in unsure):
            return named
        return [chunk for chunk in chunks if unread(chunk)]

    def _read(
        self,
        recording: RecordedAudio,
        chunk: Chunk,
        regions: Sequence[SpeechRegion],
        language: str,
        encoder_output,
        frames: int,
        stages: dict[str, float],
        words_by_region: list[dict[str, list[_Word]]],
    ) -> None:
        """Decode the encoded chunk in `language`, align its words and place them in their regions; the
        regions a looping or early-ending decode lost are recognised again on their own."""
        started = time.perf_counter()
        tokens, looped = self._decode(encoder_output, language)
        stages["decode_seconds"] += time.perf_counter() - started
        started = time.perf_counter()
        words = self._aligned_words(tokens, language, encoder_output, frames, chunk)
        stages["alignment_seconds"] += time.perf_counter() - started
        placed = _words_by_region(words, [regions[index] for index in chunk.regions])
        for index, region_words in zip(chunk.regions, placed, strict=True):
            words_by_region[index].setdefault(language, []).extend(region_words)
        lost = _regions_the_decode_lost(chunk, words, regions, looped)
        if lost:
            for index in lost:
                words_by_region[index][language] = []
            self._recognize_chunk(
                recording, _sub_chunk(chunk, lost, regions), regions, [language], stages, words_by_region
            )

    def _language_head(self, encoder_output) -> dict[str, float]:
        """Whisper's language probabilities for the chunk, over every language it knows."""
        return {token[2:-2]: p for token, p in self._model.model.detect_language(encoder_output)[0]}

    def _decode(self, encoder_output, language: str) -> tuple[list[int], bool]:
        """The chunk's text tokens in `language` with any looping tail cut off, and whether it looped."""
        tokenizer = self._tokenizer(language)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = self._model.model.generate(
            encoder_output,
            [prompt],
            beam_size=self._beam_size,
            max_length=len(prompt) + MAX_NEW_TOKENS,
            suppress_blank=True,
            suppress_tokens=self._suppressed_tokens(language),
        )[0]
        tokens = [token for token in result.sequences_ids[0] if token < tokenizer.eot]
        kept = _without_loop(tokens, tokenizer)
        return kept, len(kept) < len(tokens)

    def _aligned_words(
        self, tokens: list[int], language: str, encoder_output, frames: int, chunk: Chunk
    ) -> list[_Word]:
        """Words with times (cross-attention alignment) and their tokens' probabilities. This is
        faster-whisper's `find_alignment` for one sequence, kept here because the language choice
        needs each word's summed token log-probability, and `find_alignment` returns only the mean
        probability, from which the sum cannot be had back."""
        if not tokens:
            return []
        tokenizer = self._tokenizer(language)
        result = self._model.model.align(encoder_output, tokenizer.sot_sequence, [tokens], frames)[0]
        words, word_tokens = tokenizer.split_to_word_tokens(tokens + [tokenizer.eot])
        if len(word_tokens) <= 1:
            return []
        token_probabilities = np.asarray(result.text_token_probs, dtype=np.float64)
        text_indices = np.array([pair[0] for pair in result.alignments])
        time_indices = np.array([pair[1] for pair in result.alignments])
        jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
        jump_times = time_indices[jumps] / self._model.tokens_per_second
        boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
        alignment = [
            {
                "word": word,
                "tokens": word_token_ids,
                "start": jump_times[first],
                "end": jump_times[last],
                "probability": float(np.mean(token_probabilities[first:last])),
                "log_probability": float(np.log(np.maximum(token_probabilities[first:last], 1e-12)).sum()),
            }
            for word, word_token_ids, first, last in zip(
                words, word_tokens, boundaries[:-1], boundaries[1:], strict=False
            )
        ]
        merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
        timed = []
        for word in alignment:
            text = word["word"].strip()
            if not text:
                continue
            start = min(chunk.start + float(word["start"]), chunk.end)
            end = min(max(chunk.start + float(word["end"]), start), chunk.end)
            timed.append(_Word(start, end, text, word["probability"], word["log_probability"]))
        return timed

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


def _among(probabilities: dict[str, float], languages: list[str]) -> dict[str, float]:
    """Language probabilities renormalised over the allowed languages (none for a single one)."""
    if len(languages) < 2:
        return {}
    allowed = {language: probabilities.get(language, 0.0) for language in languages}
    total = sum(allowed.values())
    return {language: p / total for language, p in allowed.items()} if total > 0 else {}


def _words_by_region(words: list[_Word], regions: Sequence[SpeechRegion]) -> list[list[_Word]]:
    """Each word goes to the region holding its midpoint, else the nearest one (words heard in a
    pause between two turns belong to one of them)."""
    placed: list[list[_Word]] = [[] for _ in regions]
    for word in words:
        middle = (word.start + word.end) / 2
        nearest = min(
            range(len(regions)),
            key=lambda index: max(regions[index].start - middle, middle - regions[index].end, 0.0),
        )
        placed[nearest].append(word)
    return placed


def _regions_the_decode_lost(
    chunk: Chunk, words: list[_Word], regions: Sequence[SpeechRegion], looped: bool
) -> list[int]:
    """The chunk's regions its decode lost, to be recognised again on their own, the way Whisper's
    own transcription seeks past a window it failed. A decode that loops lost its place, and the
    alignment of what is kept before the cut can stretch over the whole window, so it says nothing
    of where the loop began: every region after the first. One that ended before the window's speech
    did: the regions after its last word. The first region keeps what it got, so each retry holds
    fewer regions and the retries end."""
    if looped or not words:
        return list(chunk.regions[1:])
    return [index for index in chunk.regions[1:] if regions[index].start >= words[-1].end]


def _language_runs(chunk: Chunk, chosen: Sequence[str]) -> list[tuple[str, list[int]]]:
    """The chunk's regions as runs of consecutive regions in one chosen language."""
    runs: list[tuple[str, list[int]]] = []
    for index in chunk.regions:
        if runs and runs[-1][0] == chosen[index]:
            runs[-1][1].append(index)
        else:
            runs.append((chosen[index], [index]))
    return runs


def _sub_chunk(chunk: Chunk, members: list[int], regions: Sequence[SpeechRegion]) -> Chunk:
    """The part of `chunk` around `members`: from the pause before their first region to the
    pause after their last (the chunk's own padding at its ends)."""
    first, last = chunk.regions.index(members[0]), chunk.regions.index(members[-1])
    start = chunk.start if first == 0 else (regions[chunk.regions[first - 1]].end + regions[members[0]].start) / 2
    end = (
        chunk.end
        if last == len(chunk.regions) - 1
        else (regions[members[-1]].end + regions[chunk.regions[last + 1]].start) / 2
    )
    return Chunk(start, end, tuple(members))


def _reading(words: list[_Word]) -> Reading:
    text = " ".join(word.text for word in words)
    characters = sum(1 for char in text if char.isalnum())
    return Reading(text, math.fsum(word.log_probability for word in words), characters)


def _without_loop(tokens: list[int], tokenizer: Tokenizer) -> list[int]:
    """Tokens up to where the text starts looping: a repeated phrase is kept once, text that
    only compresses like a loop is cut before the compression test fails."""
    text = tokenizer.decode(tokens)
    if not _loops(text):
        return tokens
    keep_words = _loop_start(text)
    if keep_words is None:  # no repeated phrase: the longest prefix that passes the compression test
        low, high = 0, len(tokens)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if _loops(tokenizer.decode(tokens[:middle])) else (middle, high)
        return tokens[:low]
    kept = 0
    for end in range(1, len(tokens) + 1):
        if len(tokenizer.decode(tokens[:end]).split()) > keep_words:
            break
        kept = end
    return tokens[:kept]


def _loops(text: str) -> bool:
    """Whisper's loop signs: text that compresses too well, or a phrase said three times running."""
    encoded = text.encode("utf-8")
    return len(encoded) / len(zlib.compress(encoded)) > COMPRESSION_RATIO_THRESHOLD or _loop_start(text) is not None


def _loop_start(text: str) -> int | None:
    """Words to keep before a phrase of up to MAX_LOOP_PHRASE_WORDS words said three times
    running (the phrase itself once), or None when there is no such phrase."""
    words = [word.lower().strip(".,!?-") for word in text.split()]
    for start in range(len(words)):
        for size in range(1, MAX_LOOP_PHRASE_WORDS + 1):
            phrase = words[start : start + size]
            if (
                len(words) >= start + 3 * size
                and any(phrase)
                and phrase == words[start + size : start + 2 * size] == words[start + 2 * size : start + 3 * size]
            ):
                return start + size
    return None
