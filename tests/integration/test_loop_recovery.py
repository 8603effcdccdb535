"""A decode that loops loses its place: the window's other turns are recognised again on their own
(the real model on real speech; only the loop is forced, by cutting the first decode short as the
loop cut would)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from kazru.adapters import audio
from kazru.domain.recognition import SpeechRegion
from tests.conftest import REAL_SPEECH_CLIP

PAUSE_SECONDS = 0.8
# Two more real voices, Kazakh (../shared/corpus, beside the repository in CI too), so that the window
# holds three different turns.
REAL_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "real"
OTHER_TURNS = ("kk_is2ai_example_1.flac", "kk_is2ai_example_2.flac")


def three_turns() -> tuple[np.ndarray, list[SpeechRegion]]:
    """Real Russian, then two real Kazakh commands, with pauses between: three turns in one window."""
    clips = [
        asyncio.run(audio.decode_pcm16k(str(path)))
        for path in (REAL_SPEECH_CLIP, *(REAL_CORPUS / name for name in OTHER_TURNS))
    ]
    pause = np.zeros(int(PAUSE_SECONDS * audio.SAMPLE_RATE), dtype=np.float32)
    pieces, regions, at = [pause], [], PAUSE_SECONDS
    for clip in clips:
        seconds = len(clip) / audio.SAMPLE_RATE
        pieces += [clip, pause]
        regions.append(SpeechRegion(at, at + seconds))
        at += seconds + PAUSE_SECONDS
    return np.concatenate(pieces), regions


def test_the_turns_after_a_loop_are_recognised_again(pipeline, monkeypatch):
    engine = pipeline.engine
    samples, regions = three_turns()
    decode, decoded = engine._decode, []

    def first_decode_loops(encoder_output, language):
        tokens, looped = decode(encoder_output, language)
        decoded.append(len(tokens))
        if len(decoded) == 1:  # the whole window: keep the first third, as a loop cut after it would
            return tokens[: len(tokens) // 3], True
        return tokens, looped

    monkeypatch.setattr(engine, "_decode", first_decode_loops)
    recognition = engine.recognize_blocking(samples, ["kk", "ru"], regions, lambda _: None)

    assert len(decoded) >= 3, "the window was decoded once per language: nothing recovered the lost turns"
    heard = {round(span.start, 2): " ".join(word.text for word in span.words).lower() for span in recognition.spans}
    assert sorted(heard) == [round(region.start, 2) for region in regions], heard
    # Every turn has words again: the Russian sentence several, each Kazakh command (one or two words, which
    # Whisper base writes as it hears them: one word or two, by CPU) at least one.
    assert len(heard[round(regions[0].start, 2)].split()) >= 4, heard
    assert all(text.split() for text in heard.values()), heard
