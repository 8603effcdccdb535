"""Speed and memory of GigaAM-Multilingual CTC (int8, onnx-asr) beside Whisper base (int8, faster-whisper)
on the same real recordings, in the same run, on the same number of CPU threads.

What the CPU pays, not what the models hear: the GigaAM folder is a random-weight model of the real
architecture and size (scripts/export_random_gigaam.py), so its text is noise. Never read these
figures as accuracy.

Each engine runs in a fresh subprocess, so the peak resident memory (ru_maxrss) is its own: Python,
numpy, the runtime, the model and the work. In each: decode the files (ffmpeg, 16 kHz mono), load the
model (timed apart), warm up on 2 s, then recognise every file:
- GigaAM: each file cut into pieces of at most `--piece-seconds` (the engine's KAZRU_GIGAAM_MAX_PIECE_SECONDS),
  recognised `--batch-size` pieces at a time with character timestamps (`with_timestamps()`);
- Whisper base: `transcribe(beam_size=1, word_timestamps=True)`, language detected, as a job
  without a language hint.
Real-time factor = recognition seconds / audio seconds (model load excluded). Prints JSON.

`--through engine` (the default) runs the service's own engines instead, as the transcriber does: the
diarizer's speech regions (Silero VAD, found once per file outside the timing, since every engine gets the
same ones) recognised by `GigaamEngine` (pieces cut at quiet points, words, language from the text,
punctuation) and by `WhisperEngine` (chunks, one decode per allowed language, word alignment, language
choice), both allowed kk,ru. `--through plain` is the bare runtimes above.

    .venv/bin/python bench/gigaam_speed.py --gigaam /work/e2-models/gigaam-multilingual-ctc \\
        [--gigaam-large /work/e2-models/gigaam-multilingual-large-ctc] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "real"  # beside the checkout, as bench/accuracy/sets.py has it
# Real people, about 2 minutes in all: English meetings and calls, read turns, Kazakh commands.
DEFAULT_FILES = [
    "en_pyannote_sample.flac",
    "en_pyannote_debug_trn03.flac",
    "en_pyannote_debug_trn06.flac",
    "falcon_test.flac",
    "kk_is2ai_example_1.flac",
    "kk_is2ai_example_2.flac",
]
SAMPLE_RATE = 16_000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def decode(files: list[Path]) -> list:
    sys.path.insert(0, str(REPO))
    from kazru.adapters.audio import decode_pcm16k

    return [asyncio.run(decode_pcm16k(str(path))) for path in files]


def run_gigaam(job: dict) -> dict:
    import numpy as np
    import onnx_asr
    import onnxruntime as ort

    clips = decode([Path(f) for f in job["files"]])
    options = ort.SessionOptions()
    options.intra_op_num_threads = job["threads"]
    options.inter_op_num_threads = 1
    started = time.perf_counter()
    model = onnx_asr.load_model(job["model"], job["folder"], quantization="int8", sess_options=options)
    model = model.with_timestamps()
    load_seconds = time.perf_counter() - started
    model.recognize(clips[0][: 2 * SAMPLE_RATE])  # warm-up
    piece = int(job["piece_seconds"] * SAMPLE_RATE)
    pieces = [clip[i : i + piece] for clip in clips for i in range(0, len(clip), piece)]
    started = time.perf_counter()
    characters = 0
    for first in range(0, len(pieces), job["batch_size"]):
        for result in model.recognize(pieces[first : first + job["batch_size"]]):
            characters += len(result.text)
    seconds = time.perf_counter() - started
    audio_seconds = sum(len(clip) for clip in clips) / SAMPLE_RATE
    return {
        "engine": f"{job['model']} int8 (onnx-asr, random weights)",
        "model_file_mb": round(sum(p.stat().st_size for p in Path(job["folder"]).glob("*.onnx")) / 2**20, 1),
        "pieces": len(pieces),
        "audio_seconds": round(audio_seconds, 2),
        "load_seconds": round(load_seconds, 2),
        "recognition_seconds": round(seconds, 2),
        "real_time_factor": round(seconds / audio_seconds, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "output_characters": characters,
        "numpy": np.__version__,
    }


def run_engine(job: dict) -> dict:
    """One of the service's engines over VAD regions, as the transcriber runs it (see the docstring)."""
    sys.path.insert(0, str(REPO))
    from kazru.domain.recognition import SpeechRegion
    from kazru.settings import GigaamSettings, Settings, WhisperSettings
    from services.transcriber.diarization import detect_speech
    from services.transcriber.engines import create_speech_engine

    clips = decode([Path(f) for f in job["files"]])
    regions = [[SpeechRegion(r.start, r.end, "S1") for r in detect_speech(clip)] for clip in clips]
    if job["kind"] == "engine-gigaam":
        settings = Settings(engine="gigaam", gigaam=GigaamSettings(
            model=job["model"], model_dir=job["folder"], cpu_threads=job["threads"], batch_size=job["batch_size"],
            max_piece_seconds=job["piece_seconds"]))  # fmt: skip
    else:
        settings = Settings(engine="whisper", whisper=WhisperSettings(model=job["folder"], cpu_threads=job["threads"]))
    started = time.perf_counter()
    engine = create_speech_engine(settings)
    load_seconds = time.perf_counter() - started
    warm = clips[0][: 2 * SAMPLE_RATE]
    engine.recognize_blocking(warm, ["kk", "ru"], [SpeechRegion(0.0, 2.0, "S1")], lambda fraction: None)
    started = time.perf_counter()
    words = 0
    for clip, clip_regions in zip(clips, regions, strict=True):
        recognition = engine.recognize_blocking(clip, ["kk", "ru"], clip_regions, lambda fraction: None)
        words += sum(len(span.words) for span in recognition.spans)
    seconds = time.perf_counter() - started
    audio_seconds = sum(len(clip) for clip in clips) / SAMPLE_RATE
    return {
        "engine": f"ours: {recognition.engine} / {recognition.model}, allowed kk,ru",
        "audio_seconds": round(audio_seconds, 2),
        "speech_seconds": round(sum(r.end - r.start for rs in regions for r in rs), 2),
        "load_seconds": round(load_seconds, 2),
        "recognition_seconds": round(seconds, 2),
        "real_time_factor": round(seconds / audio_seconds, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "output_words": words,
    }


def run_whisper(job: dict) -> dict:
    from faster_whisper import WhisperModel

    clips = decode([Path(f) for f in job["files"]])
    started = time.perf_counter()
    model = WhisperModel(job["folder"], device="cpu", compute_type="int8", cpu_threads=job["threads"])
    load_seconds = time.perf_counter() - started
    list(model.transcribe(clips[0][: 2 * SAMPLE_RATE], beam_size=1, word_timestamps=True)[0])  # warm-up
    started = time.perf_counter()
    words = 0
    for clip in clips:
        segments, _ = model.transcribe(clip, beam_size=1, word_timestamps=True)
        words += sum(len(segment.words or []) for segment in segments)
    seconds = time.perf_counter() - started
    audio_seconds = sum(len(clip) for clip in clips) / SAMPLE_RATE
    return {
        "engine": "whisper-base int8 (faster-whisper, beam 1, word timestamps)",
        "model_file_mb": round(sum(p.stat().st_size for p in Path(job["folder"]).glob("*.bin")) / 2**20, 1),
        "audio_seconds": round(audio_seconds, 2),
        "load_seconds": round(load_seconds, 2),
        "recognition_seconds": round(seconds, 2),
        "real_time_factor": round(seconds / audio_seconds, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "output_words": words,
    }


def in_fresh_process(job: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(job["threads"])}
    command = [sys.executable, __file__, "--worker", json.dumps(job)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{job['kind']} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gigaam", type=Path, help="folder of gigaam-multilingual-ctc (int8)")
    parser.add_argument("--gigaam-large", type=Path, help="folder of gigaam-multilingual-large-ctc (int8)")
    parser.add_argument("--whisper", type=Path, default=REPO / ".kazru" / "models" / "whisper-base")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="folder of the default files")
    parser.add_argument("--files", type=Path, nargs="*", help=f"default: {', '.join(DEFAULT_FILES)} of --corpus")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--piece-seconds", type=float, default=20.0)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--through", choices=("engine", "plain"), default="engine")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        job = json.loads(args.worker)
        runs = {"whisper": run_whisper, "gigaam": run_gigaam, "engine-gigaam": run_engine, "engine-whisper": run_engine}
        print(json.dumps(runs[job["kind"]](job)))
        return
    if not args.gigaam:
        parser.error("--gigaam FOLDER is required (make it with scripts/export_random_gigaam.py)")

    args.files = args.files or [args.corpus / name for name in DEFAULT_FILES]
    if missing := [str(f) for f in args.files if not f.is_file()]:
        parser.error(f"no such files: {missing} (--corpus FOLDER?)")
    common = {"files": [str(f) for f in args.files], "threads": args.threads}
    prefix = "engine-" if args.through == "engine" else ""
    gigaam = {**common, "kind": f"{prefix}gigaam", "piece_seconds": args.piece_seconds, "batch_size": args.batch_size}
    jobs = [
        {**gigaam, "model": "gigaam-multilingual-ctc", "folder": str(args.gigaam)},
        {**common, "kind": f"{prefix}whisper", "folder": str(args.whisper)},
    ]
    if args.gigaam_large:
        jobs.append({**gigaam, "model": "gigaam-multilingual-large-ctc", "folder": str(args.gigaam_large)})
    load_before = os.getloadavg()  # the machine may be shared: say how busy it was
    results = [in_fresh_process(job) for job in jobs]
    print(json.dumps({
        "note": "speed and memory only: the GigaAM weights are random (same architecture, size and ONNX form)",
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "through": args.through,
        "files": [f.name for f in args.files],
        "results": results,
        "load_average_after": os.getloadavg(),
    }, indent=1))


if __name__ == "__main__":
    main()
