"""Peak memory of the transcriber on a long recording: 1 h and 8 h of real speech with pauses.

The recording: real Russian read speech (festvox-ru, one speaker, fetched as bench/accuracy does)
in talk stretches of about a minute (0.3-1.2 s pauses between utterances), each followed by a
silence so that `--speech-share` of the whole is speech; one hour of that, repeated, encoded as
Ogg Opus at 32 kbps as people upload long recordings. The 8 h file is the 1 h file eight times
over, so each of its hours is exactly the 1 h recording cut out by hand: the transcript quality
of every hour of the 8 h job is compared with the 1 h job's (word error rate against the
utterances' texts).

Each job runs in a fresh process doing what the worker does: ffmpeg decodes the file to a PCM file
(`kazru.adapters.audio.decode_to_file`), the pipeline (VAD, CAM++, clustering, Whisper, assembly) reads it
piece by piece. The process's peak resident memory (VmHWM) is compared with the lower bound
measured in the same process: its memory with the models loaded, before any audio.

Whisper runs only on the speech, so the run time follows the speech share; the memory that used
to grow with the recording (PCM, VAD, pairwise clustering) follows its length. Prints JSON.
Run: `.venv/bin/python -m bench.long_recording [--hours 1 8] [--speech-share 0.1]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.accuracy.metrics import ErrorTally, word_errors
from bench.accuracy.sets import CACHE_DIR, festvox_ru
from kazru.adapters import audio
from kazru.settings import REPO_ROOT

STRETCH_SECONDS = 60.0
PAUSE_RANGE_SECONDS = (0.3, 1.2)
HOUR_SECONDS = 3600.0
OPUS_BITRATE = "32k"


def _memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def hour_plan(speech_share: float, seed: int = 7) -> tuple[list[tuple[float, Path | None, float, str]], float]:
    """One hour as (start, utterance file or None for silence, seconds, text) pieces, and its speech seconds."""
    rng = random.Random(seed)
    utterances = festvox_ru(620)
    plan, position, speech, index = [], 0.0, 0.0, 0
    while True:
        stretch_start = position
        while position - stretch_start < STRETCH_SECONDS:
            utterance = utterances[index % len(utterances)]
            index += 1
            seconds = _seconds_of(utterance.audio)
            if position + seconds > HOUR_SECONDS:
                return plan, speech
            plan.append((position, utterance.audio, seconds, utterance.text))
            position += seconds + rng.uniform(*PAUSE_RANGE_SECONDS)
            speech += seconds
        # Silence after the stretch so that speech is `speech_share` of the time.
        position += (position - stretch_start) * (1 - speech_share) / speech_share
        if position >= HOUR_SECONDS:
            return plan, speech


_SAMPLES: dict[Path, np.ndarray] = {}


def _samples_of(path: Path) -> np.ndarray:
    if path not in _SAMPLES:
        _SAMPLES[path] = asyncio.run(audio.decode_pcm16k(str(path)))
    return _SAMPLES[path]


def _seconds_of(path: Path) -> float:
    return len(_samples_of(path)) / audio.SAMPLE_RATE


def write_recording(path: Path, hours: int, plan) -> None:
    """Stream `hours` repetitions of the hour into ffmpeg (never the whole PCM in memory)."""
    encoder = subprocess.Popen(
        [audio.ffmpeg_exe(), "-v", "error", "-y", "-f", "s16le", "-ar", str(audio.SAMPLE_RATE), "-ac", "1",
         "-i", "pipe:0", "-c:a", "libopus", "-b:a", OPUS_BITRATE, "-application", "voip", str(path)],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    hour_samples = int(HOUR_SECONDS * audio.SAMPLE_RATE)
    for _ in range(hours):
        written = 0
        for start, utterance, _seconds, _text in plan:
            first = int(start * audio.SAMPLE_RATE)
            encoder.stdin.write(bytes(2 * (first - written)))  # the pause before it
            samples = _samples_of(utterance)
            encoder.stdin.write(audio.pcm16_bytes(samples))
            written = first + len(samples)
        encoder.stdin.write(bytes(2 * (hour_samples - written)))
    encoder.stdin.close()
    if encoder.wait() != 0:
        raise RuntimeError("ffmpeg could not encode the long recording")


def run_job(recording_file: Path, languages: list[str]) -> dict:
    """In this (fresh) process: what the worker does with one job, and its memory."""
    from kazru.settings import Settings
    from services.transcriber.pipeline import create_pipeline

    settings = Settings()
    pipeline = create_pipeline(settings)
    gc.collect()
    floor = _memory_kib("VmRSS")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kazru-bench-") as work_dir:
        recording = asyncio.run(audio.decode_to_file(str(recording_file), Path(work_dir) / "audio.pcm"))
        decode_seconds = time.perf_counter() - started
        result = asyncio.run(pipeline.run(recording, languages))
    words = [(word.start, word.text) for segment in result.segments for word in segment.words]
    gc.collect()
    return {
        "audio_hours": round(recording.duration / 3600, 3),
        "models_loaded_rss_mb": round(floor / 1024, 1),
        "peak_rss_mb": round(_memory_kib("VmHWM") / 1024, 1),
        "rss_after_job_mb": round(_memory_kib("VmRSS") / 1024, 1),
        "decode_seconds": round(decode_seconds, 1),
        "stage_seconds": {name: round(value, 1) for name, value in result.stage_seconds.items()},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "segments": len(result.segments),
        "speakers": len(result.speakers),
        "words": words,
    }


def hour_word_errors(words: list[tuple[float, str]], plan, hours: int) -> list[ErrorTally]:
    """Word errors of each hour of a transcript against the hour's utterance texts."""
    reference = " ".join(text for _start, _utterance, _seconds, text in plan)
    tallies = []
    for hour in range(hours):
        heard = " ".join(text for start, text in words if hour * HOUR_SECONDS <= start < (hour + 1) * HOUR_SECONDS)
        tallies.append(word_errors(reference, heard))
    return tallies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--speech-share", type=float, default=0.1)
    parser.add_argument("--languages", nargs="+", default=["ru"])
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)  # the child process: one job
    args = parser.parse_args()
    if args.job is not None:
        print(json.dumps(run_job(args.job, args.languages)))
        return

    plan, speech = hour_plan(args.speech_share)
    cache = CACHE_DIR / "long-recording"
    cache.mkdir(parents=True, exist_ok=True)
    runs = {}
    for hours in args.hours:
        recording_file = cache / f"festvox-ru-{hours}h-share{args.speech_share}.ogg"
        if not recording_file.is_file():
            write_recording(recording_file, hours, plan)
        print(f"[long-recording] {hours} h: transcribing {recording_file.name}", file=sys.stderr, flush=True)
        child = subprocess.run(
            [sys.executable, "-m", "bench.long_recording", "--job", str(recording_file), "--languages", *args.languages],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        run = json.loads(child.stdout.strip().splitlines()[-1])
        tallies = hour_word_errors(run.pop("words"), plan, hours)
        total = ErrorTally()
        for tally in tallies:
            total.add(tally)
        run["wer"] = round(total.rate, 4)
        run["wer_per_hour"] = [round(tally.rate, 4) for tally in tallies]
        run["file_mb"] = round(recording_file.stat().st_size / 1e6, 1)
        runs[f"{hours}h"] = run
        print(f"[long-recording] {hours} h: peak {run['peak_rss_mb']} MB", file=sys.stderr, flush=True)
    report = {
        "benchmark": "long_recording",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "speech_share": args.speech_share,
        "speech_seconds_per_hour": round(speech, 1),
        "languages": args.languages,
        "runs": runs,
    }
    if "1h" in runs and "8h" in runs:
        report["peak_8h_over_1h"] = round(runs["8h"]["peak_rss_mb"] / runs["1h"]["peak_rss_mb"], 3)
        report["peak_8h_over_models_loaded"] = round(runs["8h"]["peak_rss_mb"] / runs["8h"]["models_loaded_rss_mb"], 3)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
