"""One recording → one transcript: diarize, recognise each speaker turn, assemble.

Plain domain code (no bus, no database): the worker and the accuracy
benchmark both run exactly this.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kazru.adapters.audio import Recording, as_recording
from kazru.domain import notices
from kazru.domain.notices import JobNotice
from kazru.domain.recognition import ExternalCopyCallback, ProgressCallback, SpeechEngine, SpeechRegion
from kazru.domain.transcript import Transcript
from kazru.observability import metrics, tracing
from kazru.settings import Settings
from services.transcriber.assembly import assemble
from services.transcriber.diarization import Diarizer
from services.transcriber.engines import create_speech_engine
from services.transcriber.languages_heard import language_outside
from services.transcriber.speaker_embedding import CamPlusPlusEncoder
from services.transcriber.speech_segmentation import SpeechSegmentation

# Share of the progress bar given to diarization at least; recognition takes the rest.
DIARIZATION_PROGRESS_SHARE = 0.1
# The work of one second of speech (its speaker embeddings and its recognition) against the VAD's work on one
# second of audio: BENCHMARKS.md's 1 h recording took VAD 11 s, CAM++ 25 s and Whisper 130 s. Progress counts
# audio scanned as work done, so a long silence moves the bar instead of holding it at 0 % until the end.
SPEECH_WORK_PER_SCANNED_SECOND = 20.0


def scanned_share(scanned: float, speech_found: float, duration: float) -> float:
    """The share of the job's work done once the VAD has scanned `scanned` of `duration` seconds and found
    `speech_found` seconds of speech there: the rest is expected to hold speech at the same rate."""
    if scanned <= 0 or duration <= 0:
        return 0.0
    expected_speech = speech_found / scanned * duration
    return min(scanned / (duration + SPEECH_WORK_PER_SCANNED_SECOND * expected_speech), 1.0)


@contextlib.contextmanager
def metrics_of_failures(engine: str):
    """Count a failure of the speech engine or the diarizer (and let it go on up)."""
    try:
        yield
    except Exception as error:
        metrics.ENGINE_ERRORS.labels(engine, type(error).__name__).inc()
        raise


@dataclass(frozen=True)
class TranscriptionResult:
    engine: str
    transcript: Transcript
    # Which model transcribed (`Recognition.model`).
    model: str = ""
    billed_seconds: float = 0.0
    external_operation_id: str | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # What the reader should know about the transcript (no speech, speech in a language not chosen).
    notices: list[JobNotice] = field(default_factory=list)
    # The engine's languages heard over every language it knows (kazru.domain.recognition.Recognition).
    languages_heard: dict[str, float] = field(default_factory=dict)

    @property
    def segments(self):
        return self.transcript.segments

    @property
    def speakers(self):
        return self.transcript.speakers

    @property
    def language_shares(self) -> dict[str, float]:
        return self.transcript.language_shares


class TranscriptionPipeline:
    def __init__(
        self, engine: SpeechEngine, diarizer: Diarizer, supported_languages: Sequence[str] = ("kk", "ru", "en")
    ):
        self.engine = engine
        self._diarizer = diarizer
        # Named in a notice's advice: what a job could have been given instead.
        self._supported_languages = tuple(supported_languages)

    async def run(
        self,
        audio: np.ndarray | Recording,
        languages: Sequence[str],
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        on_progress: ProgressCallback = lambda fraction: None,
        on_external_copy: ExternalCopyCallback | None = None,
    ) -> TranscriptionResult:
        """`audio`: a file-backed Recording for a job (read piece by piece), or a short clip's samples."""
        recording = as_recording(audio)

        def scan_progress(scanned: float, speech_found: float) -> None:
            on_progress(scanned_share(scanned, speech_found, recording.duration))

        with tracing.span("diarization"), metrics_of_failures("diarizer"):
            diarization = await asyncio.to_thread(
                self._diarizer.diarize, recording, min_speakers, max_speakers, scan_progress
            )
        speech = sum(region.end - region.start for region in diarization.speech)
        diarized = max(DIARIZATION_PROGRESS_SHARE, scanned_share(recording.duration, speech, recording.duration))
        on_progress(diarized)
        regions = [SpeechRegion(turn.start, turn.end, turn.speaker) for turn in diarization.turns]

        def engine_progress(fraction: float) -> None:
            on_progress(diarized + (1 - diarized) * fraction)

        started = time.perf_counter()
        with tracing.span("engine", attributes={"engine": self.engine.name}), metrics_of_failures(self.engine.name):
            recognition = await self.engine.recognize(recording, languages, regions, engine_progress, on_external_copy)
        stages = {**diarization.stage_seconds, "engine_seconds": time.perf_counter() - started}
        stages.update({f"engine_{name}": value for name, value in recognition.stage_seconds.items()})

        started = time.perf_counter()
        transcript = assemble(recognition, diarization)
        stages["assembly_seconds"] = time.perf_counter() - started
        stages["audio_seconds"] = recording.duration
        return TranscriptionResult(
            engine=recognition.engine,
            transcript=transcript,
            model=recognition.model,
            billed_seconds=recognition.billed_seconds,
            external_operation_id=recognition.external_operation_id,
            stage_seconds=stages,
            notices=job_notices(transcript, recognition.languages_heard, languages, self._supported_languages),
            languages_heard=recognition.languages_heard,
        )


def job_notices(
    transcript: Transcript, heard: dict[str, float], allowed: Sequence[str], supported: Sequence[str]
) -> list[JobNotice]:
    """No speech found, or most of it in a language not among `allowed`: said, never silently written."""
    if not transcript.segments:
        return [notices.no_speech()]
    outside = language_outside(heard, allowed, supported)
    return [notices.unsupported_language(outside, allowed, supported)] if outside else []


def create_diarizer(settings: Settings) -> Diarizer:
    """The diarizer with the CAM++ speaker encoder and the speech segmentation model installed by `make model`."""
    return Diarizer(
        CamPlusPlusEncoder.load(settings.speaker_model_dir),
        segmentation=SpeechSegmentation.load(settings.speaker_model_dir),
    )


def create_pipeline(settings: Settings) -> TranscriptionPipeline:
    """Loads the engine and the speaker encoder once (blocking: seconds for the model)."""
    return TranscriptionPipeline(
        create_speech_engine(settings), create_diarizer(settings), settings.supported_languages
    )
