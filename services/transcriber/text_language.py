"""The language of each turn from the text a Kazakh-capable model wrote.

GigaAM-Multilingual writes Kazakh, Russian and English in one shared alphabet,
bare lowercase, with no language token: the text itself says the language.

- Script: Latin letters are English where the job allows it; Cyrillic text is
  not English.
- Kazakh's own letters (ә ғ қ ң ө ұ ү һ і): Russian never writes them, so each
  one is evidence for Kazakh, capped because a recogniser's slip can write one
  into Russian.
- Text language ID (py3langid) restricted to the job's allowed Cyrillic
  languages: it knows which words and letter sequences each language uses, and
  a longer Cyrillic text without any Kazakh letter is hardly Kazakh.
- The recording: a short turn ("иә", "да", "жоқ") says little, so the same
  speaker's other turns (the whole recording's where the speaker is unknown)
  are added as a prior, but only to an unsure turn: the prior's weight falls
  as the turn's own text grows sure, so a clear turn keeps its language
  whatever its speaker's other turns say (people in Kazakhstan switch between
  Kazakh and Russian from turn to turn).

The weights were chosen on real text (bench/accuracy/text_language.py: Common
Voice Kazakh sentences, festvox-ru's Russian prompts, cut into 1-15-word
turns, clean and with recogniser-like errors), half to tune and half held out;
the held-out figures are in BENCHMARKS.md and that script's output.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from services.transcriber.language_choice import KAZAKH_LETTERS, text_identifier

ENGLISH = "en"
KAZAKH = "kk"
# Languages written in Latin script among those the service supports.
LATIN_SCRIPT_LANGUAGES = frozenset({ENGLISH})

# Log-odds (nats) that the script gives: Latin text is not Kazakh or Russian, Cyrillic text is not English.
# Large, because the model's alphabet makes the script unambiguous; a few Latin words in a Cyrillic turn
# (names, brands) do not change the script of the turn, which goes by the majority of its letters.
SCRIPT_EVIDENCE = 8.0
# Each Kazakh-only letter adds this much to Kazakh, up to the cap: a recogniser's slips write Kazakh letters
# into Russian turns too, so the letters alone must not decide a turn that text ID reads as Russian.
# Text language ID: log P(language | text) among the allowed ones, floored at -TEXT_ID_CAP.
# The same speaker's other turns (their mean evidence, weighted by seconds) count SPEAKER_PRIOR_WEIGHT
# beside the turn's own, and the whole recording's other turns RECORDING_PRIOR_WEIGHT; a turn of no known
# speaker takes the recording's other turns as its speaker's.
# The prior counts in full beside a turn whose text says nothing, less as the turn's own margin (its best
# language's evidence over the next one's) grows, and not at all from CLEAR_TURN_MARGIN on. Counted in full
# beside every turn, it made a clear Russian turn of a speaker whose other turns are Kazakh come out Kazakh
# (the own evidence is capped, and the Kazakh prior was as large); now a Russian turn whose text ID says
# p(ru) >= 0.89 stays Russian whatever its speaker's other turns.
# Chosen by bench/accuracy/text_language.py --tune on the tuning half (coordinate search; one-language and
# code-switching recordings), held-out half measured after: with errors, kk 97 % / ru 98 % of turns alone,
# 99-100 % in one-language recordings, 97-99 % in code-switching ones (BENCHMARKS.md). The tuning
# wanted the letters weaker than text ID (py3langid already weighs them, and counts them per length),
# and no recording prior beside the speaker's: in recordings where two people speak two languages the
# recording's mean pulls each towards the other.
KAZAKH_LETTER_EVIDENCE = 0.5
KAZAKH_LETTER_CAP = 2.0
TEXT_ID_CAP = 5.0
SPEAKER_PRIOR_WEIGHT = 0.5
RECORDING_PRIOR_WEIGHT = 0.0
CLEAR_TURN_MARGIN = 5.0


@dataclass(frozen=True)
class TextTurn:
    """One turn of recognised text: who said it (None when unknown), what, and for how long."""

    speaker: str | None
    text: str
    seconds: float


def choose_segment_languages(turns: Sequence[TextTurn], allowed: Sequence[str]) -> list[str]:
    """The language of each turn, one of `allowed` (ties go to the language listed first)."""
    allowed = list(dict.fromkeys(allowed))
    if not allowed:
        raise ValueError("no allowed language")
    if len(allowed) == 1:
        return [allowed[0]] * len(turns)
    own = [text_log_odds(turn.text, allowed) for turn in turns]
    weights = [max(turn.seconds, 0.0) for turn in turns]
    recording_total = _weighted_sum(own, weights, allowed)
    by_speaker: dict[str | None, list[int]] = defaultdict(list)
    for index, turn in enumerate(turns):
        by_speaker[turn.speaker].append(index)
    speaker_total = {
        speaker: _weighted_sum([own[i] for i in members], [weights[i] for i in members], allowed)
        for speaker, members in by_speaker.items()
        if speaker is not None
    }
    chosen = []
    for index, turn in enumerate(turns):
        # The others' evidence only: a turn's own text must not count twice.
        recording = _mean_without(recording_total, own[index], weights[index], allowed)
        speaker = (
            _mean_without(speaker_total[turn.speaker], own[index], weights[index], allowed)
            if turn.speaker is not None
            else recording
        )
        # The prior decides only where the turn's own text is unsure: its weight falls with the turn's own
        # margin and is gone at CLEAR_TURN_MARGIN, so a clear turn keeps its language whatever its speaker's
        # other turns say (a speaker who switches languages between turns keeps each turn's language).
        prior_share = max(0.0, 1.0 - _margin(own[index]) / CLEAR_TURN_MARGIN)
        total = {
            language: own[index][language]
            + prior_share * (SPEAKER_PRIOR_WEIGHT * speaker[language] + RECORDING_PRIOR_WEIGHT * recording[language])
            for language in allowed
        }
        chosen.append(max(allowed, key=lambda language: (total[language], -allowed.index(language))))
    return chosen


def text_log_odds(text: str, allowed: Sequence[str]) -> dict[str, float]:
    """Each allowed language's evidence from the text alone, centred so that they sum to 0
    (all 0 where the text says nothing: empty, or a script no allowed language is written in)."""
    evidence = dict.fromkeys(allowed, 0.0)
    letters = [char for char in text.lower() if char.isalpha()]
    if not letters:
        return evidence
    latin = sum(1 for char in letters if "a" <= char <= "z")
    latin_script = 2 * latin > len(letters)
    same_script = [language for language in allowed if (language in LATIN_SCRIPT_LANGUAGES) == latin_script]
    if not same_script:
        return evidence
    for language in allowed:
        if language not in same_script:
            evidence[language] -= SCRIPT_EVIDENCE
    if len(same_script) > 1:
        ranked = dict(text_identifier(tuple(sorted(same_script))).rank(" ".join(text.split())))
        for language in same_script:
            evidence[language] += max(math.log(max(float(ranked.get(language, 0.0)), 1e-12)), -TEXT_ID_CAP)
        if KAZAKH in same_script:
            kazakh_letters = sum(1 for char in letters if char in KAZAKH_LETTERS)
            evidence[KAZAKH] += min(KAZAKH_LETTER_EVIDENCE * kazakh_letters, KAZAKH_LETTER_CAP)
    mean = sum(evidence.values()) / len(evidence)
    return {language: value - mean for language, value in evidence.items()}


def _margin(evidence: dict[str, float]) -> float:
    """How far the text's own best language leads the next one."""
    best, second = sorted(evidence.values(), reverse=True)[:2]
    return best - second


def _weighted_sum(values: Sequence[dict[str, float]], weights: Sequence[float], languages) -> tuple[dict, float]:
    total = sum(weights)
    sums = {language: sum(v[language] * w for v, w in zip(values, weights, strict=True)) for language in languages}
    return sums, total


def _mean_without(total: tuple[dict, float], own: dict[str, float], weight: float, languages) -> dict[str, float]:
    sums, weights = total
    rest = weights - weight
    if rest <= 1e-9:
        return dict.fromkeys(languages, 0.0)
    return {language: (sums[language] - own[language] * weight) / rest for language in languages}
