"""The transcript as the product knows it: segments (one speaker's words in one language, timed), the
speakers' summaries and the language shares. The transcriber's assembler makes it from the engine's words
and the diarizer's turns (`services/transcriber/assembly.py`); the job repository stores it
(`kazru/db/job_repository.py`), the one place that turns it into rows."""

from __future__ import annotations

from dataclasses import dataclass


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
