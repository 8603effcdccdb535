"""Recognised words + who spoke when → the transcript: segments, speakers, language shares.

Each word takes the speaker whose turn it overlaps most. A segment is one
speaker's words in one language, ended by a change of speaker or language or
by a long pause, so segments are speaker turns split at long pauses whatever
the engine's own utterances were. A segment spans its turn's speech, not just
its words' alignment (see `_speech_bounds`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from kazru.domain.language_shares import language_shares
from kazru.domain.recognition import Recognition
from kazru.domain.transcript import SpeakerSummary, Transcript, TranscriptSegment, TranscriptWord
from services.transcriber.diarization import TURN_PAUSE_SECONDS, Diarization

# Placeholder speaker when diarization found no speech but the engine heard words.
LONE_SPEAKER = "S1"


@dataclass
class _Group:
    """One future segment: consecutive words of one speaker in one language."""

    speaker: str
    language: str
    words: list[TranscriptWord]
    # Diarization turns of the first and the last word (None where no turn was found).
    first_turn: int | None
    last_turn: int | None


def assemble(recognition: Recognition, diarization: Diarization) -> Transcript:
    groups: list[_Group] = []
    spans = sorted(recognition.spans, key=lambda span: span.start)
    for span in spans:
        for word in span.words:
            turn = diarization.turn_index_at(word.start, word.end)
            speaker = LONE_SPEAKER if turn is None else diarization.turns[turn].speaker
            placed = TranscriptWord(word.start, word.end, word.text, word.probability, speaker)
            if groups:
                last = groups[-1]
                if (
                    last.speaker == speaker
                    and last.language == span.language
                    and placed.start - last.words[-1].end < TURN_PAUSE_SECONDS
                ):
                    last.words.append(placed)
                    last.last_turn = turn
                    continue
            groups.append(_Group(speaker, span.language, [placed], turn, turn))

    names = _labels_by_first_appearance(group.speaker for group in groups)
    segments = [
        _segment(names[group.speaker], group, _speech_bounds(groups, index, diarization))
        for index, group in enumerate(groups)
    ]
    return Transcript(segments, _speaker_summaries(segments), _language_shares(segments))


def _speech_bounds(groups: list[_Group], index: int, diarization: Diarization) -> tuple[float, float]:
    """Where the segment's speech starts and ends. Recognised words are timed by the engine's
    alignment, which often starts a word late or ends it early, and an engine may miss a
    first or last word altogether; the diarizer's turn marks where the voice really is. A
    segment that opens (or closes) its turn takes the turn's edge; one that shares the turn
    with a neighbouring segment keeps its word edge on that side, so segments never overlap."""
    group = groups[index]
    start, end = group.words[0].start, max(word.end for word in group.words)
    if group.first_turn is not None and (index == 0 or groups[index - 1].last_turn != group.first_turn):
        start = min(start, diarization.turns[group.first_turn].start)
    if group.last_turn is not None and (index == len(groups) - 1 or groups[index + 1].first_turn != group.last_turn):
        end = max(end, diarization.turns[group.last_turn].end)
    return start, end


def _segment(speaker: str, group: _Group, bounds: tuple[float, float]) -> TranscriptSegment:
    relabelled = tuple(
        TranscriptWord(word.start, word.end, word.text, word.probability, speaker) for word in group.words
    )
    return TranscriptSegment(
        start=bounds[0],
        end=bounds[1],
        speaker=speaker,
        language=group.language,
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
    return language_shares((segment.language, segment.end - segment.start) for segment in segments)
