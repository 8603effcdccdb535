"""Sentence case and ending punctuation on bare lowercase words, their times untouched."""

from __future__ import annotations

from kazru.domain.recognition import RecognizedWord
from kazru.domain.transcript import TranscriptWord
from services.transcriber.punctuation import SENTENCE_PAUSE_SECONDS, punctuate, split_sentences


def timed(text: str, start: float = 0.0, pauses: dict[int, float] | None = None) -> list[RecognizedWord]:
    """Words 0.3 s long, 0.1 s apart, with a longer pause before the word at each index in `pauses`."""
    words, time = [], start
    for index, word in enumerate(text.split()):
        time += (pauses or {}).get(index, 0.0)
        words.append(RecognizedWord(time, time + 0.3, word, 0.9))
        time += 0.4
    return words


def texts(words) -> str:
    return " ".join(word.text for word in words)


def test_a_turn_is_one_sentence_capitalised_with_a_full_stop():
    assert texts(punctuate(timed("алға қарай бес метр жүр"), "kk")) == "Алға қарай бес метр жүр."
    assert texts(punctuate(timed("я вам на марсе пригожусь"), "ru")) == "Я вам на марсе пригожусь."
    assert texts(punctuate(timed("so we need to talk"), "en")) == "So we need to talk."


def test_a_long_pause_ends_a_sentence_and_a_short_one_does_not():
    words = timed(
        "жарықты қос жазбаны оқы сосын солға қарай жүр",
        pauses={4: SENTENCE_PAUSE_SECONDS, 6: SENTENCE_PAUSE_SECONDS - 0.35},
    )
    assert texts(punctuate(words, "kk")) == "Жарықты қос жазбаны оқы. Сосын солға қарай жүр."


def test_times_and_confidences_are_untouched():
    words = timed("он сел к столу начал лупить картошку", start=12.5, pauses={4: 1.0})
    punctuated = punctuate(words, "ru")
    assert [(w.start, w.end, w.probability) for w in punctuated] == [(w.start, w.end, w.probability) for w in words]
    assert [w.text.rstrip(".").lower() for w in punctuated] == [w.text for w in words]
    assert texts(punctuated) == "Он сел к столу. Начал лупить картошку."


def test_works_on_the_transcripts_own_words():
    words = [TranscriptWord(0.0, 0.4, "иә", 0.8, "S1"), TranscriptWord(0.5, 0.9, "рахмет", 0.9, "S1")]
    punctuated = punctuate(words, "kk")
    assert [w.text for w in punctuated] == ["Иә", "рахмет."]
    assert all(isinstance(w, TranscriptWord) and w.speaker == "S1" for w in punctuated)


def test_kazakh_question_particle_as_the_last_word():
    assert texts(punctuate(timed("сәлеметсіз бе"), "kk")) == "Сәлеметсіз бе?"
    assert texts(punctuate(timed("сен қылмыстық кездесуге қатыстың ба"), "kk")) == "Сен қылмыстық кездесуге қатыстың ба?"
    assert texts(punctuate(timed("үйде жатқанда ішің пыспай ма"), "kk")) == "Үйде жатқанда ішің пыспай ма?"
    # No particle, no question mark, even where a person would hear a question.
    assert texts(punctuate(timed("келесі сабақ қашан"), "kk")).endswith("қашан.")
    # The particle counts only in Kazakh, and only as the last word.
    assert texts(punctuate(timed("это ма"), "ru")) == "Это ма."
    assert texts(punctuate(timed("ба"), "kk")) == "Ба."


def test_russian_li_as_the_second_word():
    assert texts(punctuate(timed("знаешь ли ты эту песню"), "ru")) == "Знаешь ли ты эту песню?"
    assert texts(punctuate(timed("вряд ли он придёт"), "ru")) == "Вряд ли он придёт."
    assert texts(punctuate(timed("не знаю придёт ли он"), "ru")) == "Не знаю придёт ли он."


def test_each_sentence_gets_its_own_ending():
    words = timed("сіз келесіз бе біз күтеміз", pauses={3: 1.0})
    assert texts(punctuate(words, "kk")) == "Сіз келесіз бе? Біз күтеміз."


def test_mixed_turn_keeps_latin_words():
    words = timed("zoom арқылы сөйлестік sprint review кейін", pauses={3: 0.9})
    assert texts(punctuate(words, "kk")) == "Zoom арқылы сөйлестік. Sprint review кейін."


def test_already_punctuated_text_passes_unchanged():
    words = timed("Привет. Как дела?")
    assert punctuate(words, "ru") == words


def test_no_words_and_empty_words():
    assert punctuate([], "kk") == []
    assert split_sentences([RecognizedWord(0.0, 0.1, "", 0.5)]) == []
