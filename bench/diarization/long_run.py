"""The diarizer on one long recording of real voices: speed and peak memory, before and after issue 24, same run.

    python bench/diarization/long_run.py [--minutes 60] [--json-out FILE]

The recording: the built conversations of the held-out pool (conversations.py, real LibriSpeech voices on their
channels) joined end to end until `--minutes` (dense speech: the worst case for CAM++ and the clustering; the
segmentation model runs over all audio either way), written once as a 16 kHz PCM file and read piece by piece as
the transcriber reads a job. Each diarizer runs in a fresh process: `before` (Silero VAD alone, the eigengap count,
the service's setting before issue 24) and `now` (Silero joined with segmentation-3.0, the average-linkage cut,
services/transcriber/pipeline.create_diarizer). Per diarizer: wall time per stage, real-time factor, peak resident
memory (VmHWM) and the lower bound measured in the same process (models loaded, no audio), speakers found.
Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.accuracy.run import machine_info, print_report  # noqa: E402
from bench.diarization.conversations import DEFAULT_SEED, output_dir  # noqa: E402
from bench.diarization.score import conversation_items  # noqa: E402
from kazru.adapters import audio  # noqa: E402

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "diarization-long"


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build_recording(minutes: float, seed: int) -> Path:
    path = CACHE / f"heldout-{minutes:g}min-seed{seed}.pcm"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    target = int(minutes * 60 * audio.SAMPLE_RATE)
    written = 0
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        while written < target:
            for item in conversation_items(output_dir(seed), "heldout", None):
                samples = asyncio.run(audio.decode_pcm16k(str(item.audio)))[: target - written]
                out.write((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
                written += len(samples)
                if written >= target:
                    break
    partial.rename(path)
    return path


def run_one(which: str, path: Path) -> dict:
    """In this (fresh) process: load the diarizer, note the memory, diarize the file."""
    from kazru.settings import Settings
    from services.transcriber.diarization import ClusteringLimits, Diarizer
    from services.transcriber.pipeline import create_diarizer
    from services.transcriber.speaker_embedding import CamPlusPlusEncoder

    settings = Settings()
    if which == "before":
        diarizer = Diarizer(CamPlusPlusEncoder.load(settings.speaker_model_dir), ClusteringLimits())
    else:
        diarizer = create_diarizer(settings)
    loaded = current_rss_mb()
    recording = audio.Recording.from_pcm_file(path)
    started = time.perf_counter()
    result = diarizer.diarize(recording)
    seconds = time.perf_counter() - started
    return {
        "diarizer": which,
        "audio_seconds": round(recording.duration, 1),
        "wall_seconds": round(seconds, 1),
        "rtf": round(seconds / recording.duration, 4),
        "stage_seconds": {name: round(value, 1) for name, value in result.stage_seconds.items()},
        "speech_seconds": round(sum(region.end - region.start for region in result.speech), 1),
        "speakers": len(result.speakers),
        "models_loaded_rss_mb": round(loaded, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--one", choices=("before", "now"), help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.file)))
        return
    path = build_recording(args.minutes, args.seed)
    rows = []
    for which in ("before", "now"):
        child = [sys.executable, __file__, "--one", which, "--file", str(path)]
        finished = subprocess.run(child, check=True, capture_output=True, text=True)
        rows.append(json.loads(finished.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr, flush=True)
    print_report({"benchmark": "diarizer on a long recording (issue 24)", "machine": machine_info(), "runs": rows},
                 args.json_out)  # fmt: skip


if __name__ == "__main__":
    main()
