"""KAZRU_WHISPER_MODEL: a local CTranslate2 folder is used as it is; a name that cannot be had fails at start, clearly."""

from __future__ import annotations

import asyncio

import pytest

from kazru.adapters import audio
from kazru.domain.recognition import SpeechRegion
from kazru.settings import Settings, WhisperSettings
from services.transcriber.engines.whisper import WhisperEngine
from tests.conftest import REAL_SPEECH_CLIP, REAL_SPEECH_SECONDS, REAL_SPEECH_WORDS


def test_a_model_folder_in_the_setting_is_loaded_and_heard_with():
    installed = Settings().model_dir  # the folder `make model` filled, named explicitly
    engine = WhisperEngine(Settings(whisper=WhisperSettings(model=str(installed))))
    samples = asyncio.run(audio.decode_pcm16k(str(REAL_SPEECH_CLIP)))
    recognition = engine.recognize_blocking(samples, ["ru"], [SpeechRegion(0.0, REAL_SPEECH_SECONDS)], lambda _: None)
    text = " ".join(word.text for span in recognition.spans for word in span.words).lower()
    assert all(word in text for word in REAL_SPEECH_WORDS), text


def test_a_model_name_that_cannot_be_fetched_names_the_setting():
    # A repository id that exists nowhere: fails the same way with or without internet.
    with pytest.raises(RuntimeError, match="KAZRU_WHISPER_MODEL='kazru-tests/no-such-model'"):
        WhisperEngine(Settings(whisper=WhisperSettings(model="kazru-tests/no-such-model")))
