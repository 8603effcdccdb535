"""GigaAM-Multilingual CTC through onnx-asr on onnxruntime: the local engine that writes Kazakh.

One shared Cyrillic+Latin character vocabulary with a CTC head: no language token, no punctuation,
no capitals, no digits. So:

1. Each of the diarizer's speech regions (a speaker's turn) is recognised on its own, padded a
   little into the pauses around it; a region longer than `max_piece_seconds` (GigaAM was trained
   on utterances of up to ~20 s) is cut into pieces at pauses: at the quietest 20 ms frame (lowest
   RMS) within the last CUT_SEARCH_SECONDS before the limit, so a cut never falls inside a word
   that has a quieter moment around it (`cut_points`).
2. Pieces go through the model `batch_size` at a time, longest first so a batch pads little;
   onnx-asr's timestamped result gives each character token and the start of its 40 ms frame,
   relative to the piece.
3. Words: tokens split at spaces; a word starts at its first character's frame and ends where its
   last character's frame ends (never at the next word's start, which would swallow the pause).
4. Each region's language comes from the text it wrote (`text_language.py`: script, Kazakh-only
   letters, text ID among the allowed languages, the speaker's and recording's other turns), and
   its words get sentence case and ending punctuation (`punctuation.py`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx_asr
import onnxruntime as rt

from kazru.adapters.audio import SAMPLE_RATE, as_recording
from kazru.adapters.model_files import missing_gigaam_files
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
from services.transcriber.punctuation import punctuate
from services.transcriber.text_language import TextTurn, choose_segment_languages

# The model's output frame: 10 ms feature hop x subsampling 4. A character's timestamp is the start of its frame.
FRAME_SECONDS = 0.04
# A cut is searched for in this much audio before the piece's limit (at most half the limit): long enough
# to hold a pause between words in ordinary speech, short enough that pieces stay near the limit.
CUT_SEARCH_SECONDS = 4.0
# The loudness of a candidate cut is the RMS of a 20 ms frame, tried every 10 ms: shorter than a syllable,
# so the quietest one is a pause or a stop closure, not the middle of a vowel.
CUT_FRAME_SAMPLES = SAMPLE_RATE // 50
CUT_HOP_SAMPLES = SAMPLE_RATE // 100
# Audio kept before and after a region (inside the pause, at most half of it), so that a first or last
# sound the diarizer clipped is whole.
REGION_PAD_SECONDS = 0.2
# Shorter pieces carry no word the model can read (one 40 ms frame would be a third of a syllable).
MIN_PIECE_SECONDS = 0.1


@dataclass(frozen=True)
class Piece:
    """A stretch of one region's audio given to the model, in seconds of the recording."""

    region: int
    start: float
    end: float


class GigaamEngine(LocalEngine):
    name = "gigaam"

    def __init__(self, settings: Settings):
        gigaam = settings.gigaam
        folder = settings.gigaam_model_dir
        # Checked before anything loads, so a transcriber without its model stops at start with what to do,
        # instead of taking jobs that fail later.
        missing = missing_gigaam_files(folder, gigaam.model, gigaam.quantization)
        if missing:
            raise RuntimeError(
                f"the GigaAM model {gigaam.model} ({gigaam.quantization or 'full precision'}) is not installed "
                f"in {folder}: missing {', '.join(missing)}. Run `python -m kazru.dev.model_install --engine "
                f"gigaam` where the model hub is reachable, or put these files there (KAZRU_GIGAAM_MODEL_DIR "
                "names another folder)"
            )
        options = rt.SessionOptions()
        if gigaam.cpu_threads:
            options.intra_op_num_threads = gigaam.cpu_threads
            options.inter_op_num_threads = 1
        self._model = onnx_asr.load_model(
            gigaam.model,
            folder,
            quantization=gigaam.quantization or None,
            sess_options=options,
            providers=["CPUExecutionProvider"],
        ).with_timestamps()
        self.model_name = gigaam.model
        self._max_piece_seconds = gigaam.max_piece_seconds
        self._batch_size = gigaam.batch_size

    def recognize_blocking(
        self,
        audio: np.ndarray | RecordedAudio,
        languages: Sequence[str],
        regions: Sequence[SpeechRegion],
        on_progress: ProgressCallback,
    ) -> Recognition:
        """Recognise the regions in batches of pieces: only one batch's audio is read at a time."""
        recording = as_recording(audio)
        if not languages:
            raise errors.InvalidArgument("no language allowed for the job", code="NO_LANGUAGE")
        stages = {"cut_seconds": 0.0, "model_seconds": 0.0}
        started = time.perf_counter()
        pieces = plan_pieces(recording, regions, self._max_piece_seconds)
        stages["cut_seconds"] = time.perf_counter() - started

        total = sum(piece.end - piece.start for piece in pieces) or 1.0
        done = 0.0
        words_by_region: list[list[RecognizedWord]] = [[] for _ in regions]
        # Longest first: a batch is padded to its longest piece, so similar lengths waste least.
        ordered = sorted(pieces, key=lambda piece: piece.end - piece.start, reverse=True)
        for first in range(0, len(ordered), self._batch_size):
            batch = ordered[first : first + self._batch_size]
            started = time.perf_counter()
            results = self._model.recognize([recording.seconds(piece.start, piece.end) for piece in batch])
            stages["model_seconds"] += time.perf_counter() - started
            for piece, result in zip(batch, results, strict=True):
                words_by_region[piece.region].extend(piece_words(piece, result.tokens, result.timestamps, result.logprobs))
            done += sum(piece.end - piece.start for piece in batch)
            on_progress(min(done / total, 1.0))

        started = time.perf_counter()
        for words in words_by_region:
            words.sort(key=lambda word: word.start)
        chosen = choose_segment_languages(
            [
                TextTurn(region.speaker, " ".join(word.text for word in words), region.end - region.start)
                for region, words in zip(regions, words_by_region, strict=True)
            ],
            languages,
        )
        spans = [
            RecognizedSpan(region.start, region.end, language, tuple(punctuate(words, language)))
            for region, language, words in zip(regions, chosen, words_by_region, strict=True)
            if words
        ]
        stages["language_seconds"] = time.perf_counter() - started
        return Recognition(engine=self.name, model=self.model_name, spans=spans, stage_seconds=stages)


def plan_pieces(recording: RecordedAudio, regions: Sequence[SpeechRegion], max_piece_seconds: float) -> list[Piece]:
    """Each region, padded into the pauses around it, as pieces of at most `max_piece_seconds` cut at
    the quietest moments (`cut_points`)."""
    bounds = sorted((region.start, region.end) for region in regions)
    pieces = []
    for index, region in enumerate(regions):
        # Half the pause to the nearest other region's speech at most, so no piece hears its neighbour's words.
        before = max((end for start, end in bounds if end <= region.start), default=None)
        after = min((start for start, end in bounds if start >= region.end), default=None)
        start = max(0.0, region.start - REGION_PAD_SECONDS)
        end = min(recording.duration, region.end + REGION_PAD_SECONDS)
        if before is not None:
            start = max(start, (before + region.start) / 2)
        if after is not None:
            end = min(end, (region.end + after) / 2)
        if end - start < MIN_PIECE_SECONDS:
            continue
        offset = round(start * SAMPLE_RATE)
        samples = recording.read(offset, round(end * SAMPLE_RATE))
        edges = [0, *cut_points(samples, round(max_piece_seconds * SAMPLE_RATE)), len(samples)]
        pieces.extend(
            Piece(index, (offset + a) / SAMPLE_RATE, (offset + b) / SAMPLE_RATE)
            for a, b in zip(edges, edges[1:], strict=False)
            if b - a >= MIN_PIECE_SECONDS * SAMPLE_RATE
        )
    return pieces


def cut_points(samples: np.ndarray, max_samples: int) -> list[int]:
    """Where to cut `samples` so that no piece is longer than `max_samples`: each cut is the middle of
    the quietest 20 ms frame (lowest RMS) in the last CUT_SEARCH_SECONDS (at most half the limit)
    before the current piece's limit."""
    search = min(round(CUT_SEARCH_SECONDS * SAMPLE_RATE), max_samples // 2)
    cuts: list[int] = []
    position = 0
    while len(samples) - position > max_samples:
        window = samples[position + max_samples - search : position + max_samples].astype(np.float64)
        # Energy of each 10 ms hop, then of each 20 ms frame (two hops), every 10 ms.
        hops = len(window) // CUT_HOP_SAMPLES
        hop_energy = np.square(window[: hops * CUT_HOP_SAMPLES]).reshape(hops, CUT_HOP_SAMPLES).sum(axis=1)
        frame_energy = hop_energy[:-1] + hop_energy[1:]
        quietest = int(np.argmin(frame_energy))  # the first of equally quiet frames
        cut = position + max_samples - search + quietest * CUT_HOP_SAMPLES + CUT_FRAME_SAMPLES // 2
        cuts.append(cut)
        position = cut
    return cuts


def piece_words(
    piece: Piece, tokens: Sequence[str] | None, timestamps: Sequence[float] | None, logprobs: Sequence[float] | None
) -> list[RecognizedWord]:
    """The piece's words in recording time, from onnx-asr's CTC tokens (characters, " " between words),
    each token's frame start and its log-probability.

    Confidence: onnx-asr gives each character the sum of the log max-posteriors of the frames it holds
    (the frames of its CTC run; blank frames count for nothing). A word's probability is the geometric
    mean over its characters of exp(that sum): for the usual one-frame character it is the mean
    (geometric) max-posterior of the word's frames; a character the model hesitated over for several
    frames weighs in with all of them. No second pass through the model is needed."""
    words: list[RecognizedWord] = []
    if not tokens or timestamps is None:
        return words
    logprobs = logprobs if logprobs is not None else [0.0] * len(tokens)
    current: list[int] = []
    for index in [*range(len(tokens)), None]:
        if index is not None and tokens[index].strip():
            current.append(index)
            continue
        if current:
            text = "".join(tokens[i] for i in current).strip()
            start = piece.start + timestamps[current[0]]
            end = min(piece.start + timestamps[current[-1]] + FRAME_SECONDS, piece.end)
            probability = math.exp(math.fsum(logprobs[i] for i in current) / len(current))
            words.append(RecognizedWord(round(start, 3), round(max(end, start), 3), text, round(probability, 4)))
            current = []
    return words
