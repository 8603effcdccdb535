"""Accuracy benchmark: our transcription pipeline on the generated conversations.

    python bench/accuracy/generate.py && python bench/accuracy/run.py
    python bench/accuracy/run.py --limit 6 --json-out bench/results/accuracy.json
    python bench/accuracy/run.py --self-check     # the metrics on the references alone, no model

For every `<id>.flac` in the corpus (with `<id>.json` beside it, see generate.py) the
pipeline runs once, in this process, with the model loaded once beforehand; the
hypothesis segments are scored against the reference turns (metrics.py). Prints one
JSON object: pooled WER/CER per language, language-ID accuracy per reference turn, DER
(pyannote.metrics, ±0.25 s collar, overlap scored), speaker-count accuracy, real-time
factors overall and per pipeline stage, and one row per file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Run as a script: make `bench.accuracy` importable from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.accuracy.generate import DEFAULT_CORPUS_DIR, SAMPLE_RATE  # noqa: E402
from bench.accuracy.metrics import (  # noqa: E402
    FileScore,
    Segment,
    TimedWord,
    score_file,
    summarize,
)


def load_reference(json_path: Path) -> list[Segment]:
    turns = json.loads(json_path.read_text(encoding="utf-8"))
    return [
        Segment(
            start=turn["start"], end=turn["end"], speaker=turn["speaker"], language=turn["language"], text=turn["text"]
        )
        for turn in turns
    ]


def corpus_files(corpus: Path, limit: int | None) -> list[Path]:
    files = sorted(path for path in corpus.glob("*.flac") if path.with_suffix(".json").exists())
    if not files:
        raise SystemExit(f"no <id>.flac + <id>.json pairs in {corpus}; run bench/accuracy/generate.py first")
    return files[:limit] if limit else files


def _word_text(word: object) -> str:
    # Pipeline words carry their text as `text` (RecognizedWord) or `word` (faster-whisper style).
    return str(getattr(word, "text", None) or getattr(word, "word", "")).strip()


def hypothesis_segments(result: object) -> list[Segment]:
    """The pipeline's TranscriptSegments as metric segments (words kept when they have timings)."""
    segments = []
    for segment in result.segments:
        words = tuple(
            TimedWord(float(word.start), float(word.end), _word_text(word))
            for word in (getattr(segment, "words", None) or ())
            if getattr(word, "start", None) is not None and getattr(word, "end", None) is not None
        )
        segments.append(
            Segment(
                start=float(segment.start),
                end=float(segment.end),
                speaker=str(segment.speaker),
                language=str(segment.language),
                text=str(segment.text),
                words=words,
            )
        )
    return segments


# Keys of the pipeline's stage_seconds that are not time spent (the audio length is reported there too).
NOT_A_STAGE = {"audio_seconds"}
# The diarizers' own stages (diarization.py, and the segmentation peer's), summed for their real-time factor.
DIARIZATION_STAGES = ("vad_seconds", "segmentation_seconds", "embedding_seconds", "clustering_seconds")


def real_time_factors(stage_seconds: dict[str, float], wall_seconds: float, audio_seconds: float) -> dict:
    stages = {stage: spent for stage, spent in sorted(stage_seconds.items()) if stage not in NOT_A_STAGE}
    diarization = sum(stages.get(stage, 0.0) for stage in DIARIZATION_STAGES)
    return {
        "rtf": round(wall_seconds / audio_seconds, 4),
        "rtf_diarization": round(diarization / audio_seconds, 4),
        "rtf_by_stage": {stage: round(spent / audio_seconds, 4) for stage, spent in stages.items()},
        "stage_seconds": {stage: round(spent, 3) for stage, spent in stages.items()},
        "wall_seconds": round(wall_seconds, 3),
    }


@dataclass(frozen=True)
class _DiarizationResult:
    segments: list[Segment]
    stage_seconds: dict[str, float]


class DiarizationOnly:
    """The pipeline's diarizer alone (no speech model): speaker turns without text or language,
    for a quick DER and speaker-count check."""

    def __init__(self) -> None:
        from kazru.settings import Settings
        from services.transcriber.pipeline import create_diarizer

        self._diarizer = create_diarizer(Settings())

    async def run(self, samples, languages, min_speakers=None, max_speakers=None, on_progress=None):
        diarization = await asyncio.to_thread(self._diarizer.diarize, samples, min_speakers, max_speakers)
        turns = [Segment(turn.start, turn.end, turn.speaker, "", "") for turn in diarization.turns]
        return _DiarizationResult(turns, dict(diarization.stage_seconds))


# Text and language figures mean nothing without the speech engine.
TEXT_FIELDS = ("wer", "cer", "reference_words", "language_id_accuracy", "language_id_accuracy_by_language")


async def benchmark(args: argparse.Namespace) -> dict:
    from kazru.adapters import audio
    from kazru.settings import Settings

    settings = Settings(engine=args.engine)
    started = time.perf_counter()
    if args.diarization_only:
        pipeline = DiarizationOnly()
    else:
        from services.transcriber.pipeline import create_pipeline

        pipeline = create_pipeline(settings)
    load_seconds = time.perf_counter() - started

    languages = tuple(args.languages.split(","))
    scores: list[FileScore] = []
    rows = []
    stage_totals: dict[str, float] = {}
    wall_total = decode_total = 0.0
    for path in corpus_files(args.corpus, args.limit):
        decode_started = time.perf_counter()
        samples = await audio.decode_pcm16k(str(path), settings.ffmpeg_path)
        decode_total += time.perf_counter() - decode_started
        duration = len(samples) / SAMPLE_RATE

        run_started = time.perf_counter()
        result = await pipeline.run(samples, languages=languages, on_progress=lambda _fraction: None)
        wall = time.perf_counter() - run_started
        wall_total += wall
        for stage, spent in result.stage_seconds.items():
            stage_totals[stage] = stage_totals.get(stage, 0.0) + spent

        score = score_file(path.stem, load_reference(path.with_suffix(".json")), hypothesis_segments(result), duration)
        scores.append(score)
        row = score.as_row() | real_time_factors(dict(result.stage_seconds), wall, duration)
        if args.diarization_only:
            row = {name: value for name, value in row.items() if name not in TEXT_FIELDS}
        rows.append(row)
        print(
            f"{path.stem}: {duration:5.1f} s  DER {row['der']}  speakers {score.hypothesis_speakers}/"
            f"{score.reference_speakers}  lang {row.get('language_id_accuracy')}  WER {row.get('wer')}  RTF {row['rtf']}",
            file=sys.stderr,
        )

    summary = summarize(scores)
    if args.diarization_only:
        summary = {name: value for name, value in summary.items() if name not in TEXT_FIELDS}
    audio_seconds = sum(score.duration_s for score in scores)
    return {
        "benchmark": "accuracy-diarization-only" if args.diarization_only else "accuracy",
        "engine": None if args.diarization_only else settings.engine,
        "model": None if args.diarization_only else _model_name(settings),
        "languages": list(languages),
        "corpus": str(args.corpus),
        **summary,
        **real_time_factors(stage_totals, wall_total, audio_seconds),
        "rtf_decode": round(decode_total / audio_seconds, 4),
        "model_load_seconds": round(load_seconds, 3),
        "machine": machine_info(),
        "files": rows,
    }


def self_check(args: argparse.Namespace) -> dict:
    """Score every reference against itself (all errors 0) and against known perturbations."""
    identical: list[FileScore] = []
    relabelled: list[FileScore] = []
    first_speaker_dropped: list[FileScore] = []
    for path in corpus_files(args.corpus, args.limit):
        reference = load_reference(path.with_suffix(".json"))
        duration = float(reference[-1].end) + 1.0
        identical.append(score_file(path.stem, reference, reference, duration))
        relabelled.append(
            score_file(
                path.stem, reference, [_with(turn, speaker="renamed_" + turn.speaker) for turn in reference], duration
            )
        )
        dropped = reference[0].speaker
        first_speaker_dropped.append(
            score_file(path.stem, reference, [turn for turn in reference if turn.speaker != dropped], duration)
        )
    return {
        "self_check": True,
        "corpus": str(args.corpus),
        "identical": summarize(identical),
        "speakers_renamed": summarize(relabelled),
        "first_speaker_dropped": summarize(first_speaker_dropped),
    }


def _with(segment: Segment, **changes: object) -> Segment:
    fields = {name: getattr(segment, name) for name in ("start", "end", "speaker", "language", "text", "words")}
    return Segment(**(fields | changes))


def _model_name(settings) -> str:
    return settings.whisper_model_path if settings.engine == "whisper" else settings.speechkit.model


def machine_info() -> dict:
    """The CPUs this process may use (not the host's count), the platform and Python."""
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
    return {"cpus": cpus, "platform": platform.platform(), "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS_DIR, help=f"default {DEFAULT_CORPUS_DIR}")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N files")
    parser.add_argument("--engine", choices=["whisper", "speechkit"], default="whisper")
    parser.add_argument("--languages", default="kk,ru", help="allowed languages, comma-separated (default kk,ru)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--diarization-only", action="store_true", help="run only the diarizer: DER and speaker count, no model"
    )
    parser.add_argument("--self-check", action="store_true", help="score the references against themselves, no model")
    args = parser.parse_args()

    print_report(self_check(args) if args.self_check else asyncio.run(benchmark(args)), args.json_out)


def print_report(report: dict, json_out: Path | None) -> None:
    """The benchmark's JSON on stdout, and in `json_out` too when given."""
    text = json.dumps(report, ensure_ascii=False, indent=2)
    print(text)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
