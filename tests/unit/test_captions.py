"""The caption splitter as a pure function: subtitle practice on hand-made segments."""

from services.exporter import captions
from services.exporter.captions import CaptionSource, TimedWord, break_lines, build_captions


def words_at(texts: list[str], start: float = 0.0, each: float = 0.4) -> list[TimedWord]:
    return [TimedWord(start + i * each, start + i * each + each * 0.9, text) for i, text in enumerate(texts)]


def check_rules(built: list[captions.Caption]) -> None:
    for index, caption in enumerate(built):
        shown = list(caption.lines)
        if caption.announce:
            shown[0] = captions.name_prefix(caption.speaker_name) + shown[0]
        assert 1 <= len(shown) <= 2, caption
        assert all(len(line) <= captions.MAX_LINE_CHARS for line in shown), shown
        assert caption.end_ms - caption.start_ms <= captions.MAX_MS
        if index + 1 < len(built):
            assert caption.end_ms <= built[index + 1].start_ms


def test_one_word():
    built = build_captions([CaptionSource(1.0, 1.3, "Сәлем", "S1", "Aigerim", words_at(["Сәлем"], 1.0, 0.3))])
    assert len(built) == 1
    only = built[0]
    # shown at least a second even though the word lasts 0.3 s
    assert (only.start_ms, only.end_ms, only.lines, only.announce) == (1000, 2000, ("Сәлем",), True)


def test_long_segment_splits_at_word_boundaries_within_limits():
    texts = ("бүгін ауа райы өте жақсы біз қазір жиналыста отырмыз жоба туралы сөйлесейік " * 4).split()
    built = build_captions([CaptionSource(0.0, 20.0, " ".join(texts), "S1", "Aigerim", words_at(texts))])
    check_rules(built)
    assert len(built) > 1
    # every word once, in order, nothing cut
    assert " ".join(" ".join(c.lines) for c in built).split() == texts
    # only the first caption of the turn names the speaker
    assert [c.announce for c in built] == [True] + [False] * (len(built) - 1)
    # a caption starts at its first word's time
    assert built[1].start_ms == round(words_at(texts)[len(" ".join(built[0].lines).split())].start * 1000)


def test_name_announced_only_when_the_speaker_changes():
    sources = [
        CaptionSource(0.0, 1.0, "бір", "S1", "Aigerim", words_at(["бір"], 0.0)),
        CaptionSource(2.0, 3.0, "екі", "S1", "Aigerim", words_at(["екі"], 2.0)),
        CaptionSource(4.0, 5.0, "үш", "S2", "Dauren", words_at(["үш"], 4.0)),
        CaptionSource(6.0, 7.0, "төрт", "S1", "Aigerim", words_at(["төрт"], 6.0)),
    ]
    assert [(c.speaker_name, c.announce) for c in build_captions(sources)] == [
        ("Aigerim", True), ("Aigerim", False), ("Dauren", True), ("Aigerim", True),
    ]  # fmt: skip


def test_segment_without_words_is_timed_by_characters():
    # e.g. a segment a person edited: the text is spread over the segment's own span
    text = "қысқа сөз және тағы бір өте ұзын сөйлем мұнда жазылған, ол екі жолға сыймайды әрине солай"
    built = build_captions([CaptionSource(10.0, 20.0, text, "S1", None, ())])
    check_rules(built)
    assert built[0].start_ms == 10000 and built[-1].end_ms <= 20000 + captions.MAX_MS
    assert " ".join(" ".join(c.lines) for c in built) == text
    assert built[0].speaker_name == "S1"


def test_no_overlap_when_words_overlap_across_segments():
    sources = [
        CaptionSource(0.0, 2.0, "a b", "S1", None, [TimedWord(0.0, 1.0, "a"), TimedWord(1.0, 2.2, "b")]),
        CaptionSource(1.9, 3.0, "c", "S2", None, [TimedWord(1.9, 3.0, "c")]),
    ]
    built = build_captions(sources)
    assert built[0].end_ms <= built[1].start_ms


def test_reading_speed_extends_short_captions_into_the_pause():
    texts = "Қазақстан Республикасының Парламенті".split()
    words = words_at(texts, 0.0, 0.2)  # 36 characters in 0.6 s: far too fast to read
    built = build_captions([CaptionSource(0.0, 0.6, " ".join(texts), None, None, words)])
    assert len(built) == 1
    assert built[0].end_ms >= 36 * 1000 // captions.MAX_CHARS_PER_SECOND


def test_at_most_seven_seconds_on_screen():
    slow = words_at(["сөз"] * 6, 0.0, each=3.0)  # one word every 3 s
    built = build_captions([CaptionSource(0.0, 18.0, "сөз " * 6, None, None, slow)])
    check_rules(built)
    assert len(built) >= 3


def test_a_long_name_stays_whole_and_a_long_word_is_cut():
    long_name = "Айгерім Нұрланқызы Сейітқали"
    word = "ө" * 60
    built = build_captions([CaptionSource(0.0, 3.0, word, "S1", long_name, [TimedWord(0.0, 3.0, word)])])
    check_rules(built)
    assert captions.name_prefix(long_name) == "Айгерім Нұрланқызы Сейітқали: "
    assert "".join("".join(c.lines) for c in built) == word


def test_text_that_does_not_fit_beside_a_long_name_starts_on_the_second_line():
    long_name = "Айгерим Нурлановна Сейткалиева-Ахметова"  # 39 characters: no word fits beside it
    texts = "Добрый день, коллеги, начнём наше совещание.".split()
    built = build_captions([CaptionSource(0.0, 4.0, " ".join(texts), "S1", long_name, words_at(texts))])
    check_rules(built)
    assert built[0].announce and built[0].lines[0] == ""
    assert captions.name_prefix(built[0].speaker_name) == f"{long_name}: "
    assert " ".join(" ".join(c.lines) for c in built).split() == texts
    # A name longer than a line is still whole, alone on its line, with the text below it.
    longer = "Айгерим Нурлановна Сейткалиева-Ахметова, директор"
    (only,) = build_captions([CaptionSource(0.0, 2.0, "Да.", "S1", longer, words_at(["Да."]))])
    assert only.lines == ("", "Да.") and only.speaker_name == longer


def test_break_lines_balances_two_lines():
    words = "бүгін ауа райы өте жақсы біз қазір жиналыста отырмыз".split()
    first, second = break_lines(words)
    assert abs(len(first) - len(second)) <= 10
    assert break_lines(["x" * 30, "y" * 30, "z" * 30]) is None


def test_empty_input():
    assert build_captions([]) == []
    assert build_captions([CaptionSource(0.0, 1.0, "   ", "S1", None, ())]) == []


def test_the_quick_fit_check_agrees_with_line_breaking():
    import random

    rng = random.Random(7)
    for _ in range(2000):
        words = ["ә" * rng.randint(1, 14) for _ in range(rng.randint(1, 12))]
        first_line = rng.choice([captions.MAX_LINE_CHARS, 30, 22])
        assert captions._fits([len(w) for w in words], first_line) == (break_lines(words, first_line) is not None)
