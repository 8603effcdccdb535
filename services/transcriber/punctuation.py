"""Sentence case and ending punctuation for text a model wrote bare and lowercase.

GigaAM-Multilingual writes words only: no capitals, no punctuation. `punctuate`
takes one segment's words (a speaker's turn, or its part in one language) and
makes sentences of them:

- A sentence ends at the end of the words given (the turn's end) and at every
  pause between two words of at least SENTENCE_PAUSE_SECONDS.
- The first letter of each sentence is capitalised; its last word gets ".",
  or "?" where a reliable question cue says so (below).
- Only the words' text changes: their times and confidences stay as they were.
  Latin words are kept as written (capitalised only when they start a sentence).
  A word that already ends with ".", "?", "!" or "…" keeps its own ending, so
  text that came punctuated (Whisper) passes unchanged.

Question marks, conservatively: a "?" in a statement reads worse than a "." in a
question, so only cues that are nearly always questions count:
- Kazakh (segment language kk): the last word is a question particle on its own
  (ма, ме, ба, бе, па, пе: "сен келесің бе", "сәлеметсіз бе").
- Russian (ru): "ли" as the second word ("знаешь ли ты", "правда ли это"), except
  after "вряд"/"едва" ("вряд ли он придёт" is a statement).
Anything else, every English question and every question without a particle
("ты придёшь", "қайда барасың") included, ends with ".".

What it does not do: no digits (numbers stay words, "жиырма тоғыз"); no commas,
colons or quotes; names and other proper nouns stay lowercase inside a sentence;
no exclamation marks; it does not join sentences across segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol, TypeVar

# A pause this long between two words ends a sentence. Measured on real read speech (festvox-ru's 620
# utterances, bench/accuracy/sentence_pauses.py): people pause inside sentences too (commas, breaths;
# median 0.38 s, 99th percentile 0.72 s) and between sentences often no longer (median 0.56 s), so a pause
# alone is a weak cue. At 0.8 s fewer than 1 % of pauses inside a sentence would wrongly end one (0.7 %),
# while it still finds the clear breaks (12 % of sentence ends in that careful reading, more in talk); a
# pause of 1 s or more already ends the turn (diarization.TURN_PAUSE_SECONDS), and so a sentence. A
# sentence cut in two reads worse than two sentences run together, hence the conservative side.
SENTENCE_PAUSE_SECONDS = 0.8
SENTENCE_ENDINGS = (".", "?", "!", "…")
# Kazakh question particles, written as separate words at the end of a question.
KAZAKH_QUESTION_PARTICLES = frozenset({"ма", "ме", "ба", "бе", "па", "пе"})
RUSSIAN_QUESTION_PARTICLE = "ли"
# "вряд ли", "едва ли": "hardly", a statement.
RUSSIAN_NOT_QUESTION_BEFORE_LI = frozenset({"вряд", "едва"})


class TimedWord(Protocol):
    start: float
    end: float
    text: str


W = TypeVar("W", bound=TimedWord)


def punctuate(words: Sequence[W], language: str | None = None) -> list[W]:
    """The same words (same times) with sentence case and each sentence's ending punctuation.
    `language` (ISO 639-1) enables that language's question cues; None: every sentence ends with "."."""
    punctuated: list[W] = []
    for sentence in split_sentences(words):
        ending = "?" if is_question([word.text for word in sentence], language) else "."
        for index, word in enumerate(sentence):
            text = word.text
            if index == 0:
                text = _capitalised(text)
            if index == len(sentence) - 1 and not text.endswith(SENTENCE_ENDINGS):
                text += ending
            punctuated.append(replace(word, text=text) if text != word.text else word)
    return punctuated


def split_sentences(words: Sequence[W]) -> list[list[W]]:
    """Words cut into sentences at pauses of SENTENCE_PAUSE_SECONDS or more (the last sentence ends with
    the words), and after a word that already ends one."""
    sentences: list[list[W]] = []
    current: list[W] = []
    for word in words:
        if not word.text:
            continue
        if current and (
            word.start - current[-1].end >= SENTENCE_PAUSE_SECONDS or current[-1].text.endswith(SENTENCE_ENDINGS)
        ):
            sentences.append(current)
            current = []
        current.append(word)
    if current:
        sentences.append(current)
    return sentences


def is_question(texts: Sequence[str], language: str | None) -> bool:
    """Whether a sentence (its words, bare) carries a reliable question cue of `language`."""
    bare = [text.lower().strip("".join(SENTENCE_ENDINGS)) for text in texts]
    if language == "kk":
        return len(bare) >= 2 and bare[-1] in KAZAKH_QUESTION_PARTICLES
    if language == "ru":
        return (
            len(bare) >= 2
            and bare[1] == RUSSIAN_QUESTION_PARTICLE
            and bare[0] not in RUSSIAN_NOT_QUESTION_BEFORE_LI
        )
    return False


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]
