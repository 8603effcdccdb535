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

Each turn is scored alone (no prior: the turn's own text only), and inside made-up two-speaker recordings
(each speaker keeps to one language, or switches now and then), where the speaker's and recording's other
turns act as the prior.
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
# Speakers A and B of each made-up recording; in the last kind each turn switches language one time in five.
RECORDING_KINDS = (("kk", "ru"), ("kk", "kk"), ("ru", "ru"), ("kk", "ru"))
SWITCH_SHARE = 0.2


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


def recordings(turns: dict[str, list[str]], rng: random.Random) -> list[list[tuple[str, str, str]]]:
    """Two-speaker recordings of (speaker, language, text): A kk / B ru, both kk, both ru, and A kk / B ru
    where each turn switches to the other language one time in five."""
    pools = {language: list(texts) for language, texts in turns.items() if language in LANGUAGES}
    for pool in pools.values():
        rng.shuffle(pool)
    drawn = {language: itertools.cycle(pool) for language, pool in pools.items()}
    count = max(len(pool) for pool in pools.values()) // TURNS_PER_RECORDING
    made = []
    for index in range(count):
        kind = index % len(RECORDING_KINDS)
        speakers = dict(zip("AB", RECORDING_KINDS[kind], strict=True))
        switching = kind == len(RECORDING_KINDS) - 1
        recording = []
        for position in range(TURNS_PER_RECORDING):
            speaker = "AB"[position % 2]
            language = speakers[speaker]
            if switching and rng.random() < SWITCH_SHARE:
                language = "ru" if language == "kk" else "kk"
            recording.append((speaker, language, next(drawn[language])))
        made.append(recording)
    return made


def score(turns: dict[str, list[str]], allowed: tuple[str, ...], rng: random.Random) -> dict:
    alone: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for language, texts in turns.items():
        for text in texts:
            chosen = choose_segment_languages([turn(None, text)], allowed)[0]
            for key in ("all", bucket(text)):
                alone[language][key][0] += chosen == language
                alone[language][key][1] += 1
    in_recordings: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for recording in recordings(turns, rng):
        chosen = choose_segment_languages([turn(s, text) for s, _, text in recording], allowed)
        for (_, language, text), guess in zip(recording, chosen, strict=True):
            for key in ("all", bucket(text)):
                in_recordings[language][key][0] += guess == language
                in_recordings[language][key][1] += 1
    return {"alone": _shares(alone), "in_recordings": _shares(in_recordings)}


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
    """Mean accuracy over variants, kk and ru, alone and in recordings (what the weights are tuned for)."""
    values = [
        results[variant]["kk,ru"][mode][language]["all"]["accuracy"]
        for variant in results
        for mode in ("alone", "in_recordings")
        for language in LANGUAGES
    ]
    return sum(values) / len(values)


GRID = {
    "KAZAKH_LETTER_EVIDENCE": (0.5, 1.0, 1.5, 2.5),
    "KAZAKH_LETTER_CAP": (2.0, 3.0, 4.5, 6.0),
    "TEXT_ID_CAP": (1.5, 3.0, 5.0),
    "SPEAKER_PRIOR_WEIGHT": (0.5, 1.0, 2.0),
    "RECORDING_PRIOR_WEIGHT": (0.0, 0.5, 1.0),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune", action="store_true", help="search the weights on the tuning half first")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS_DIR, help="shared/corpus/real")
    parser.add_argument("--out", type=Path, help="write the JSON here too")
    args = parser.parse_args()
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
