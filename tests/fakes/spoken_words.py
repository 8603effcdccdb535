"""A recording spoken word by word (espeak-ng, resampled and trimmed by sox), so every word's time is exact.

Each word is synthesised on its own, trimmed of espeak's silence and placed with a fixed gap after the
previous one (a longer gap between turns), so the planned times of the test GigaAM model
(`tests/fakes/gigaam_model.py`) are where the words really sound, and the pauses between words are
really quiet (an engine that cuts at quiet points cuts there). A faint fixed noise floor is added, as
in any real recording, so that no two silences are the same samples.
"""

from __future__ import annotations

import re
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kazru.adapters.audio import SAMPLE_RATE
from tests.fakes.gigaam_model import PlannedWord

# espeak's own leading and trailing silence cut at 0.1 % of full scale (as bench/accuracy/generate.py does).
TRIM_EFFECT = ["silence", "1", "0.05", "0.1%", "reverse", "silence", "1", "0.05", "0.1%", "reverse"]
NOISE_FLOOR = 3e-4


@dataclass(frozen=True)
class Turn:
    """One speaker's sentence: an espeak voice ("ru+m3", "kk+f3", "en+m1"), the text as it should read."""

    voice: str
    text: str
    speaker: str


@dataclass(frozen=True)
class SpokenTurn:
    turn: Turn
    start: float
    end: float
    words: tuple[PlannedWord, ...]


def speak_word(word: str, voice: str, rate: int = 130) -> np.ndarray:
    espeak = subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "--stdout", word], check=True,
                            capture_output=True).stdout  # fmt: skip
    raw = subprocess.run(["sox", "-t", "wav", "-", "-t", "f32", "-r", str(SAMPLE_RATE), "-c", "1", "-",
                          *TRIM_EFFECT], input=espeak, check=True, capture_output=True).stdout  # fmt: skip
    return np.frombuffer(raw, dtype=np.float32)


def speak(
    turns: Sequence[Turn], *, lead: float = 0.6, word_gap: float = 0.15, turn_gap: float = 1.4, tail: float = 0.6
) -> tuple[np.ndarray, list[SpokenTurn]]:
    """The recording (16 kHz mono float32) and where each turn and word is in it. Words are the text's
    words lowercased without punctuation: what GigaAM writes."""
    pieces: list[np.ndarray] = [np.zeros(round(lead * SAMPLE_RATE), dtype=np.float32)]
    at = lead
    spoken = []
    for number, turn in enumerate(turns):
        if number:
            pieces.append(np.zeros(round(turn_gap * SAMPLE_RATE), dtype=np.float32))
            at += turn_gap
        words = []
        for index, word in enumerate(re.findall(r"[\w']+", turn.text.lower())):
            if index:
                pieces.append(np.zeros(round(word_gap * SAMPLE_RATE), dtype=np.float32))
                at += word_gap
            samples = speak_word(word, turn.voice)
            pieces.append(samples)
            words.append(PlannedWord(word, round(at, 4), round(at + len(samples) / SAMPLE_RATE, 4)))
            at += len(samples) / SAMPLE_RATE
        spoken.append(SpokenTurn(turn, words[0].start_seconds, words[-1].end_seconds, tuple(words)))
    pieces.append(np.zeros(round(tail * SAMPLE_RATE), dtype=np.float32))
    audio = np.concatenate(pieces)
    audio += NOISE_FLOOR * np.random.default_rng(23).standard_normal(len(audio)).astype(np.float32)
    return audio, spoken


def write_wav(path: Path, audio: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(SAMPLE_RATE)
        file.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path
