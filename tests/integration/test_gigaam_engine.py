"""The GigaAM engine (services/transcriber/engines/gigaam.py) through the real onnx-asr, with the test model
(tests/fakes/gigaam_model.py) that spells planned words where a word-by-word espeak recording says them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from kazru.adapters.audio import SAMPLE_RATE
from kazru.domain.recognition import SpeechRegion
from kazru.settings import REPO_ROOT, GigaamSettings, Settings
from services.transcriber.engines import create_speech_engine
from services.transcriber.engines.gigaam import GigaamEngine, cut_points
from tests.fakes.gigaam_model import build_gigaam_model
from tests.fakes.spoken_words import Turn, speak

FRAME = 0.04
TURNS = [
    Turn("ru+m3", "Погода в Алматы сегодня очень тёплая", "A"),
    Turn("kk+f3", "Бүгін ауа райы өте жақсы", "B"),
    Turn("ru+m3", "Москва является столицей России", "A"),
    Turn("kk+f3", "Алматы Қазақстандағы ең үлкен қала ма", "B"),
    Turn("en+m1", "Good morning everyone", "C"),
]


@pytest.fixture(scope="module")
def spoken():
    return speak(TURNS)


@pytest.fixture(scope="module")
def model_folder(spoken, tmp_path_factory):
    audio, turns = spoken
    script = [word for turn in turns for word in turn.words]
    return build_gigaam_model(tmp_path_factory.mktemp("gigaam"), script, audio=audio)


def engine_with(folder, **options) -> GigaamEngine:
    engine = create_speech_engine(Settings(engine="gigaam", gigaam=GigaamSettings(model_dir=folder, **options)))
    assert isinstance(engine, GigaamEngine)
    return engine


def recognise(engine, audio, turns, languages=("kk", "ru", "en")):
    regions = [SpeechRegion(turn.start, turn.end, turn.turn.speaker) for turn in turns]
    progress: list[float] = []
    recognition = engine.recognize_blocking(audio, list(languages), regions, progress.append)
    return recognition, progress


def assert_words_at_planned_times(spans, turns):
    assert len(spans) == len(turns)
    for span, turn in zip(spans, turns, strict=True):
        assert [word.text.lower().rstrip(".?") for word in span.words] == [word.text for word in turn.words]
        for word, planned in zip(span.words, turn.words, strict=True):
            assert abs(word.start - planned.start_seconds) <= FRAME, (word, planned)
            # The test model writes a one-letter word's letter on its first frame only, whatever its length.
            if len(planned.text) > 1:
                assert abs(word.end - planned.end_seconds) <= FRAME, (word, planned)
            assert 0.95 <= word.probability <= 1.0  # the model's posterior on its frames (0.99)


def test_planned_words_times_languages_and_sentences(spoken, model_folder):
    audio, turns = spoken
    recognition, progress = recognise(engine_with(model_folder), audio, turns)
    assert (recognition.engine, recognition.model) == ("gigaam", "gigaam-multilingual-ctc")
    assert_words_at_planned_times(recognition.spans, turns)
    assert [span.language for span in recognition.spans] == ["ru", "kk", "ru", "kk", "en"]
    texts = [" ".join(word.text for word in span.words) for span in recognition.spans]
    assert texts == [
        "Погода в алматы сегодня очень тёплая.",
        "Бүгін ауа райы өте жақсы.",
        "Москва является столицей россии.",
        "Алматы қазақстандағы ең үлкен қала ма?",  # a Kazakh question particle ends a question
        "Good morning everyone.",
    ]
    assert progress and progress[-1] == 1.0 and progress == sorted(progress)


def test_only_allowed_languages_are_chosen(spoken, model_folder):
    audio, turns = spoken
    recognition, _ = recognise(engine_with(model_folder), audio, turns, languages=("ru",))
    assert {span.language for span in recognition.spans} == {"ru"}


def test_long_regions_are_cut_into_pieces_at_pauses_and_lose_no_word(spoken, model_folder):
    audio, turns = spoken
    # The whole recording as one region: pieces of at most 3 s, cut in the pauses between words.
    region = [SpeechRegion(0.0, len(audio) / SAMPLE_RATE, "A")]
    engine = engine_with(model_folder, max_piece_seconds=3.0, batch_size=3)
    recognition = engine.recognize_blocking(audio, ["kk", "ru", "en"], region, lambda fraction: None)
    (span,) = recognition.spans
    planned = [word for turn in turns for word in turn.words]
    assert [word.text.lower().rstrip(".?") for word in span.words] == [word.text for word in planned]
    for word, plan in zip(span.words, planned, strict=True):
        assert abs(word.start - plan.start_seconds) <= FRAME
        assert len(plan.text) == 1 or abs(word.end - plan.end_seconds) <= FRAME

    cuts = cut_points(audio, 3 * SAMPLE_RATE)
    edges = [0, *cuts, len(audio)]
    assert max(b - a for a, b in zip(edges, edges[1:], strict=False)) <= 3 * SAMPLE_RATE
    assert len(cuts) >= len(audio) // (3 * SAMPLE_RATE)
    for cut in cuts:  # every cut is in a pause, never inside a word
        seconds = cut / SAMPLE_RATE
        assert not any(plan.start_seconds <= seconds <= plan.end_seconds for plan in planned), seconds


def test_a_cut_goes_to_the_quietest_frame_near_the_limit():
    rng = np.random.default_rng(5)
    loud = (0.3 * rng.standard_normal(10 * SAMPLE_RATE)).astype(np.float32)
    loud[round(7.50 * SAMPLE_RATE) : round(7.53 * SAMPLE_RATE)] *= 0.01  # a 30 ms pause at 7.5 s
    loud[round(2.00 * SAMPLE_RATE) : round(2.10 * SAMPLE_RATE)] = 0.0  # quieter still, but far from the limit
    (cut,) = cut_points(loud, 8 * SAMPLE_RATE)
    assert 7.50 <= cut / SAMPLE_RATE <= 7.53
    assert cut_points(loud, 10 * SAMPLE_RATE) == []


def test_start_up_without_the_model_fails_at_once_naming_the_folder_and_files(tmp_path):
    folder = tmp_path / "models" / "gigaam-multilingual-ctc"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # a partial install
    environment = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(REPO_ROOT),
        "KAZRU_ENGINE": "gigaam",
        "KAZRU_DATA_DIR": str(tmp_path),
        # Nothing listens here: the transcriber must stop before it connects anywhere.
        "KAZRU_NATS_URL": "nats://127.0.0.1:9",
        "KAZRU_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none",
    }
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "services.transcriber"], env=environment, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert elapsed < 30, elapsed
    output = result.stdout + result.stderr
    assert str(folder) in output
    assert "multilingual_ctc.int8.onnx" in output and "multilingual_vocab.txt" in output
    assert "missing multilingual_ctc.int8.onnx, multilingual_vocab.txt." in output  # config.json is there
    assert "model_install --engine gigaam" in output
