"""Which allowed language each speaker turn is in, from every signal the engine has.

For each turn and each allowed language L the engine gives us the text Whisper
wrote when told to write L, how likely Whisper found that text (log-probability
per character), and, for the stretch of audio the turn sits in, Whisper's
language head. None of them is good enough alone on real speech with Whisper
base (BENCHMARKS.md): the language head restricted to kk/ru says Russian for
most Kazakh; the per-character score follows the voice as much as the language;
text language ID of a forced decode is sure of Kazakh when Whisper really wrote
Kazakh, but Whisper told to write Kazakh over Russian speech sometimes does.

They err in different ways, so we add their log-odds (naive Bayes), each
clipped so that no single signal can overrule all the others, and then add a
prior from the same recording: the turns of the same speaker, and the whole
recording, pull an unsure turn towards the language around it, while a turn
whose own evidence is clear keeps its language (code-switching survives).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

# Letters of Kazakh Cyrillic that Russian never uses.
KAZAKH_LETTERS = frozenset("әғқңөұүһіӘҒҚҢӨҰҮҺІ")

# Caps on each signal's log-odds (nats), so that none overrules all the others alone.
# Measured on real speech (BENCHMARKS.md): on real Russian (festvox-ru) Whisper base's head
# gives Kazakh ~0.000 and on the real Kazakh clips 0.67-0.76, the best separation of all; text
# language ID of the Kazakh decode says Kazakh for 15 % of real Russian turns; the per-character
# score difference overlaps completely between the two (-0.26/-0.33 on real Kazakh, -0.02 to
# -0.5 on real Russian: it follows the voice and Whisper's Russian-heavy training), so it
# weighs least.
HEAD_CAP = 3.0
TEXT_CAP = 3.0
SCORE_SCALE = 1.0
SCORE_CAP = 1.0
# Shares of the speaker's and the whole recording's mean evidence added to each turn's own: a speaker
# mostly keeps to one language, so their average counts as much as one turn of their own.
SPEAKER_PRIOR_WEIGHT = 1.0
RECORDING_PRIOR_WEIGHT = 0.5
# A turn whose own log-odds lead by more than this is first read in its leading language only (the engine
# reads the others only where `turns_that_could_change` says they could matter). 2 x SCORE_CAP: twice the most
# that one missing reading can move the turn's own evidence.
OWN_MARGIN_FOR_ONE_READING = 2 * SCORE_CAP


@dataclass(frozen=True)
class Reading:
    """What Whisper made of one turn when told to write one language."""

    text: str
    # Sum of the log-probabilities of the text's tokens, and its length in characters.
    log_probability: float
    characters: int

    @property
    def score(self) -> float:
        """Log-probability per character (per token favours languages the tokenizer cuts finer)."""
        return self.log_probability / self.characters if self.characters else -math.inf


@dataclass
class TurnEvidence:
    duration: float
    speaker: str | None
    readings: dict[str, Reading]
    # Whisper's language head over the allowed languages (sums to 1) for the audio around the turn.
    head: dict[str, float] = field(default_factory=dict)


def choose_languages(turns: Sequence[TurnEvidence], languages: Sequence[str]) -> list[str]:
    """The language of each turn, one of `languages`."""
    if len(languages) == 1:
        return [languages[0]] * len(turns)
    return [_leading(total, languages) for total in _totals(turns, languages)]


def clear_by_itself(turn: TurnEvidence, languages: Sequence[str]) -> bool:
    """Whether the turn's own evidence (without the recording around it) already points far enough to one
    language that reading it in the others is unlikely to matter. Only a guess of what to read first: which
    turns really need every reading is `turns_that_could_change`'s exact answer."""
    if len(languages) < 2:
        return True
    ranked = sorted(turn_log_odds(turn, languages).values(), reverse=True)
    return ranked[0] - ranked[1] > OWN_MARGIN_FOR_ONE_READING


def turns_that_could_change(turns: Sequence[TurnEvidence], languages: Sequence[str]) -> list[int]:
    """The turns whose chosen language could differ once every turn has a reading in every language: those
    to read in the languages still missing before choosing. Empty: `choose_languages` on these readings gives
    exactly what it would give with all of them.

    Why that is exact: a reading added to a turn changes each language's evidence of that turn by an amount
    in [-cap, 0]. The score term can only push languages already read down (each by at most SCORE_CAP, the
    score gap's cap) and gives the new one at most 0; the text term gives the new one at most 0 (a missing
    reading counts 0, the most any text can get). So for the language c chosen now and any rival k, the gap
    total[c] - total[k] can shrink by at most the drop of c's evidence: in the turn itself SCORE_CAP (c must
    have been read: its words are needed anyway), and through the priors the same drops of the speaker's and
    the recording's other turns, weighted as `choose_languages` weighs them (SCORE_CAP + TEXT_CAP where c was
    not read in that turn). A turn whose gap is larger than that cannot change."""
    if len(languages) < 2:
        return []
    # How far each language's evidence can fall, per turn and then through the priors exactly as totals add up.
    swings = _with_priors([_largest_drops(turn, languages) for turn in turns], turns, languages)
    unsure = []
    for index, (turn, total, swing) in enumerate(zip(turns, _totals(turns, languages), swings, strict=True)):
        chosen = _leading(total, languages)
        runner_up = max(total[language] for language in languages if language != chosen)
        if chosen not in turn.readings or total[chosen] - runner_up <= swing[chosen] + 1e-9:
            unsure.append(index)
    return unsure


def _largest_drops(turn: TurnEvidence, languages: Sequence[str]) -> dict[str, float]:
    """How far each language's evidence in this turn can fall once its missing readings are added."""
    if all(language in turn.readings for language in languages):
        return dict.fromkeys(languages, 0.0)
    return {language: SCORE_CAP if language in turn.readings else SCORE_CAP + TEXT_CAP for language in languages}


def _leading(total: dict[str, float], languages: Sequence[str]) -> str:
    """The language with the most evidence; a tie goes to the one listed first."""
    return max(languages, key=lambda language: (total[language], -languages.index(language)))


def _totals(turns: Sequence[TurnEvidence], languages: Sequence[str]) -> list[dict[str, float]]:
    """Each turn's evidence for each language: its own plus the priors of its speaker and the recording."""
    return _with_priors([turn_log_odds(turn, languages) for turn in turns], turns, languages)


def _with_priors(
    own: Sequence[dict[str, float]], turns: Sequence[TurnEvidence], languages: Sequence[str]
) -> list[dict[str, float]]:
    """Per turn and language: its own value, plus its speaker's and the whole recording's means weighted by
    speaking time (the recording's stands for the speaker's where the speaker is unknown)."""
    recording = _weighted_mean(own, [turn.duration for turn in turns], languages)
    by_speaker: dict[str | None, list[int]] = defaultdict(list)
    for index, turn in enumerate(turns):
        by_speaker[turn.speaker].append(index)
    speaker_mean = {
        speaker: _weighted_mean([own[i] for i in members], [turns[i].duration for i in members], languages)
        for speaker, members in by_speaker.items()
    }
    combined = []
    for index, turn in enumerate(turns):
        prior = speaker_mean[turn.speaker] if turn.speaker is not None else recording
        combined.append({
            language: own[index][language]
            + SPEAKER_PRIOR_WEIGHT * prior[language]
            + RECORDING_PRIOR_WEIGHT * recording[language]
            for language in languages
        })  # fmt: skip
    return combined


def turn_log_odds(turn: TurnEvidence, languages: Sequence[str]) -> dict[str, float]:
    """Each language's evidence from the turn alone, centred so that they sum to 0."""
    evidence = dict.fromkeys(languages, 0.0)
    readable = [language for language in languages if language in turn.readings]
    scores = {language: turn.readings[language].score for language in readable}
    finite = [score for score in scores.values() if score > -math.inf]
    if finite:
        best = max(finite)
        for language in readable:
            gap = best - scores[language] if scores[language] > -math.inf else math.inf
            evidence[language] -= min(SCORE_SCALE * gap, SCORE_CAP)
    for language in readable:
        text = turn.readings[language].text
        if text.strip():
            evidence[language] += max(
                math.log(max(text_language_probability(text, language, tuple(languages)), 1e-9)), -TEXT_CAP
            )
        else:
            evidence[language] -= TEXT_CAP
    for language, probability in turn.head.items():
        if language in evidence:
            evidence[language] += max(math.log(max(probability, 1e-9)), -HEAD_CAP)
    mean = sum(evidence.values()) / len(evidence)
    return {language: value - mean for language, value in evidence.items()}


def text_language_probability(text: str, language: str, languages: tuple[str, ...]) -> float:
    """P(language | text) among `languages` by py3langid, with Kazakh's own letters as proof:
    a text with them is not Russian, a longer text without any is hardly Kazakh."""
    letters = [char for char in text if char.isalpha()]
    if language == "ru" and any(char in KAZAKH_LETTERS for char in letters):
        return 1e-3
    ranked = dict(text_identifier(languages).rank(text))
    return float(ranked.get(language, 0.0))


@cache
def text_identifier(languages: tuple[str, ...]):
    """py3langid's identifier restricted to `languages` (those it knows), probabilities normalised."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(sorted(set(languages) & set(identifier.labels)) or None)
    return identifier


def _weighted_mean(values: Sequence[dict[str, float]], weights: Sequence[float], languages) -> dict[str, float]:
    total = sum(weights)
    if not values or total <= 0:
        return dict.fromkeys(languages, 0.0)
    return {
        language: sum(v[language] * w for v, w in zip(values, weights, strict=True)) / total for language in languages
    }
