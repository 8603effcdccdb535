"""How well the language of a turn is told from the text a Kazakh-capable model wrote.

    python bench/accuracy/text_language.py                 # held-out figures, JSON on stdout
    python bench/accuracy/text_language.py --tune          # also search the weights on the tuning half

Real text, written as GigaAM-Multilingual writes it (lowercase letters and spaces: no punctuation, no
digits), cut into turn-sized pieces of 1-15 words:
- Kazakh: Common Voice's Kazakh sentences (bench/accuracy/texts/kk_common_voice.txt, CC0) and the references
  of the Kazakh clips in ../shared/corpus/real;
- Russian: festvox-ru's 620 prompts (fetched from the Debian archive, as bench/accuracy/real.py does);
- English: the reference of ../shared/corpus/real/en_pyannote_sample.txt.
Sentences alternate between the tuning half and the held-out half (so no sentence is in both), and each
half is scored clean and with recogniser-like errors: a share of letters replaced by a random letter of the
model's alphabet in the same script, and some of Kazakh's own letters written as their Russian look-alikes
(қ → к, ү → у ...), the slip a recogniser makes on Kazakh speech.

Each turn is scored alone (no prior: the turn's own text only), and inside made-up two-speaker recordings,
where the speaker's and recording's other turns act as the prior: one-language recordings (each speaker keeps
to one language) and code-switching ones (a speaker switches between Kazakh and Russian from turn to turn,
beside a one-language or another switching speaker), scored apart.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from bench.accuracy.sets import DEFAULT_CORPUS_DIR, fetch_festvox_ru, parse_txt_done_data  # noqa: E402
from services.transcriber import text_language  # noqa: E402
from services.transcriber.text_language import TextTurn, choose_segment_languages  # noqa: E402

KAZAKH_TEXT = REPO_ROOT / "bench" / "accuracy" / "texts" / "kk_common_voice.txt"
LANGUAGES = ("kk", "ru")
LENGTH_BUCKETS = ((1, 1), (2, 3), (4, 7), (8, 15))
RUSSIAN_LETTERS = "абвгдежзийклмнопрстуфхцчшщъыьэюя"
KAZAKH_LOOKALIKES = {"ә": "а", "ғ": "г", "қ": "к", "ң": "н", "ө": "о", "ұ": "у", "ү": "у", "һ": "х", "і": "и"}
CYRILLIC_ALPHABET = RUSSIAN_LETTERS + "".join(KAZAKH_LOOKALIKES)
LATIN_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
# Recogniser-like errors: share of letters replaced at random, share of Kazakh letters written as Russian.
SUBSTITUTION_RATE = 0.05
KAZAKH_LETTER_LOSS = 0.2
# Speech rate for a turn's seconds (weights of the prior only).
SECONDS_PER_WORD = 0.4
TURNS_PER_RECORDING = 12
SEED = 23
# Speakers A and B of each made-up recording: (language, share of their turns in the other language) each.
ONE_LANGUAGE_KINDS = ((("kk", 0.0), ("ru", 0.0)), (("kk", 0.0), ("kk", 0.0)), (("ru", 0.0), ("ru", 0.0)))
CODE_SWITCHING_KINDS = (
    (("kk", 0.2), ("ru", 0.2)),  # both mostly in their own language
    (("kk", 0.35), ("kk", 0.0)),  # a Kazakh speaker who often answers in Russian, beside a Kazakh one
    (("ru", 0.35), ("kk", 0.0)),  # a Russian speaker who often says a Kazakh turn, beside a Kazakh one
    (("kk", 0.5), ("ru", 0.0)),  # a fully bilingual speaker beside a Russian one
)
RECORDINGS_PER_KIND = 20


def as_model_writes(text: str) -> str:
    """Lowercase letters and single spaces, as GigaAM writes: punctuation and digits gone, hyphens split."""
    text = text.lower().replace("ё", "е")
    return " ".join(re.sub(r"[^\w\s]|[\d_]", " ", text).split())


def sentences(corpus: Path) -> dict[str, list[str]]:
    kazakh = [line for line in KAZAKH_TEXT.read_text(encoding="utf-8").splitlines() if line and line[0] != "#"]
    kazakh += [path.read_text(encoding="utf-8") for path in sorted(corpus.glob("kk_*.txt"))]
    russian = list(parse_txt_done_data((fetch_festvox_ru() / "etc" / "txt.done.data").read_text("utf-8")).values())
    english = re.split(r"(?<=[.?!])\s+", (corpus / "en_pyannote_sample.txt").read_text("utf-8"))
    return {
        language: [written for text in texts if (written := as_model_writes(text))]
        for language, texts in (("kk", kazakh), ("ru", russian), ("en", english))
    }


def pieces(texts: list[str], rng: random.Random) -> list[str]:
    """The texts' words, in order, cut into pieces of 1-15 words (lengths uniform), never across texts."""
    cut = []
    for text in texts:
        words = text.split()
        while words:
            length = rng.randint(1, 15)
            cut.append(" ".join(words[:length]))
            words = words[length:]
    return cut


def with_errors(text: str, rng: random.Random) -> str:
    written = []
    for char in text:
        if char in KAZAKH_LOOKALIKES and rng.random() < KAZAKH_LETTER_LOSS:
            char = KAZAKH_LOOKALIKES[char]
        if char != " " and rng.random() < SUBSTITUTION_RATE:
            char = rng.choice(LATIN_ALPHABET if "a" <= char <= "z" else CYRILLIC_ALPHABET)
        written.append(char)
    return "".join(written)


def halves(by_language: dict[str, list[str]]) -> dict[str, dict[str, dict[str, list[str]]]]:
    """half → variant → language → turns."""
    out: dict[str, dict[str, dict[str, list[str]]]] = {"tune": {}, "held_out": {}}
    for half, parity in (("tune", 0), ("held_out", 1)):
        rng = random.Random(f"{SEED}-{half}")
        clean = {language: pieces(texts[parity::2], rng) for language, texts in by_language.items()}
        out[half]["clean"] = clean
        out[half]["errors"] = {language: [with_errors(t, rng) for t in turns] for language, turns in clean.items()}
    return out


def bucket(text: str) -> str:
    words = len(text.split())
    low, high = next((low, high) for low, high in LENGTH_BUCKETS if low <= words <= high)
    return f"{low}" if low == high else f"{low}-{high}"


def turn(speaker: str | None, text: str) -> TextTurn:
    return TextTurn(speaker, text, SECONDS_PER_WORD * max(len(text.split()), 1))


def recordings(turns: dict[str, list[str]], rng: random.Random, kinds) -> list[list[tuple[str, str, str]]]:
    """RECORDINGS_PER_KIND two-speaker recordings of each kind, as (speaker, language, text) turns."""
    pools = {language: list(texts) for language, texts in turns.items() if language in LANGUAGES}
    for pool in pools.values():
        rng.shuffle(pool)
    drawn = {language: itertools.cycle(pool) for language, pool in pools.items()}
    made = []
    for index in range(RECORDINGS_PER_KIND * len(kinds)):
        speakers = dict(zip("AB", kinds[index % len(kinds)], strict=True))
        recording = []
        for position in range(TURNS_PER_RECORDING):
            speaker = "AB"[position % 2]
            language, switch_share = speakers[speaker]
            if rng.random() < switch_share:
                language = "ru" if language == "kk" else "kk"
            recording.append((speaker, language, next(drawn[language])))
        made.append(recording)
    return made


def _counts():
    return defaultdict(lambda: defaultdict(lambda: [0, 0]))


def _count(counts, language: str, text: str, right: bool) -> None:
    for key in ("all", bucket(text)):
        counts[language][key][0] += right
        counts[language][key][1] += 1


def score(turns: dict[str, list[str]], allowed: tuple[str, ...], rng: random.Random) -> dict:
    alone = _counts()
    for language, texts in turns.items():
        for text in texts:
            _count(alone, language, text, choose_segment_languages([turn(None, text)], allowed)[0] == language)
    results = {"alone": _shares(alone)}
    for name, kinds in (("one_language", ONE_LANGUAGE_KINDS), ("code_switching", CODE_SWITCHING_KINDS)):
        counts = _counts()
        for recording in recordings(turns, rng, kinds):
            chosen = choose_segment_languages([turn(s, text) for s, _, text in recording], allowed)
            for (_, language, text), guess in zip(recording, chosen, strict=True):
                _count(counts, language, text, guess == language)
        results[name] = _shares(counts)
    return results


def _shares(counts) -> dict:
    return {
        language: {key: {"accuracy": round(right / total, 4), "turns": total} for key, (right, total) in by.items()}
        for language, by in sorted(counts.items())
    }


def evaluate(half: dict[str, dict[str, list[str]]]) -> dict:
    results = {}
    for variant, turns in half.items():
        rng = random.Random(f"{SEED}-{variant}")
        results[variant] = {
            "kk,ru": score({k: v for k, v in turns.items() if k in LANGUAGES}, LANGUAGES, rng),
            "kk,ru,en": score(turns, ("kk", "ru", "en"), rng),
        }
    return results


def objective(results: dict) -> float:
    """Mean accuracy over variants, kk and ru, alone, in one-language and in code-switching recordings (what the
    weights are tuned for)."""
    values = [
        results[variant]["kk,ru"][mode][language]["all"]["accuracy"]
        for variant in results
        for mode in ("alone", "one_language", "code_switching")
        for language in LANGUAGES
    ]
    return sum(values) / len(values)


GRID = {
    "KAZAKH_LETTER_EVIDENCE": (0.5, 1.0, 1.5, 2.5),
    "KAZAKH_LETTER_CAP": (2.0, 3.0, 4.5, 6.0),
    "TEXT_ID_CAP": (1.5, 3.0, 5.0),
    "SPEAKER_PRIOR_WEIGHT": (0.5, 1.0, 2.0, 3.0, 4.0),
    "RECORDING_PRIOR_WEIGHT": (0.0, 0.5, 1.0),
    "CLEAR_TURN_MARGIN": (2.0, 3.0, 4.0, 5.0, 6.0, 8.0),
}


def tune(half: dict) -> dict:
    """Coordinate search over GRID on the tuning half (two rounds), starting from the module's values."""
    best = {name: getattr(text_language, name) for name in GRID}
    best_value = -1.0
    for _ in range(2):
        for name, values in GRID.items():
            for value in values:
                trial = {**best, name: value}
                for key, setting in trial.items():
                    setattr(text_language, key, setting)
                result = objective(evaluate(half))
                if result > best_value + 1e-9:
                    best, best_value = trial, result
    for key, setting in best.items():
        setattr(text_language, key, setting)
    return {"weights": best, "objective": round(best_value, 4)}


class _RememberedRanks:
    """A text identifier that remembers its ranks: they do not depend on the weights, and the tuning scores
    each turn dozens of times."""

    def __init__(self, identifier) -> None:
        self.identifier = identifier
        self.ranks: dict[str, list] = {}

    def rank(self, text: str) -> list:
        if text not in self.ranks:
            self.ranks[text] = self.identifier.rank(text)
        return self.ranks[text]


def remember_text_id_ranks() -> None:
    identifiers = {}
    plain = text_language.text_identifier

    def remembering(languages: tuple[str, ...]) -> _RememberedRanks:
        if languages not in identifiers:
            identifiers[languages] = _RememberedRanks(plain(languages))
        return identifiers[languages]

    text_language.text_identifier = remembering


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune", action="store_true", help="search the weights on the tuning half first")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS_DIR, help="shared/corpus/real")
    parser.add_argument("--out", type=Path, help="write the JSON here too")
    args = parser.parse_args()
    remember_text_id_ranks()
    by_language = sentences(args.corpus)
    split = halves(by_language)
    report: dict = {
        "sentences": {language: len(texts) for language, texts in by_language.items()},
        "errors": {"substitution_rate": SUBSTITUTION_RATE, "kazakh_letter_loss": KAZAKH_LETTER_LOSS},
    }
    if args.tune:
        report["tuned"] = tune(split["tune"])
    report["weights"] = {name: getattr(text_language, name) for name in GRID}
    report["tune_objective"] = round(objective(evaluate(split["tune"])), 4)
    held_out = evaluate(split["held_out"])
    report["held_out_objective"] = round(objective(held_out), 4)
    report["held_out"] = held_out
    text = json.dumps(report, ensure_ascii=False, indent=1)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
