"""How long people pause inside a sentence and between sentences, on real read Russian speech.

    python bench/accuracy/sentence_pauses.py          # JSON on stdout

The basis of punctuation.py's SENTENCE_PAUSE_SECONDS. festvox-ru's 620 utterances are real recordings of
one man reading, 16 kHz, with their text; 200-odd of them hold more than one sentence. Pauses are silent
stretches (frame energy more than SILENCE_DB below the utterance's loud frames) of at least MIN_PAUSE
seconds between its first and last sound. In an utterance of one sentence every pause is inside the
sentence (commas, breaths); in one of k+1 sentences the k longest pauses are taken as the sentence ends
(the others as inside), which is what a reader does.
"""

from __future__ import annotations

import json
import re
import sys
import wave
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from bench.accuracy.sets import fetch_festvox_ru, parse_txt_done_data  # noqa: E402

FRAME_SECONDS = 0.01
SILENCE_DB = 35.0
MIN_PAUSE = 0.15
# A sentence end inside a prompt: ".", "!", "?" or "..." followed by more words.
SENTENCE_END = re.compile(r"[.!?…]+[\s\-–—]+(?=\w)")
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


def pauses(path: Path) -> list[float]:
    with wave.open(str(path)) as audio:
        rate = audio.getframerate()
        samples = np.frombuffer(audio.readframes(audio.getnframes()), dtype=np.int16).astype(np.float64)
    frame = int(rate * FRAME_SECONDS)
    frames = samples[: len(samples) // frame * frame].reshape(-1, frame)
    energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-9)
    sound = energy > np.percentile(energy, 95) - SILENCE_DB
    voiced = np.flatnonzero(sound)
    if voiced.size == 0:
        return []
    found, run = [], 0
    for is_sound in sound[voiced[0] : voiced[-1] + 1]:
        if is_sound:
            if run * FRAME_SECONDS >= MIN_PAUSE:
                found.append(run * FRAME_SECONDS)
            run = 0
        else:
            run += 1
    return found


def main() -> None:
    voice = fetch_festvox_ru()
    prompts = parse_txt_done_data((voice / "etc" / "txt.done.data").read_text(encoding="utf-8"))
    inside, between = [], []
    for utterance, text in sorted(prompts.items()):
        path = voice / "wav" / f"{utterance}.wav"
        if not path.is_file():
            continue
        found = sorted(pauses(path), reverse=True)
        ends = len(SENTENCE_END.findall(text.strip()))
        between += found[:ends]
        inside += found[ends:]
    report = {
        "utterances": len(prompts),
        "pauses_inside_sentences": len(inside),
        "pauses_between_sentences": len(between),
        "inside_percentiles_s": {p: round(float(np.percentile(inside, p)), 3) for p in (50, 90, 95, 99)},
        "between_percentiles_s": {p: round(float(np.percentile(between, p)), 3) for p in (5, 10, 25, 50)},
        # For each threshold: share of pauses inside sentences that would end one wrongly, and share of the
        # sentence ends it finds.
        "thresholds": {
            str(t): {
                "inside_cut": round(sum(p >= t for p in inside) / len(inside), 4),
                "ends_found": round(sum(p >= t for p in between) / len(between), 4),
            }
            for t in THRESHOLDS
        },
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
