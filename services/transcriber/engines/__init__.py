"""The speech engines, one module each, behind `kazru.domain.recognition.SpeechEngine`:
`whisper` (faster-whisper, local), `speechkit` (Yandex SpeechKit v3). `create_speech_engine` is the one
place that builds the configured one; each engine's module (and its libraries) loads only when chosen.
"""

from __future__ import annotations

from kazru.domain.recognition import SpeechEngine
from kazru.settings import Settings


def create_speech_engine(settings: Settings) -> SpeechEngine:
    """The engine `KAZRU_ENGINE` names, loaded (blocking: seconds for a local model)."""
    if settings.engine == "speechkit":
        from services.transcriber.engines.speechkit import SpeechKitEngine

        return SpeechKitEngine(settings.speechkit, ffmpeg_path=settings.ffmpeg_path)
    from services.transcriber.engines.whisper import WhisperEngine

    return WhisperEngine(settings)
