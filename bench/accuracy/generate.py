"""Synthetic Kazakh/Russian conversations with exact reference timings.

Each turn is spoken by espeak-ng, resampled to 16 kHz mono by sox, and trimmed of
espeak's own leading and trailing silence; the conversation is then built by
concatenating turns and silences whose sample counts are known, so the reference
times (RTTM and JSON) are exact to one sample, not estimated.

A speaker is an espeak-ng voice variant (pitch and formants, e.g. `m3`, `f3`) at a
fixed rate; the language only picks espeak's phoneme rules (`ru+m3` or `kk+m3`), so
one speaker can speak both languages.

    python bench/accuracy/generate.py                    # corpus into .kazru/bench/accuracy-corpus
    python bench/accuracy/generate.py --count 40 --seed 7 --out /tmp/corpus
    python bench/accuracy/generate.py --fixtures         # the committed tests/fixtures/audio/conversation_*

Writes `<id>.flac`, `<id>.rttm` (one SPEAKER line per turn) and `<id>.json`
(a list of turns: start, end, speaker, language, text, voice, rate). Needs
espeak-ng and sox on PATH. The output is deterministic for a given seed and the
same espeak-ng/sox versions.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CORPUS_DIR = REPO_ROOT / ".kazru" / "bench" / "accuracy-corpus"
FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures" / "audio"

# espeak's leading/trailing silence is cut at 0.1 % of full scale, keeping 50 ms of sound.
TRIM_EFFECT = ["silence", "1", "0.05", "0.1%", "reverse", "silence", "1", "0.05", "0.1%", "reverse"]

RUSSIAN_SENTENCES = [
    # Whisper base recognises this one almost word for word with ru+m3 at 150 wpm (ARCHITECTURE.md §5).
    "Погода в Алматы сегодня очень тёплая и солнечная.",
    "Добрый день. Сегодня мы обсудим план работы на следующую неделю.",
    "Москва является столицей России.",
    "Спасибо, до встречи на следующей неделе.",
    "Пожалуйста, отправьте мне отчёт до пятницы.",
    "Мы начнём совещание ровно в десять часов утра.",
    "Я думаю, что этот проект нужно закончить в марте.",
    "Вчера я ходил в магазин и купил хлеб и молоко.",
    "Наша компания работает в Казахстане уже десять лет.",
    "Можно мне чашку чая с лимоном?",
    "Поезд из Астаны прибывает в восемь часов вечера.",
    "Давайте посмотрим на результаты за прошлый месяц.",
    "У меня есть один вопрос по бюджету.",
    "Завтра будет дождь, возьмите с собой зонт.",
    "Мой брат учится в университете на втором курсе.",
    "Я согласен, это хорошая идея.",
    "Библиотека открыта каждый день, кроме воскресенья.",
    "Расскажите, пожалуйста, немного о себе.",
    "Цены на квартиры в городе снова выросли.",
    "Летом мы поедем отдыхать на озеро.",
    "Врач сказал, что нужно больше отдыхать.",
    "Этот документ нужно подписать сегодня.",
    "Дети играют в парке возле дома.",
    "Я позвоню вам после обеда.",
    "Новый сотрудник начнёт работать в понедельник.",
]

KAZAKH_SENTENCES = [
    "Сәлеметсіз бе, менің атым Айгерім.",
    "Алматы Қазақстандағы ең үлкен қала.",
    "Бүгін ауа райы өте жақсы.",
    "Мен университетте оқимын.",
    "Ертең жиналыс сағат онда басталады.",
    "Рахмет, сау болыңыз.",
    "Біз жаңа жобаны келесі аптада бастаймыз.",
    "Менің отбасым үлкен, бізде бес бала бар.",
    "Астана Қазақстанның астанасы.",
    "Қайырлы таң, қалыңыз қалай?",
    "Мен шай ішкенді жақсы көремін.",
    "Бұл кітап өте қызықты екен.",
    "Кешке біз саябақта серуендейміз.",
    "Дүкен сағат тоғызда ашылады.",
    "Әкем дәрігер болып жұмыс істейді.",
    "Қыста мұнда қар көп жауады.",
    "Есепті жұма күніне дейін жіберіңіз.",
    "Біздің компания он жылдан бері жұмыс істейді.",
    "Мен қазақ тілін үйреніп жүрмін.",
    "Пойыз кешкі сегізде келеді.",
    "Балалар мектепке жаяу барады.",
    "Бұл өте жақсы идея, мен келісемін.",
    "Анам бүгін дәмді ас әзірледі.",
    "Шаһар орталығында жаңа жиһаз дүкені ашылды.",
    "Түскі астан кейін сізге қоңырау шаламын.",
]

SENTENCES = {"ru": RUSSIAN_SENTENCES, "kk": KAZAKH_SENTENCES}

# espeak-ng variants that differ in pitch range and formants (espeak-ng-data/voices/!v). Not f4: its
# parameters are close to f3's, and so are its speaker embeddings (GE2E cosine distance between f3 and
# f4 turns ~0.16, no more than between two turns of one voice), so no diarizer could tell them apart.
VOICE_VARIANTS = ["m1", "m2", "m3", "m7", "f1", "f3", "f5"]


@dataclass(frozen=True)
class Speaker:
    label: str
    variant: str
    rate: int  # words per minute


@dataclass(frozen=True)
class Turn:
    speaker: Speaker
    language: str
    text: str

    @property
    def voice(self) -> str:
        return f"{self.language}+{self.speaker.variant}"


@dataclass(frozen=True)
class TimedTurn:
    turn: Turn
    start_sample: int
    end_sample: int


class Synthesizer:
    """espeak-ng + sox, one trimmed 16 kHz int16 clip per (voice, rate, text), cached."""

    def __init__(self, work_dir: Path) -> None:
        for tool in ("espeak-ng", "sox"):
            if shutil.which(tool) is None:
                raise SystemExit(f"{tool} is not on PATH (Debian: apt-get install espeak-ng sox)")
        self._work_dir = work_dir
        self._cache: dict[tuple[str, int, str], np.ndarray] = {}

    def speak(self, turn: Turn) -> np.ndarray:
        key = (turn.voice, turn.speaker.rate, turn.text)
        if key not in self._cache:
            self._cache[key] = self._synthesize(*key)
        return self._cache[key]

    def _synthesize(self, voice: str, rate: int, text: str) -> np.ndarray:
        raw = self._work_dir / f"clip{len(self._cache)}_raw.wav"
        trimmed = self._work_dir / f"clip{len(self._cache)}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(raw), text], check=True)
        subprocess.run(
            # -D: no dither, so the same text gives the same samples on every run.
            ["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(trimmed), *TRIM_EFFECT],
            check=True,
        )
        samples = read_wav_int16(trimmed)
        if samples.size == 0:
            raise RuntimeError(f"espeak-ng produced no sound for {voice!r}: {text!r}")
        return samples


def read_wav_int16(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise RuntimeError(f"{path}: expected 16 kHz mono 16-bit")
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").copy()


def seconds(sample_count: int) -> float:
    # Multiples of 1/16000 s have at most 7 decimals, so this is exact.
    return round(sample_count / SAMPLE_RATE, 7)


def silence(duration_s: float) -> np.ndarray:
    return np.zeros(round(duration_s * SAMPLE_RATE), dtype=np.int16)


def assemble(
    synth: Synthesizer, turns: list[Turn], pauses_s: list[float], lead_s: float, tail_s: float
) -> tuple[np.ndarray, list[TimedTurn]]:
    """Concatenate lead silence, turn 1, pause 1, turn 2, ..., tail silence; return samples and exact turn spans."""
    if len(pauses_s) != len(turns) - 1:
        raise ValueError("need one pause between each pair of turns")
    pieces = [silence(lead_s)]
    position = pieces[0].size
    timed = []
    for index, turn in enumerate(turns):
        clip = synth.speak(turn)
        timed.append(TimedTurn(turn, position, position + clip.size))
        pieces.append(clip)
        position += clip.size
        gap = silence(pauses_s[index]) if index < len(pauses_s) else silence(tail_s)
        pieces.append(gap)
        position += gap.size
    return np.concatenate(pieces), timed


def write_conversation(out_dir: Path, uri: str, samples: np.ndarray, timed: list[TimedTurn], work_dir: Path) -> None:
    wav_path = work_dir / f"{uri}.wav"
    with wave.open(str(wav_path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(samples.astype("<i2").tobytes())
    flac_path = out_dir / f"{uri}.flac"
    flac_path.unlink(missing_ok=True)
    subprocess.run(["sox", "-D", str(wav_path), str(flac_path)], check=True)
    wav_path.unlink()

    rttm_lines = []
    turns_json = []
    for item in timed:
        start, end = seconds(item.start_sample), seconds(item.end_sample)
        duration = seconds(item.end_sample - item.start_sample)
        rttm_lines.append(f"SPEAKER {uri} 1 {start:.7f} {duration:.7f} <NA> <NA> {item.turn.speaker.label} <NA> <NA>")
        turns_json.append(
            {
                "start": start,
                "end": end,
                "speaker": item.turn.speaker.label,
                "language": item.turn.language,
                "text": item.turn.text,
                "voice": item.turn.voice,
                "rate": item.turn.speaker.rate,
            }
        )
    (out_dir / f"{uri}.rttm").write_text("\n".join(rttm_lines) + "\n", encoding="utf-8")
    (out_dir / f"{uri}.json").write_text(json.dumps(turns_json, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


# --- committed test fixtures ---------------------------------------------------------------------------------


def fixture_conversations() -> dict[str, tuple[list[Turn], list[float]]]:
    """Two fixed conversations for the diarization and language tests (sentences from the lists above)."""
    male = Speaker("spk_m3", "m3", 150)
    female = Speaker("spk_f3", "f3", 140)
    kazakh_male = Speaker("spk_m2", "m2", 120)
    three = [
        Turn(male, "ru", "Погода в Алматы сегодня очень тёплая и солнечная."),
        Turn(female, "ru", "Добрый день. Сегодня мы обсудим план работы на следующую неделю."),
        Turn(kazakh_male, "kk", "Сәлеметсіз бе, менің атым Айгерім."),  # Russian -> Kazakh switch
        Turn(male, "ru", "Москва является столицей России."),
        Turn(kazakh_male, "kk", "Алматы Қазақстандағы ең үлкен қала."),
        Turn(female, "ru", "Спасибо, до встречи на следующей неделе."),
    ]
    two = [
        Turn(male, "ru", "Погода в Алматы сегодня очень тёплая и солнечная."),
        Turn(female, "ru", "Москва является столицей России."),
        Turn(male, "kk", "Бүгін ауа райы өте жақсы."),  # the one switch; the same speakers now speak Kazakh
        Turn(female, "kk", "Алматы Қазақстандағы ең үлкен қала."),
        Turn(male, "kk", "Мен университетте оқимын."),
    ]
    return {
        "conversation_3spk": (three, [0.6, 0.9, 0.4, 1.2, 0.7]),
        "conversation_2spk": (two, [0.8, 0.5, 1.0, 0.6]),
    }


FIXTURE_LEAD_S = 0.3
FIXTURE_TAIL_S = 0.3


def write_fixtures(out_dir: Path, work_dir: Path) -> None:
    synth = Synthesizer(work_dir)
    for uri, (turns, pauses) in fixture_conversations().items():
        samples, timed = assemble(synth, turns, pauses, FIXTURE_LEAD_S, FIXTURE_TAIL_S)
        write_conversation(out_dir, uri, samples, timed, work_dir)
        print(f"{uri}: {seconds(samples.size):.3f} s, {len(timed)} turns")


# --- the benchmark corpus ------------------------------------------------------------------------------------


def random_conversation(rng: random.Random, target_s: float) -> tuple[list[Turn], list[float]]:
    """2-4 distinct speakers; each mostly speaks one language but may switch; turns until ~target_s of speech."""
    speaker_count = rng.randint(2, 4)
    variants = rng.sample(VOICE_VARIANTS, speaker_count)
    speakers = [
        Speaker(f"spk{index}_{variant}", variant, rng.randint(12, 16) * 10) for index, variant in enumerate(variants)
    ]
    home_language = {speaker: rng.choice(["ru", "kk"]) for speaker in speakers}
    # Roughly half the speakers also speak the other language now and then.
    switch_probability = {speaker: rng.choice([0.0, 0.35]) for speaker in speakers}
    turns: list[Turn] = []
    pauses: list[float] = []
    # A turn averages about 3 s of speech plus 0.85 s of pause.
    turn_count = max(speaker_count + 1, round(target_s / 3.9))
    previous: Speaker | None = None
    used: dict[str, set[str]] = {"ru": set(), "kk": set()}
    for index in range(turn_count):
        # Every speaker talks at least once; afterwards anyone but the previous speaker.
        if index < speaker_count:
            speaker = speakers[index]
        else:
            speaker = rng.choice([candidate for candidate in speakers if candidate != previous])
        language = home_language[speaker]
        if rng.random() < switch_probability[speaker]:
            language = "kk" if language == "ru" else "ru"
        fresh = [sentence for sentence in SENTENCES[language] if sentence not in used[language]]
        text = rng.choice(fresh or SENTENCES[language])
        used[language].add(text)
        turns.append(Turn(speaker, language, text))
        if index:
            pauses.append(round(rng.uniform(0.2, 1.5), 3))
        previous = speaker
    if len({turn.language for turn in turns}) == 1:
        # Every file has at least one switch between turns: the last turn takes the other language.
        last = turns[-1]
        other = "kk" if last.language == "ru" else "ru"
        turns[-1] = Turn(last.speaker, other, rng.choice(SENTENCES[other]))
    return turns, pauses


def write_corpus(out_dir: Path, count: int, seed: int, min_s: float, max_s: float, work_dir: Path) -> None:
    rng = random.Random(seed)
    synth = Synthesizer(work_dir)
    manifest = []
    for number in range(count):
        uri = f"conv{number:03d}"
        turns, pauses = random_conversation(rng, rng.uniform(min_s, max_s))
        lead, tail = round(rng.uniform(0.2, 1.0), 3), round(rng.uniform(0.2, 1.0), 3)
        samples, timed = assemble(synth, turns, pauses, lead, tail)
        write_conversation(out_dir, uri, samples, timed, work_dir)
        manifest.append(
            {
                "id": uri,
                "duration_s": seconds(samples.size),
                "speakers": len({turn.speaker for turn in turns}),
                "turns": len(turns),
                "languages": sorted({turn.language for turn in turns}),
            }
        )
        print(f"{uri}: {seconds(samples.size):6.2f} s, {manifest[-1]['speakers']} speakers, {len(turns)} turns")
    summary = {"seed": seed, "count": count, "min_s": min_s, "max_s": max_s, "files": manifest}
    (out_dir / "corpus.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help=f"output directory (default {DEFAULT_CORPUS_DIR})")
    parser.add_argument("--count", type=int, default=20, help="number of conversations (default 20)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--min-seconds", type=float, default=30.0)
    parser.add_argument("--max-seconds", type=float, default=90.0)
    parser.add_argument("--fixtures", action="store_true", help="write the committed conversation fixtures instead")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(tmp)
        if args.fixtures:
            out_dir = args.out or FIXTURES_DIR
            out_dir.mkdir(parents=True, exist_ok=True)
            write_fixtures(out_dir, work_dir)
        else:
            out_dir = args.out or DEFAULT_CORPUS_DIR
            out_dir.mkdir(parents=True, exist_ok=True)
            write_corpus(out_dir, args.count, args.seed, args.min_seconds, args.max_seconds, work_dir)
    print(f"written to {out_dir}")


if __name__ == "__main__":
    main()
