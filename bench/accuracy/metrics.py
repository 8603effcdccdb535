"""Scores for one transcribed conversation against its reference turns (no model needed).

- WER/CER per language: hypothesis words are given to the reference turn that contains
  their midpoint (or the nearest turn), so words the system hears in the wrong place or
  invents still count as insertions against some turn; per-language totals are summed
  edit operations over summed reference length. Text is normalised first: lowercase,
  ё→е, punctuation and symbols removed. CER counts characters including single spaces.
- Language ID per reference turn: the language of the hypothesis segments that overlap
  the turn longest in total; a turn no segment overlaps counts as wrong.
- DER: `pyannote.metrics` DiarizationErrorRate. Its `collar` is the TOTAL width removed
  around each reference boundary, so NIST's ±0.25 s is `collar=0.5`. Overlap is scored.

For real recordings (bench/accuracy/real.py), whose references are a whole-file transcript
and/or RTTM speaker turns rather than timed turns with text:

- whole-file WER/CER: the hypothesis text in time order against the transcript (`word_errors`).
- language share: the share of hypothesis speech time labelled with the file's reference
  language (a file the system hears nothing in adds no time).
- speaker count: only speakers with at least 2 s of speech count, on both sides, so a
  reference speaker who only says "mm" and a hypothesis speaker made of one stray window
  do not decide the figure.
- cut words: a segment whose last word is not in the transcript's vocabulary but is a
  strict prefix of a word in it, i.e. the segment most likely ended inside that word.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# ±0.25 s around every reference boundary (NIST md-eval default), i.e. pyannote collar=0.5.
DER_COLLAR_EACH_SIDE_S = 0.25


@dataclass(frozen=True)
class TimedWord:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Segment:
    """A reference turn or a hypothesis segment; `words` is empty for references."""

    start: float
    end: float
    speaker: str
    language: str
    text: str
    words: tuple[TimedWord, ...] = ()


@dataclass
class ErrorTally:
    """Edit operations against a reference of `length` tokens; adds up across turns and files."""

    errors: int = 0
    length: int = 0

    def add(self, other: ErrorTally) -> None:
        self.errors += other.errors
        self.length += other.length

    @property
    def rate(self) -> float | None:
        return self.errors / self.length if self.length else None


def normalize_text(text: str) -> str:
    lowered = text.lower().replace("ё", "е")
    # Punctuation (P*) and symbols (S*) become spaces, so "Алматы," and "Алматы" match and "Иссык-Куль" is two words.
    cleaned = "".join(" " if unicodedata.category(char)[0] in "PS" else char for char in lowered)
    return re.sub(r"\s+", " ", cleaned).strip()


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance (substitutions, deletions, insertions all cost 1)."""
    previous = list(range(len(hypothesis) + 1))
    for ref_index, ref_token in enumerate(reference, start=1):
        current = [ref_index]
        for hyp_index, hyp_token in enumerate(hypothesis, start=1):
            current.append(
                min(
                    previous[hyp_index] + 1,  # deletion
                    current[hyp_index - 1] + 1,  # insertion
                    previous[hyp_index - 1] + (ref_token != hyp_token),  # substitution or match
                )
            )
        previous = current
    return previous[-1]


def word_errors(reference: str, hypothesis: str) -> ErrorTally:
    ref_words = normalize_text(reference).split()
    return ErrorTally(edit_distance(ref_words, normalize_text(hypothesis).split()), len(ref_words))


def char_errors(reference: str, hypothesis: str) -> ErrorTally:
    ref_chars = list(normalize_text(reference))
    return ErrorTally(edit_distance(ref_chars, list(normalize_text(hypothesis))), len(ref_chars))


def overlap(a_start: float, a_end: float, b_start: float, b_end: float) -> float:
    return max(0.0, min(a_end, b_end) - max(a_start, b_start))


def _nearest_turn(reference: Sequence[Segment], start: float, end: float) -> int:
    """Index of the turn that overlaps [start, end] longest, else the one closest in time."""
    best_overlap = max(overlap(turn.start, turn.end, start, end) for turn in reference)
    if best_overlap > 0:
        return max(range(len(reference)), key=lambda i: overlap(reference[i].start, reference[i].end, start, end))
    middle = (start + end) / 2
    return min(range(len(reference)), key=lambda i: max(reference[i].start - middle, middle - reference[i].end))


def hypothesis_text_per_turn(reference: Sequence[Segment], hypothesis: Iterable[Segment]) -> list[str]:
    """The hypothesis text that belongs to each reference turn, in time order.

    Words with timings go by their midpoint; a segment without words goes whole to the
    turn it overlaps most."""
    pieces: list[list[tuple[float, str]]] = [[] for _ in reference]
    for segment in hypothesis:
        if segment.words:
            for word in segment.words:
                middle = (word.start + word.end) / 2
                pieces[_nearest_turn(reference, middle, middle)].append((word.start, word.text))
        elif segment.text.strip():
            pieces[_nearest_turn(reference, segment.start, segment.end)].append((segment.start, segment.text))
    return [" ".join(text for _, text in sorted(turn_pieces, key=lambda piece: piece[0])) for turn_pieces in pieces]


def dominant_language(turn: Segment, hypothesis: Iterable[Segment]) -> str | None:
    """The language of the hypothesis segments overlapping `turn` longest in total (None if none overlap)."""
    seconds_by_language: dict[str, float] = {}
    for segment in hypothesis:
        shared = overlap(turn.start, turn.end, segment.start, segment.end)
        if shared > 0:
            seconds_by_language[segment.language] = seconds_by_language.get(segment.language, 0.0) + shared
    if not seconds_by_language:
        return None
    return max(seconds_by_language, key=seconds_by_language.__getitem__)


def diarization_errors(
    reference: Sequence[Segment], hypothesis: Sequence[Segment], duration: float, collar_each_side: float
) -> dict[str, float]:
    """pyannote's DER components in seconds over [0, duration]: total (scored reference speech),
    missed detection, false alarm, confusion."""
    from pyannote.core import Annotation, Timeline
    from pyannote.core import Segment as PyannoteSegment
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(segments: Sequence[Segment]) -> Annotation:
        result = Annotation()
        for index, segment in enumerate(segments):
            if segment.end > segment.start:
                result[PyannoteSegment(segment.start, segment.end), index] = segment.speaker
        return result

    metric = DiarizationErrorRate(collar=2 * collar_each_side, skip_overlap=False)
    details = metric(
        annotation(reference), annotation(hypothesis), uem=Timeline([PyannoteSegment(0.0, duration)]), detailed=True
    )
    return {name: float(details[name]) for name in ("total", "missed detection", "false alarm", "confusion")}


@dataclass
class FileScore:
    file_id: str
    duration_s: float
    reference_speakers: int
    hypothesis_speakers: int
    words: dict[str, ErrorTally] = field(default_factory=dict)
    chars: dict[str, ErrorTally] = field(default_factory=dict)
    turns_by_language: dict[str, int] = field(default_factory=dict)
    language_correct_by_language: dict[str, int] = field(default_factory=dict)
    der_components: dict[str, float] = field(default_factory=dict)

    @property
    def der(self) -> float | None:
        total = self.der_components.get("total", 0.0)
        if not total:
            return None
        errors = sum(self.der_components[name] for name in ("missed detection", "false alarm", "confusion"))
        return errors / total

    def as_row(self) -> dict:
        return {
            "id": self.file_id,
            "duration_s": round(self.duration_s, 3),
            "reference_speakers": self.reference_speakers,
            "hypothesis_speakers": self.hypothesis_speakers,
            "der": _round(self.der),
            "wer": {language: _round(tally.rate) for language, tally in sorted(self.words.items())},
            "cer": {language: _round(tally.rate) for language, tally in sorted(self.chars.items())},
            "language_id_accuracy": _round(
                sum(self.language_correct_by_language.values()) / sum(self.turns_by_language.values())
            ),
        }


def score_file(
    file_id: str,
    reference: Sequence[Segment],
    hypothesis: Sequence[Segment],
    duration: float,
    collar_each_side: float = DER_COLLAR_EACH_SIDE_S,
) -> FileScore:
    score = FileScore(
        file_id=file_id,
        duration_s=duration,
        reference_speakers=len({turn.speaker for turn in reference}),
        hypothesis_speakers=len({segment.speaker for segment in hypothesis if segment.end > segment.start}),
    )
    for turn, heard in zip(reference, hypothesis_text_per_turn(reference, hypothesis), strict=True):
        score.words.setdefault(turn.language, ErrorTally()).add(word_errors(turn.text, heard))
        score.chars.setdefault(turn.language, ErrorTally()).add(char_errors(turn.text, heard))
        score.turns_by_language[turn.language] = score.turns_by_language.get(turn.language, 0) + 1
        correct = dominant_language(turn, hypothesis) == turn.language
        score.language_correct_by_language[turn.language] = (
            score.language_correct_by_language.get(turn.language, 0) + correct
        )
    score.der_components = diarization_errors(reference, hypothesis, duration, collar_each_side)
    return score


def summarize(scores: Sequence[FileScore], collar_each_side: float = DER_COLLAR_EACH_SIDE_S) -> dict:
    """Corpus totals: rates are pooled (summed errors over summed reference), not averaged per file."""
    words: dict[str, ErrorTally] = {}
    chars: dict[str, ErrorTally] = {}
    turns: dict[str, int] = {}
    correct: dict[str, int] = {}
    der_sums = {"total": 0.0, "missed detection": 0.0, "false alarm": 0.0, "confusion": 0.0}
    for score in scores:
        for language, tally in score.words.items():
            words.setdefault(language, ErrorTally()).add(tally)
        for language, tally in score.chars.items():
            chars.setdefault(language, ErrorTally()).add(tally)
        for language, count in score.turns_by_language.items():
            turns[language] = turns.get(language, 0) + count
            correct[language] = correct.get(language, 0) + score.language_correct_by_language.get(language, 0)
        for name in der_sums:
            der_sums[name] += score.der_components.get(name, 0.0)
    return {
        "file_count": len(scores),
        "audio_seconds": round(sum(score.duration_s for score in scores), 3),
        "wer": {language: _round(tally.rate) for language, tally in sorted(words.items())},
        "cer": {language: _round(tally.rate) for language, tally in sorted(chars.items())},
        "reference_words": {language: tally.length for language, tally in sorted(words.items())},
        "language_id_accuracy": _round(sum(correct.values()) / sum(turns.values())) if turns else None,
        "language_id_accuracy_by_language": {
            language: _round(correct[language] / count) for language, count in sorted(turns.items())
        },
        "reference_turns": dict(sorted(turns.items())),
        **{name: value for name, value in der_figures(der_sums).items() if name != "der_confusion_within_detected"},
        "der_collar_each_side_s": collar_each_side,
        "der_skip_overlap": False,
        "speaker_count_accuracy": _round(
            sum(score.hypothesis_speakers == score.reference_speakers for score in scores) / len(scores)
        )
        if scores
        else None,
    }


def der_figures(components: dict[str, float]) -> dict[str, float | None]:
    """DER and its parts as fractions of scored reference speech, from summed `diarization_errors` seconds.

    `der_confusion_within_detected` is confusion over the reference speech the system did detect
    (total − missed): how often a detected stretch goes to the wrong speaker, apart from the VAD."""
    scored = components.get("total", 0.0)
    missed = components.get("missed detection", 0.0)
    false_alarm = components.get("false alarm", 0.0)
    confusion = components.get("confusion", 0.0)
    detected = scored - missed
    return {
        "der": _round((missed + false_alarm + confusion) / scored) if scored else None,
        "der_missed": _round(missed / scored) if scored else None,
        "der_false_alarm": _round(false_alarm / scored) if scored else None,
        "der_confusion": _round(confusion / scored) if scored else None,
        "der_confusion_within_detected": _round(confusion / detected) if detected > 0 else None,
    }


# Speakers with less speech than this are not counted (see the module docstring).
MIN_COUNTED_SPEAKER_SECONDS = 2.0


def speech_seconds_by_speaker(segments: Iterable[Segment]) -> dict[str, float]:
    """Each speaker's speech time: the union of their segments, so a speaker's own overlapping
    RTTM lines are not counted twice."""
    intervals: dict[str, list[tuple[float, float]]] = {}
    for segment in segments:
        if segment.end > segment.start:
            intervals.setdefault(segment.speaker, []).append((segment.start, segment.end))
    seconds = {}
    for speaker, spans in intervals.items():
        total, covered_until = 0.0, -float("inf")
        for start, end in sorted(spans):
            if end > covered_until:
                total += end - max(start, covered_until)
                covered_until = end
        seconds[speaker] = total
    return seconds


def counted_speakers(segments: Iterable[Segment], min_seconds: float = MIN_COUNTED_SPEAKER_SECONDS) -> int:
    return int(sum(seconds >= min_seconds for seconds in speech_seconds_by_speaker(segments).values()))


@dataclass
class SecondsTally:
    """Seconds of hypothesis speech that `matched` (e.g. carry the right language) out of `total`."""

    matched: float = 0.0
    total: float = 0.0

    def add(self, other: SecondsTally) -> None:
        self.matched += other.matched
        self.total += other.total

    @property
    def share(self) -> float | None:
        return self.matched / self.total if self.total else None


def language_seconds(hypothesis: Iterable[Segment], reference_language: str) -> SecondsTally:
    """Hypothesis speech time, and how much of it is labelled `reference_language` (duration-weighted)."""
    tally = SecondsTally()
    for segment in hypothesis:
        seconds = max(0.0, segment.end - segment.start)
        tally.total += seconds
        if segment.language == reference_language:
            tally.matched += seconds
    return tally


def time_ordered_text(hypothesis: Iterable[Segment]) -> str:
    """The hypothesis as one text in time order, for a whole-file transcript reference."""
    return " ".join(segment.text for segment in sorted(hypothesis, key=lambda segment: (segment.start, segment.end)))


def cut_word_completions(word: str, vocabulary: set[str]) -> list[str]:
    """The reference words that a (normalised) hypothesis `word` is a strict prefix of, unless the
    word is itself a reference word; empty when it is not a cut word."""
    if not word or word in vocabulary:
        return []
    return sorted(reference for reference in vocabulary if len(reference) > len(word) and reference.startswith(word))


def cut_words(hypothesis: Iterable[Segment], reference_text: str) -> list[dict]:
    """Segments whose last word looks cut off: one entry per such segment (its end, the word, the
    reference words it could have been)."""
    vocabulary = set(normalize_text(reference_text).split())
    found = []
    for segment in sorted(hypothesis, key=lambda segment: segment.start):
        words = normalize_text(segment.text).split()
        completions = cut_word_completions(words[-1], vocabulary) if words else []
        if completions:
            found.append({"end": round(segment.end, 3), "word": words[-1], "completions": completions})
    return found


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
