"""Recognised words + who spoke when → the transcript: segments, speakers, language shares.

Each word takes the speaker whose turn it overlaps most. A segment is one
speaker's words in one language, ended by a change of speaker or language or
by a long pause, so segments are speaker turns split at long pauses whatever
the engine's own utterances were.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from services.transcriber.diarization import TURN_PAUSE_SECONDS, Diarization
from services.transcriber.recognition import Recognition

# Placeholder speaker when diarization found no speech but the engine heard words.
LONE_SPEAKER = "S1"


@dataclass(frozen=True)
class TranscriptWord:
    start: float
    end: float
    text: str
    probability: float
    speaker: str


@dataclass(frozen=True)
class TranscriptSegment:
    start: float
    end: float
    speaker: str
    language: str
    text: str
    confidence: float
    words: tuple[TranscriptWord, ...]


@dataclass(frozen=True)
class SpeakerSummary:
    label: str
    speaking_seconds: float
    segment_count: int


@dataclass(frozen=True)
class Transcript:
    segments: list[TranscriptSegment]
    speakers: list[SpeakerSummary]
    # language → share of speech time (0-1), largest first
    language_shares: dict[str, float]

    @property
    def main_language(self) -> str | None:
        return next(iter(self.language_shares), None)


def assemble(recognition: Recognition, diarization: Diarization) -> Transcript:
    groups: list[tuple[str, str, list[TranscriptWord]]] = []  # (speaker, language, words)
    spans = sorted(recognition.spans, key=lambda span: span.start)
    for span in spans:
        for word in span.words:
            speaker = diarization.speaker_at(word.start, word.end) or LONE_SPEAKER
            placed = TranscriptWord(word.start, word.end, word.text, word.probability, speaker)
            if groups:
                last_speaker, last_language, words = groups[-1]
                if (
                    last_speaker == speaker
                    and last_language == span.language
                    and placed.start - words[-1].end < TURN_PAUSE_SECONDS
                ):
                    words.append(placed)
                    continue
            groups.append((speaker, span.language, [placed]))

    names = _labels_by_first_appearance(speaker for speaker, _, _ in groups)
    segments = [_segment(names[speaker], language, words) for speaker, language, words in groups]
    return Transcript(segments, _speaker_summaries(segments), _language_shares(segments))


def _segment(speaker: str, language: str, words: list[TranscriptWord]) -> TranscriptSegment:
    relabelled = tuple(TranscriptWord(word.start, word.end, word.text, word.probability, speaker) for word in words)
    return TranscriptSegment(
        start=relabelled[0].start,
        end=max(word.end for word in relabelled),
        speaker=speaker,
        language=language,
        text=" ".join(word.text for word in relabelled),
        confidence=math.fsum(word.probability for word in relabelled) / len(relabelled),
        words=relabelled,
    )


def _labels_by_first_appearance(speakers) -> dict[str, str]:
    """S1, S2, ... in the order people first speak in the transcript (a diarized
    speaker with no recognised words gets no label)."""
    names: dict[str, str] = {}
    for speaker in speakers:
        names.setdefault(speaker, f"S{len(names) + 1}")
    return names


def _speaker_summaries(segments: list[TranscriptSegment]) -> list[SpeakerSummary]:
    seconds: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for segment in segments:
        seconds[segment.speaker] += segment.end - segment.start
        counts[segment.speaker] += 1
    return [SpeakerSummary(label, round(seconds[label], 3), counts[label]) for label in seconds]


def _language_shares(segments: list[TranscriptSegment]) -> dict[str, float]:
    seconds: dict[str, float] = defaultdict(float)
    for segment in segments:
        seconds[segment.language] += max(segment.end - segment.start, 0.0)
    total = math.fsum(seconds.values())
    if total <= 0:
        return {}
    ranked = sorted(seconds.items(), key=lambda item: item[1], reverse=True)
    return {language: round(value / total, 4) for language, value in ranked}
