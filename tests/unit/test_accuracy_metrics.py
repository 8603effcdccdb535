"""The accuracy benchmark's scoring (bench/accuracy/metrics.py) on hand-checked cases,
and the committed conversation fixtures' reference timings against their audio."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.accuracy.metrics import (
    Segment,
    TimedWord,
    char_errors,
    diarization_errors,
    dominant_language,
    edit_distance,
    hypothesis_text_per_turn,
    normalize_text,
    score_file,
    summarize,
    word_errors,
)
from kazru.adapters import audio
from kazru.settings import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "audio"

# Speaker A speaks 0-4 s, B 5-8 s, A again 9-10 s.
REFERENCE = [
    Segment(0.0, 4.0, "A", "ru", "Погода в Алматы сегодня очень тёплая."),
    Segment(5.0, 8.0, "B", "kk", "Бүгін ауа райы өте жақсы."),
    Segment(9.0, 10.0, "A", "kk", "Рахмет."),
]
DURATION = 11.0


def der(reference, hypothesis, collar_each_side=0.25) -> float:
    parts = diarization_errors(reference, hypothesis, DURATION, collar_each_side)
    return (parts["missed detection"] + parts["false alarm"] + parts["confusion"]) / parts["total"]


def relabel(segments, mapping):
    return [Segment(s.start, s.end, mapping[s.speaker], s.language, s.text) for s in segments]


def test_der_is_zero_for_identical_annotations():
    assert der(REFERENCE, REFERENCE) == 0.0


def test_der_ignores_which_names_the_speakers_have():
    assert der(REFERENCE, relabel(REFERENCE, {"A": "SPEAKER_01", "B": "SPEAKER_00"})) == 0.0


def test_der_of_a_missing_speaker_is_their_share_of_scored_speech():
    without_b = [turn for turn in REFERENCE if turn.speaker != "B"]
    # No collar: B's 3 s of 8 s are missed.
    assert der(REFERENCE, without_b, collar_each_side=0.0) == pytest.approx(3 / 8)
    # ±0.25 s around every boundary is not scored: A 3.5 + 0.5 s, B 2.5 s remain; B's 2.5 s are missed.
    parts = diarization_errors(REFERENCE, without_b, DURATION, 0.25)
    assert parts["total"] == pytest.approx(6.5)
    assert parts["missed detection"] == pytest.approx(2.5)
    assert der(REFERENCE, without_b) == pytest.approx(2.5 / 6.5)


def test_der_counts_speech_given_to_the_wrong_speaker_as_confusion():
    merged = relabel(REFERENCE, {"A": "X", "B": "X"})
    parts = diarization_errors(REFERENCE, merged, DURATION, 0.0)
    assert parts["confusion"] == pytest.approx(3.0)
    assert parts["missed detection"] == parts["false alarm"] == 0.0


def test_normalisation_ignores_case_punctuation_and_yo():
    assert normalize_text("Тёплая, ПОГОДА!  «Алматы»…") == "теплая погода алматы"
    assert normalize_text("Сәлеметсіз бе?") == "сәлеметсіз бе"


def test_edit_distance_counts_substitutions_insertions_and_deletions():
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance(["a", "b"], []) == 2


def test_word_error_rate_on_a_hand_checked_sentence():
    # "в" deleted, "очень" inserted: 2 errors over 4 reference words.
    tally = word_errors("Погода в Алматы сегодня", "погода алматы сегодня очень")
    assert (tally.errors, tally.length) == (2, 4)
    assert word_errors("Тёплая погода.", "теплая, погода").rate == 0.0


def test_character_error_rate_counts_spaces():
    assert char_errors("кот", "кит").rate == pytest.approx(1 / 3)
    assert (char_errors("а б", "аб").errors, char_errors("а б", "аб").length) == (1, 3)


def test_words_go_to_the_reference_turn_holding_their_midpoint():
    # One hypothesis segment spanning both of the first two turns, with word timings.
    words = (
        TimedWord(0.5, 1.0, "Погода"),
        TimedWord(1.2, 1.6, "в"),
        TimedWord(5.2, 5.8, "Бүгін"),
        TimedWord(8.3, 8.6, "ой"),  # after B's turn ends, nearest turn is B's
    )
    hypothesis = [Segment(0.3, 8.6, "S0", "ru", "Погода в Бүгін ой", words)]
    assert hypothesis_text_per_turn(REFERENCE, hypothesis) == ["Погода в", "Бүгін ой", ""]


def test_segment_without_words_goes_to_the_turn_it_overlaps_most():
    hypothesis = [Segment(3.0, 7.0, "S0", "kk", "бүгін ауа")]  # 1 s over A, 2 s over B
    assert hypothesis_text_per_turn(REFERENCE, hypothesis) == ["", "бүгін ауа", ""]


def test_language_of_a_turn_is_the_one_covering_it_longest():
    turn = REFERENCE[0]
    hypothesis = [Segment(0.0, 2.8, "S0", "ru", "x"), Segment(2.8, 4.0, "S0", "kk", "y")]
    assert dominant_language(turn, hypothesis) == "ru"
    assert dominant_language(turn, [Segment(4.5, 9.0, "S0", "ru", "x")]) is None


def test_file_and_corpus_scores():
    hypothesis = [
        Segment(0.0, 4.0, "S1", "ru", "Погода в Алматы сегодня очень теплая"),
        Segment(5.0, 8.0, "S2", "ru", "Бугин ауа райы оте жаксы"),  # heard as Russian: 3 of 5 words wrong
        Segment(9.0, 10.0, "S1", "kk", "рахмет"),
    ]
    score = score_file("demo", REFERENCE, hypothesis, DURATION)
    assert score.der == 0.0
    assert (score.words["ru"].errors, score.words["ru"].length) == (0, 6)
    assert (score.words["kk"].errors, score.words["kk"].length) == (3, 6)
    assert score.language_correct_by_language == {"ru": 1, "kk": 1}
    assert score.turns_by_language == {"ru": 1, "kk": 2}

    one_speaker = score_file("merged", REFERENCE, relabel(REFERENCE, {"A": "X", "B": "X"}), DURATION)
    summary = summarize([score, one_speaker])
    assert summary["speaker_count_accuracy"] == 0.5
    assert summary["wer"] == {"kk": round(3 / 12, 4), "ru": 0.0}
    assert summary["language_id_accuracy"] == round(5 / 6, 4)
    assert summary["der_collar_each_side_s"] == 0.25
    assert summary["der"] > 0


@pytest.mark.parametrize(
    "name, speakers, languages",
    [
        ("conversation_3spk", 3, {"ru", "kk"}),
        ("conversation_2spk", 2, {"ru", "kk"}),
    ],
)
async def test_conversation_fixture_references_match_their_audio(name, speakers, languages):
    turns = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    rttm = [line.split() for line in (FIXTURES / f"{name}.rttm").read_text(encoding="utf-8").splitlines()]
    assert [(float(row[3]), float(row[4]), row[7]) for row in rttm] == [
        (pytest.approx(turn["start"]), pytest.approx(turn["end"] - turn["start"]), turn["speaker"]) for turn in turns
    ]
    assert len({turn["speaker"] for turn in turns}) == speakers
    assert {turn["language"] for turn in turns} == languages

    samples = await audio.decode_pcm16k(str(FIXTURES / f"{name}.flac"))
    inside = np.zeros(samples.size, dtype=bool)
    for turn in turns:
        start, end = round(turn["start"] * 16_000), round(turn["end"] * 16_000)
        # Each turn starts and ends with sound (espeak's own silence was trimmed) ...
        assert np.abs(samples[start : start + 800]).max() > 0.01
        assert np.abs(samples[end - 800 : end]).max() > 0.001
        inside[start:end] = True
    # ... and everything outside the turns is digital silence, so the reference times are exact.
    assert np.abs(samples[~inside]).max() == 0.0
