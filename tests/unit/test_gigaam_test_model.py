"""The test GigaAM model (tests/fakes/gigaam_model.py) through the real onnx-asr: it spells the planned
words at the planned times, on the whole recording and on pieces cut anywhere and batched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx_asr
import pytest

from tests.conftest import FIXTURES
from tests.fakes.gigaam_model import (
    VOCABULARY,
    PlannedWord,
    build_gigaam_model,
    model_file_name,
    read_audio,
    spread_words,
)

FRAME = 0.04
RECORDING = FIXTURES / "conversation_2spk.flac"  # espeak ru + kk turns, two voices
TURNS = json.loads((FIXTURES / "conversation_2spk.json").read_text(encoding="utf-8"))
SCRIPT = [word for turn in TURNS for word in spread_words(turn["text"], turn["start"], turn["end"])]


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    return read_audio(RECORDING)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    folder = build_gigaam_model(tmp_path_factory.mktemp("gigaam"), SCRIPT, audio=RECORDING)
    return onnx_asr.load_model("gigaam-multilingual-ctc", folder, quantization="int8").with_timestamps()


def words_of(result, offset: float = 0.0) -> list[tuple[str, float, float]]:
    """(word, start, end) from onnx-asr's character tokens: a word ends where its last character's frame ends."""
    words, letters, times = [], [], []
    for token, time in zip([*result.tokens, " "], [*result.timestamps, 0.0], strict=True):
        if token == " ":
            if letters:
                words.append(("".join(letters), offset + times[0], offset + times[-1] + FRAME))
            letters, times = [], []
        else:
            letters.append(token)
            times.append(time)
    return words


def assert_spells(words: list[tuple[str, float, float]], planned: list[PlannedWord]) -> None:
    assert [text for text, _, _ in words] == [word.text for word in planned]
    for (text, start, end), word in zip(words, planned, strict=True):
        assert abs(start - word.start_seconds) <= FRAME, (text, start, word.start_seconds)
        assert abs(end - word.end_seconds) <= FRAME, (text, end, word.end_seconds)


def test_the_folder_is_what_onnx_asr_and_the_installer_expect(tmp_path: Path):
    folder = build_gigaam_model(tmp_path, SCRIPT[:2], audio=RECORDING, model="gigaam-multilingual-large-ctc",
                                quantization="")
    assert sorted(path.name for path in folder.iterdir()) == [
        "config.json", "multilingual_large_ctc.onnx", "multilingual_vocab.txt"
    ]
    assert json.loads((folder / "config.json").read_text())["version"] == "v3"
    vocab = (folder / "multilingual_vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 71 and vocab[-1] == "<blk> 70" and vocab[0] == "\u2581 0"
    assert {"ә", "ғ", "қ", "ң", "ө", "ұ", "ү", "һ", "і", "ё", "w", "'"} <= set(VOCABULARY)
    graph = onnx.load(folder / "multilingual_large_ctc.onnx").graph
    assert [i.name for i in graph.input] == ["features", "feature_lengths"]
    assert [o.name for o in graph.output] == ["log_probs", "encoded_lengths"]
    assert graph.output[0].type.tensor_type.shape.dim[2].dim_value == 71
    # Full precision is another file name: the int8 one is not there.
    assert model_file_name("gigaam-multilingual-ctc", "int8") == "multilingual_ctc.int8.onnx"
    large = onnx_asr.load_model("gigaam-multilingual-large-ctc", folder, quantization=None)
    assert large.recognize(read_audio(RECORDING)) == " ".join(word.text for word in SCRIPT[:2])


def test_the_whole_recording_spells_the_plan_at_its_times(model, samples):
    assert_spells(words_of(model.recognize(samples)), SCRIPT)


def test_pieces_cut_anywhere_and_batched_spell_their_words_at_absolute_times(model, samples):
    # Cut points off the 10 ms hop and inside silence and speech, pieces of 1.1 to 7 s, one padded batch.
    rng = np.random.default_rng(23)
    cuts = [(int(start * 16000) + int(rng.integers(0, 160)), int(end * 16000))
            for start, end in [(0.0, 2.5), (0.77, 5.3), (3.3, 7.9), (6.0, 7.1), (7.7, 14.6), (8.5, 15.5)]]
    pieces = [samples[start:end] for start, end in cuts]
    results = model.recognize(pieces)
    for (start, end), result in zip(cuts, results, strict=True):
        inside = [w for w in SCRIPT if w.start_seconds >= start / 16000 + FRAME and w.end_seconds <= end / 16000]
        assert inside, "each piece holds whole words"
        # A word cut by the piece's edge may show in part: compare the whole words only.
        words = [w for w in words_of(result, start / 16000) if w[1] >= inside[0].start_seconds - FRAME]
        assert_spells(words[: len(inside)], inside)


def test_a_word_confidence_is_its_planned_posterior(tmp_path: Path, samples):
    script = [PlannedWord("сәлем", 0.4, 0.9, confidence=0.6), PlannedWord("мир", 1.0, 1.3)]
    folder = build_gigaam_model(tmp_path, script, audio=samples)
    result = onnx_asr.load_model("gigaam-multilingual-ctc", folder, quantization="int8").with_timestamps().recognize(
        samples[: 16000 * 2]
    )
    assert result.text == "сәлем мир"
    assert np.allclose(result.logprobs[:5], np.log(0.6), atol=1e-4)
    assert np.allclose(result.logprobs[6:], np.log(0.99), atol=1e-4)


def test_a_plan_the_model_cannot_spell_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="lowercase"):
        build_gigaam_model(tmp_path, [PlannedWord("Москва", 0.3, 1.0)], audio=RECORDING)
    with pytest.raises(ValueError, match="too short"):
        build_gigaam_model(tmp_path, [PlannedWord("россии", 0.3, 0.4)], audio=RECORDING)
    with pytest.raises(ValueError, match="space"):
        build_gigaam_model(tmp_path, [PlannedWord("а", 0.3, 0.4), PlannedWord("б", 0.4, 0.5)], audio=RECORDING)
