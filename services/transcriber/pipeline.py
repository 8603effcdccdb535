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
from kazru.domain.recognition import ExternalCopyCallback, ProgressCallback, SpeechEngine, SpeechRegion
from kazru.observability import metrics, tracing
from kazru.settings import Settings
from services.transcriber.assembly import Transcript, assemble
from services.transcriber.diarization import Diarizer
from services.transcriber.engines import create_speech_engine
from services.transcriber.speaker_embedding import CamPlusPlusEncoder

# Share of the progress bar given to diarization; recognition takes the rest.
DIARIZATION_PROGRESS_SHARE = 0.1


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
    billed_seconds: float = 0.0
    external_operation_id: str | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)

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
    def __init__(self, engine: SpeechEngine, diarizer: Diarizer):
        self.engine = engine
        self._diarizer = diarizer

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
        with tracing.span("diarization"), metrics_of_failures("diarizer"):
            diarization = await asyncio.to_thread(self._diarizer.diarize, recording, min_speakers, max_speakers)
        on_progress(DIARIZATION_PROGRESS_SHARE)
        regions = [SpeechRegion(turn.start, turn.end, turn.speaker) for turn in diarization.turns]

        def engine_progress(fraction: float) -> None:
            on_progress(DIARIZATION_PROGRESS_SHARE + (1 - DIARIZATION_PROGRESS_SHARE) * fraction)

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
            billed_seconds=recognition.billed_seconds,
            external_operation_id=recognition.external_operation_id,
            stage_seconds=stages,
        )


def create_diarizer(settings: Settings) -> Diarizer:
    """The diarizer with the CAM++ speaker encoder installed by `make model`."""
    return Diarizer(CamPlusPlusEncoder.load(settings.speaker_model_dir))


def create_pipeline(settings: Settings) -> TranscriptionPipeline:
    """Loads the engine and the speaker encoder once (blocking: seconds for the model)."""
    return TranscriptionPipeline(create_speech_engine(settings), create_diarizer(settings))
