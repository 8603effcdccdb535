"""The language of a turn from the text a Kazakh-capable model wrote (bare lowercase, no punctuation):
real Kazakh, Russian and English sentences, written as GigaAM writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.transcriber import text_language
from services.transcriber.text_language import TextTurn, choose_segment_languages, text_log_odds

KK_RU = ("kk", "ru")
KK_RU_EN = ("kk", "ru", "en")
CONVERSATION = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "audio" / "conversation_2spk.json").read_text(encoding="utf-8")
)


def as_model_writes(text: str) -> str:
    return " ".join("".join(char if char.isalpha() else " " for char in text.lower()).split())


def alone(text: str, allowed=KK_RU) -> str:
    return choose_segment_languages([TextTurn(None, text, 2.0)], allowed)[0]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("бүгін біздің мектебімізде шет тілдер олимпиадасы өткізіледі", "kk"),
        ("жарықты қос жазбаны оқы", "kk"),
        ("келесі сабақ қашан және қай жерде", "kk"),
        ("сегодня хорошая погода и мы пойдём гулять", "ru"),
        ("он сел к столу начал лупить вареную картошку", "ru"),
        ("я вам на марсе пригожусь", "ru"),
    ],
)
def test_clear_turns_alone(text, language):
    assert alone(text) == language
    assert alone(text, KK_RU_EN) == language


def test_kazakh_letters_are_kazakh_evidence_and_russian_has_none():
    assert text_log_odds("ағайын тату болса ат көп", KK_RU)["kk"] > 1.0
    assert text_log_odds("мы встретились вчера вечером", KK_RU)["ru"] > 1.0
    # Kazakh written without its own letters (a recogniser's slip) still leans to Kazakh by its words.
    assert text_log_odds("мен сабактан сон шаршаймын", KK_RU)["kk"] > 0


def test_one_slipped_kazakh_letter_does_not_make_a_long_russian_turn_kazakh():
    assert alone("мы долго шли по берегу реки и разговаривали о жізни") == "ru"


def test_latin_script_is_english_where_allowed_and_no_evidence_otherwise():
    assert alone("so we need to talk about the schedule", KK_RU_EN) == "en"
    assert alone("okay", KK_RU_EN) == "en"
    assert text_log_odds("so we need to talk", KK_RU) == {"kk": 0.0, "ru": 0.0}
    # A Latin word or two in a Cyrillic turn do not change its script.
    assert alone("мы открыли zoom и начали совещание", KK_RU_EN) == "ru"
    assert alone("біз zoom арқылы сөйлестік", KK_RU_EN) == "kk"


def test_cyrillic_is_never_english():
    assert text_log_odds("да", KK_RU_EN)["en"] < -4


def test_a_short_unsure_turn_takes_its_speakers_language():
    # Alone, Kazakh "осы" (this) reads as Russian and Russian "да" as Kazakh: a one-word turn says too little.
    assert (alone("осы"), alone("да")) == ("ru", "kk")
    turns = [
        TextTurn("A", "сәлеметсіз бе сізді көруге қуаныштымын", 3.0),
        TextTurn("A", "ертең сенбілік сағат тоғызда басталатын болды", 3.0),
        TextTurn("B", "хорошо я понял тогда до завтра", 2.5),
        TextTurn("A", "осы", 0.4),
        TextTurn("B", "да", 0.3),
    ]
    assert choose_segment_languages(turns, KK_RU) == ["kk", "kk", "ru", "kk", "ru"]


def test_a_clear_turn_keeps_its_language_against_its_speaker():
    switching = [
        TextTurn("A", "бүгін біз жаңа жобаны талқылаймыз", 3.0),
        TextTurn("A", "келесі аптада қаламызға облыс әкімі келмекші", 3.0),
        TextTurn("A", "а потом мы поедем на вокзал встречать гостей", 3.0),
        TextTurn("A", "осында қаламын", 1.0),
    ]
    assert choose_segment_languages(switching, KK_RU) == ["kk", "kk", "ru", "kk"]


@pytest.mark.parametrize("allowed", [KK_RU, KK_RU_EN])
def test_a_code_switching_speaker_keeps_a_clear_russian_turn_russian(allowed):
    # conversation_2spk's sentences said by one speaker who switches between turns: the Russian weather
    # sentence, cut at the pause after "в Алматы" as a turn, then two Kazakh sentences. "погода в алматы" is
    # plainly Russian (text ID: p(ru) ~ 0.95), but short: the speaker's two strongly Kazakh turns made it
    # Kazakh while the prior counted in full beside any turn.
    russian, _, kazakh_weather, kazakh_city, _ = (as_model_writes(segment["text"]) for segment in CONVERSATION)
    russian_start = " ".join(russian.split()[:3])
    assert russian_start == "погода в алматы"
    turns = [TextTurn("spk_m3", russian_start, 1.0), TextTurn("spk_m3", kazakh_weather, 1.6)]
    turns.append(TextTurn("spk_m3", kazakh_city, 2.9))
    assert choose_segment_languages(turns, allowed) == ["ru", "kk", "kk"]


def test_the_conversation_keeps_each_turns_language_whoever_speaks_it():
    # The whole conversation_2spk text, as recorded, and with every turn said by one code-switching speaker.
    expected = [segment["language"] for segment in CONVERSATION]
    for speakers in ([segment["speaker"] for segment in CONVERSATION], ["spk_m3"] * len(CONVERSATION)):
        turns = [
            TextTurn(speaker, as_model_writes(segment["text"]), segment["end"] - segment["start"])
            for speaker, segment in zip(speakers, CONVERSATION, strict=True)
        ]
        assert choose_segment_languages(turns, KK_RU) == expected


@pytest.mark.parametrize(
    ("text", "language", "others"),
    [
        ("погода в алматы", "ru", ("әңгіме құрғақ өлең үкі ғұмыр һәм ілгері", "қазақстандағы ең үлкен қала")),
        ("москва является столицей россии", "ru", ("әңгіме құрғақ өлең үкі ғұмыр һәм ілгері",)),
        ("мен университетте оқимын", "kk", ("москва является столицей россии", "сегодня очень тёплая и солнечная")),
    ],
)
def test_a_clear_turn_is_decided_by_its_own_text_however_strong_the_speakers_other_turns(text, language, others):
    # Whatever the speaker said elsewhere, and however much of it: the prior only decides unsure turns.
    turns = [TextTurn("A", text, 1.0)] + [TextTurn("A", other, 5.0) for other in others * 10]
    assert choose_segment_languages(turns, KK_RU)[0] == language


def test_a_turn_without_a_speaker_takes_the_recordings_language():
    turns = [
        TextTurn("A", "адам адамға қонақ жан денеге қонақ", 3.0),
        TextTurn("B", "ақылды адам ерінбейді қуатты адам сүрінбейді", 3.0),
        TextTurn(None, "осы", 0.3),
    ]
    assert choose_segment_languages(turns, KK_RU)[2] == "kk"


def test_a_turn_does_not_count_as_its_own_prior():
    # One speaker, one turn: no other turns, no prior, the turn's own text alone decides.
    assert choose_segment_languages([TextTurn("A", "да", 0.3)], KK_RU) == [alone("да")]


def test_one_allowed_language_and_empty_text():
    assert choose_segment_languages([TextTurn("A", "hello", 1.0)], ["ru"]) == ["ru"]
    # Empty text says nothing: ties go to the first allowed language.
    assert choose_segment_languages([TextTurn(None, "", 1.0)], ["ru", "kk"]) == ["ru"]
    assert choose_segment_languages([], KK_RU) == []
    with pytest.raises(ValueError):
        choose_segment_languages([TextTurn(None, "да", 1.0)], [])


def test_the_evidence_of_a_turn_is_bounded():
    # So that the prior can still move an unsure turn and no single signal is unbounded.
    odds = text_log_odds("әңгіме құрғақ өлең үкі ғұмыр һәм ілгері", KK_RU)
    bound = text_language.KAZAKH_LETTER_CAP + text_language.TEXT_ID_CAP
    assert 0 < odds["kk"] <= bound / 2 + 1e-9
