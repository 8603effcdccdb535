"""What every speech engine returns, whatever it is (local Whisper or GigaAM, SpeechKit).

Engines recognise words; speakers come from our own diarizer for every engine
(`diarization.py`) and segments are formed afterwards (`assembly.py`), so an
engine only has to say which words it heard, when, and in which language.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class RecognizedWord:
    start: float
    end: float
    # As the engine wrote it, punctuation attached ("Алматы,"); no surrounding spaces.
    text: str
    probability: float


@dataclass(frozen=True)
class RecognizedSpan:
    """A stretch of speech the engine recognised in one language."""

    start: float
    end: float
    # ISO 639-1, one of the job's allowed languages.
    language: str
    words: tuple[RecognizedWord, ...]


@dataclass(frozen=True)
class Recognition:
    engine: str
    spans: list[RecognizedSpan]
    # Which model transcribed ("whisper-base", "gigaam-multilingual-ctc", "speechkit/general"), so a job can say.
    model: str = ""
    # Audio seconds an external engine bills for this job (0 for local engines).
    billed_seconds: float = 0.0
    # The engine's own id of the stored result, to delete it there.
    external_operation_id: str | None = None
    # Seconds spent per stage inside the engine (logged and measured by benchmarks).
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # Which languages the speech sounds like, over every language the engine can tell (not only the
    # allowed ones): ISO 639-1 → share of the speech, largest first. Empty when the engine cannot tell.
    languages_heard: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SpeechRegion:
    """Where someone speaks (from voice activity detection and diarization), in seconds."""

    start: float
    end: float
    # The diarizer's speaker label, where known: an engine may use the speaker's other turns as context.
    speaker: str | None = None


# Called with the fraction (0-1) of the engine's work done; may be called from any thread.
ProgressCallback = Callable[[float], None]
# Called with the id of a copy of the recording that the engine's provider keeps (a SpeechKit
# operation), as soon as the copy exists: the job records it at once, so the copy can still be
# deleted if this worker dies before the result is stored.
ExternalCopyCallback = Callable[[str], Awaitable[None]]


class RecordedAudio(Protocol):
    """16 kHz mono audio as an engine reads it: piece by piece, so a recording of any length is never in
    memory whole. `kazru.adapters.audio.Recording` is the one the services build (in memory for a short
    clip, a PCM file on disk for a job)."""

    @property
    def sample_count(self) -> int: ...

    @property
    def duration(self) -> float:
        """Seconds."""
        ...

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) as float32 in [-1, 1], cut to the recording."""
        ...

    def seconds(self, start: float, end: float) -> np.ndarray:
        """The samples from `start` to `end` seconds."""
        ...

    @property
    def pcm_path(self) -> Path | None:
        """The file of 16-bit PCM behind the audio, for tools that read it themselves (ffmpeg); None when
        the samples are only in memory."""
        ...


class SpeechEngine(Protocol):
    name: str

    async def recognize(
        self,
        audio: np.ndarray | RecordedAudio,
        languages: Sequence[str],
        regions: Sequence[SpeechRegion],
        on_progress: ProgressCallback,
        on_external_copy: ExternalCopyCallback | None = None,
    ) -> Recognition:
        """Recognise 16 kHz mono audio (a recording, read piece by piece, or a short clip's float32
        samples: `kazru.adapters.audio.as_recording` takes either); `regions` are the speech regions found
        by our VAD/diarizer (an engine may use them to skip silence or ignore them).
        Raises `kazru.domain.errors.KazruError` for a bad input or a refusal that retrying cannot
        fix, any other exception for a transient failure (the job is retried)."""
        ...

    async def forget(self, external_operation_id: str) -> None:
        """Delete any copy of the job the engine keeps (no-op for local engines)."""
        ...
