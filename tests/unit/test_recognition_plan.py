"""How the Whisper engine cuts a recording into windows, stops loops, and picks each turn's language
(no model: the rules on their own)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kazru.domain.recognition import SpeechRegion
from services.transcriber import language_choice
from services.transcriber.engines.whisper import (
    CHUNK_GAP_SECONDS,
    MAX_CHUNK_SECONDS,
    Chunk,
    WhisperEngine,
    _language_runs,
    _loop_start,
    _loops,
    _regions_the_decode_lost,
    _sub_chunk,
    _without_loop,
    _Word,
    plan_chunks,
)
from services.transcriber.language_choice import Reading, TurnEvidence, choose_languages


def test_turns_close_together_share_a_window_cut_only_in_pauses():
    regions = [SpeechRegion(0.5, 4.0), SpeechRegion(4.6, 9.0), SpeechRegion(9.3, 20.0), SpeechRegion(20.5, 27.0)]
    chunks = plan_chunks(regions, duration=40.0)
    # 0.5-20 s fits one window; adding the last turn would make it 26.5 s... still within 28 s.
    assert [chunk.regions for chunk in chunks] == [(0, 1, 2, 3)]
    longer = [*regions, SpeechRegion(27.4, 33.0)]
    chunks = plan_chunks(longer, duration=40.0)
    assert [chunk.regions for chunk in chunks] == [(0, 1, 2, 3), (4,)]
    # The cut between the two windows lies in the pause between 27.0 and 27.4, on neither turn.
    assert 27.0 <= chunks[0].end <= chunks[1].start <= 27.4
    assert all(chunk.end - chunk.start <= MAX_CHUNK_SECONDS + 1.0 for chunk in chunks)


def test_a_long_silence_starts_a_new_window_and_padding_stays_in_the_pause():
    regions = [SpeechRegion(1.0, 3.0), SpeechRegion(3.0 + CHUNK_GAP_SECONDS + 0.5, 8.0)]
    first, second = plan_chunks(regions, duration=9.0)
    assert (first.regions, second.regions) == ((0,), (1,))
    assert first.start < 1.0 and 3.0 < first.end <= second.start < regions[1].start
    assert second.end <= 9.0


def test_a_region_longer_than_a_window_gets_several():
    chunks = plan_chunks([SpeechRegion(0.0, 70.0)], duration=70.0)
    assert len(chunks) == 3 and all(chunk.end - chunk.start <= MAX_CHUNK_SECONDS + 1.0 for chunk in chunks)
    assert chunks[0].start == 0.0 and chunks[-1].end == 70.0


def test_runs_of_one_language_and_their_part_of_the_window():
    regions = [SpeechRegion(0.0, 2.0), SpeechRegion(2.4, 4.0), SpeechRegion(4.6, 6.0)]
    chunk = Chunk(0.0, 6.3, (0, 1, 2))
    assert _language_runs(chunk, ["kk", "kk", "ru"]) == [("kk", [0, 1]), ("ru", [2])]
    kazakh = _sub_chunk(chunk, [0, 1], regions)
    russian = _sub_chunk(chunk, [2], regions)
    assert (kazakh.start, kazakh.end) == (0.0, pytest.approx(4.3))
    assert (russian.start, russian.end) == (pytest.approx(4.3), 6.3)


@pytest.mark.parametrize(
    ("text", "kept_words"),
    [
        ("ошін түпай ошін түпай ошін түпай ошін", 2),
        ("и вот и вот и вот и вот", 2),
        ("Менуной веточной те окей, Менуной веточной те окей, Менуной веточной те окей", 4),
        ("да да да да да", 1),
    ],
)
def test_loops_are_found_where_they_start(text, kept_words):
    assert _loops(text) and _loop_start(text) == kept_words


@pytest.mark.parametrize(
    "text", ["очень очень хорошо", "Мы втянули его, и он упал, разбил земную кору.", "Алға қарай бес метр жүр"]
)
def test_speech_is_not_a_loop(text):
    assert not _loops(text) and _loop_start(text) is None


class WordTokenizer:
    """One token per word (a leading space on all but the first), as Whisper's tokens join."""

    def __init__(self, words: list[str]):
        self.words = words

    def decode(self, tokens: list[int]) -> str:
        return "".join(("" if i == 0 else " ") + self.words[token] for i, token in enumerate(tokens))


def test_a_looping_decode_keeps_the_phrase_once_and_what_came_before():
    words = ["Сәлем", "ошін", "түпай", "ошін", "түпай", "ошін", "түпай", "ошін", "түпай"]
    tokens = list(range(len(words)))
    kept = _without_loop(tokens, WordTokenizer(words))
    assert WordTokenizer(words).decode(kept) == "Сәлем ошін түпай"
    assert _without_loop(tokens[:3], WordTokenizer(words)) == tokens[:3]  # no loop: all kept


def reading(text: str, score: float) -> Reading:
    characters = sum(char.isalnum() for char in text)
    return Reading(text, score * characters, characters)


def turn(kk: Reading, ru: Reading, head_kk: float, speaker: str = "S1", duration: float = 3.0) -> TurnEvidence:
    return TurnEvidence(duration, speaker, {"kk": kk, "ru": ru}, {"kk": head_kk, "ru": 1 - head_kk})


# What Whisper base gave on real speech (BENCHMARKS.md): a real Kazakh command, and real Russian
# (festvox-ru) whose Kazakh decode came out as Russian text.
REAL_KAZAKH = turn(
    reading("алғаң өрай бізмитр жертокта, сусын солғаң өрай", -0.646),
    reading("Алгогарой весь метр жир токта. Сосу с алгогарой", -0.315),
    head_kk=0.76,
)
REAL_RUSSIAN = turn(
    reading("Лос чувствовал, сердца бьетца чаще, чаще", -0.358),
    reading("Лось чувствовал, сердце бьётся чаще, чаще", -0.10),
    head_kk=0.0001,
)


def test_a_decode_that_loops_or_stops_early_loses_turns_and_a_retry_is_always_shorter():
    regions = [SpeechRegion(0.5, 3.0), SpeechRegion(3.5, 6.0), SpeechRegion(6.5, 9.0), SpeechRegion(9.5, 12.0)]
    chunk = Chunk(0.1, 12.4, (0, 1, 2, 3))

    def said_until(start: float) -> list[_Word]:
        return [_Word(0.6, 1.0, "один", 0.9, -0.1), _Word(start, start + 0.4, "двадва", 0.5, -0.7)]

    # Looped: whatever the kept words' alignment says, every turn after the first.
    assert _regions_the_decode_lost(chunk, said_until(4.0), regions, looped=True) == [1, 2, 3]
    assert _regions_the_decode_lost(chunk, said_until(10.0), regions, looped=True) == [1, 2, 3]
    # Ended early: the turns after its last word; one that reached the last turn lost nothing.
    assert _regions_the_decode_lost(chunk, said_until(4.0), regions, looped=False) == [2, 3]
    assert _regions_the_decode_lost(chunk, said_until(11.0), regions, looped=False) == []
    # Nothing heard: the first turn keeps its (empty) result, every other one is tried again;
    # a window of one turn is never retried.
    assert _regions_the_decode_lost(chunk, [], regions, looped=False) == [1, 2, 3]
    assert _regions_the_decode_lost(Chunk(0.1, 3.2, (0,)), [], regions, looped=True) == []


def test_each_real_turn_gets_its_language():
    assert choose_languages([REAL_KAZAKH], ["kk", "ru"]) == ["kk"]
    assert choose_languages([REAL_RUSSIAN], ["kk", "ru"]) == ["ru"]


def test_no_single_signal_decides_alone():
    # The best per-character score says Russian for real Kazakh (Whisper base's Russian-heavy training);
    # the language head and the text of the Kazakh decode outweigh it, and each is capped.
    odds = language_choice.turn_log_odds(REAL_KAZAKH, ["kk", "ru"])
    assert odds["kk"] > 0 and math.isclose(sum(odds.values()), 0.0, abs_tol=1e-9)
    assert abs(odds["kk"] - odds["ru"]) <= 2 * (
        language_choice.HEAD_CAP + language_choice.TEXT_CAP + language_choice.SCORE_CAP
    )


def test_an_unsure_turn_follows_its_speaker_and_a_sure_one_keeps_its_language():
    unsure = turn(reading("Рахмет", -0.5), reading("Рахмет", -0.5), head_kk=0.5, duration=1.0)
    assert choose_languages([REAL_KAZAKH, unsure], ["kk", "ru"]) == ["kk", "kk"]
    assert choose_languages([REAL_RUSSIAN, unsure], ["kk", "ru"]) == ["ru", "ru"]
    # Code-switching survives the prior: a clear Russian turn among Kazakh ones stays Russian.
    switched = turn(REAL_RUSSIAN.readings["kk"], REAL_RUSSIAN.readings["ru"], head_kk=0.0001, speaker="S2")
    assert choose_languages([REAL_KAZAKH, REAL_KAZAKH, switched], ["kk", "ru"]) == ["kk", "kk", "ru"]


def test_kazakh_letters_are_never_russian_and_one_allowed_language_needs_no_evidence():
    assert language_choice.text_language_probability("Бүгін ауа райы", "ru", ("kk", "ru")) < 0.01
    assert language_choice.text_language_probability("Сегодня хорошая погода", "ru", ("kk", "ru")) > 0.9
    assert choose_languages([REAL_KAZAKH, REAL_RUSSIAN], ["ru"]) == ["ru", "ru"]


def test_a_language_whose_decode_heard_nothing_loses():
    silent_kazakh = turn(Reading("", 0.0, 0), reading("Да, конечно.", -0.4), head_kk=0.5)
    assert choose_languages([silent_kazakh], ["kk", "ru"]) == ["ru"]


def without(turn_: TurnEvidence, language: str) -> TurnEvidence:
    readings = {lang: value for lang, value in turn_.readings.items() if lang != language}
    return TurnEvidence(turn_.duration, turn_.speaker, readings, turn_.head)


def test_real_russian_is_decided_from_its_russian_reading_alone_and_real_kazakh_is_not():
    languages = ["kk", "ru"]
    assert language_choice.clear_by_itself(without(REAL_RUSSIAN, "kk"), languages)
    assert language_choice.turns_that_could_change([without(REAL_RUSSIAN, "kk")] * 3, languages) == []
    # Whisper base's head gives real Kazakh only 0.67-0.76: the engine reads it in both languages at once...
    assert not language_choice.clear_by_itself(without(REAL_KAZAKH, "ru"), languages)
    # ...though its Kazakh reading alone would have done here (the Russian one does not change the choice).
    assert language_choice.turns_that_could_change([without(REAL_KAZAKH, "ru")], languages) == []
    assert choose_languages([without(REAL_KAZAKH, "ru")], languages) == choose_languages([REAL_KAZAKH], languages)
    # A turn whose own evidence barely leans is not decided on one reading.
    leaning = turn(reading("Рахмет", -0.5), reading("Рахмет", -0.5), head_kk=0.55)
    assert language_choice.turns_that_could_change([without(leaning, "ru")], languages) == [0]
    # A language not read cannot be chosen: its words are needed.
    assert language_choice.turns_that_could_change([without(REAL_RUSSIAN, "ru")], languages) == [0]


def test_turns_called_sure_on_missing_readings_choose_what_every_reading_chooses():
    """The promise `turns_that_could_change` makes, on random evidence of every kind: when it names no turn,
    the choice with readings left out equals the choice with all of them. It must also not be vacuous."""
    random = np.random.default_rng(7)
    texts = {"kk": ["Сәлем бәрі", "қазір келемін", "алғаң өрай", ""], "ru": ["Привет всем", "Да, конечно", "Лось", ""],
             "en": ["hello there", "of course", ""]}  # fmt: skip
    sure_cases = 0
    for _ in range(400):
        languages = list(random.permutation(["kk", "ru", "en"])[: random.integers(2, 4)])
        turns = []
        for _ in range(int(random.integers(1, 6))):
            head = random.dirichlet(np.full(len(languages), 0.3))
            readings = {
                language: reading(str(random.choice(texts[language] + texts[str(random.choice(languages))])),
                                  float(-random.uniform(0.01, 1.5)))
                for language in languages
            }  # fmt: skip
            turns.append(TurnEvidence(float(random.uniform(0.5, 8)), f"S{random.integers(1, 3)}", readings,
                                      dict(zip(languages, head, strict=True))))  # fmt: skip
        full = choose_languages(turns, languages)
        partial = [
            TurnEvidence(t.duration, t.speaker, {k: v for k, v in t.readings.items() if k == languages[0]
                                                 or random.random() < 0.3}, t.head)
            for t in turns
        ]  # fmt: skip
        if language_choice.turns_that_could_change(partial, languages) == []:
            sure_cases += 1
            assert choose_languages(partial, languages) == full
    assert sure_cases > 40, "the check must also say 'sure' where it can"


def test_a_chunk_is_read_again_at_most_once_even_if_it_never_gets_its_readings():
    """A chunk too short to read keeps no readings, so its turn stays unsure: it must not be read for ever."""
    languages = ["kk", "ru"]
    chunks = [Chunk(0.0, 3.0, (0,)), Chunk(3.0, 3.05, (1,))]
    evidence = [without(REAL_RUSSIAN, "kk"), TurnEvidence(0.05, "S1", {}, {})]
    assert WhisperEngine._chunks_to_read_again(chunks, evidence, languages, set()) == [chunks[1]]
    # Read once and still without readings: nothing more is read, not even the other chunk's missing language.
    assert WhisperEngine._chunks_to_read_again(chunks, evidence, languages, {chunks[1]}) == []
