"""A decode that loops loses its place: the turns after the loop are recognised again on their own
(the real model; only the loop is forced, by cutting the first decode short as the loop cut would)."""

from __future__ import annotations

import asyncio

import numpy as np

from kazru.adapters import audio
from kazru.domain.recognition import SpeechRegion
from tests.conftest import REAL_SPEECH_CLIP, REAL_SPEECH_WORDS

PAUSE_SECONDS = 0.8


def test_the_turns_after_a_loop_are_recognised_again(pipeline, monkeypatch):
    engine = pipeline.engine
    clip = asyncio.run(audio.decode_pcm16k(str(REAL_SPEECH_CLIP)))
    pause = np.zeros(int(PAUSE_SECONDS * audio.SAMPLE_RATE), dtype=np.float32)
    samples = np.concatenate([pause, clip, pause, clip, pause, clip, pause])
    seconds = len(clip) / audio.SAMPLE_RATE
    regions = [
        SpeechRegion(PAUSE_SECONDS + k * (seconds + PAUSE_SECONDS), (k + 1) * (seconds + PAUSE_SECONDS))
        for k in range(3)
    ]
    decode, decoded = engine._decode, []

    def first_decode_loops(encoder_output, language):
        tokens, looped = decode(encoder_output, language)
        decoded.append(len(tokens))
        if len(decoded) == 1:  # the whole window: keep the first third, as a loop cut after it would
            return tokens[: len(tokens) // 3], True
        return tokens, looped

    monkeypatch.setattr(engine, "_decode", first_decode_loops)
    recognition = engine.recognize_blocking(samples, ["ru"], regions, lambda _: None)

    assert len(decoded) >= 2, "the window was decoded once: nothing recovered the lost turns"
    by_region = {round(span.start, 2): " ".join(word.text for word in span.words).lower() for span in recognition.spans}
    assert len(by_region) == 3, by_region
    for text in by_region.values():
        assert sum(word in text for word in REAL_SPEECH_WORDS) >= len(REAL_SPEECH_WORDS) - 1, text
