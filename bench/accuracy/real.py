"""Accuracy benchmark on real recordings: our pipeline and its peers, in one run, on the same files.

    python bench/accuracy/real.py                                   # corpus + 100 festvox-ru utterances
    python bench/accuracy/real.py --set corpus=../shared/corpus/real --festvox-count 10
    python bench/accuracy/real.py --set mine=/data/kk-meetings --sets mine --languages mine=kk,ru
    python bench/accuracy/real.py --only peers --json-out bench/results/accuracy-real.json
    python bench/accuracy/real.py --engine gigaam --model-dir .kazru/models/gigaam-multilingual-ctc
    make bench-real BENCH_ARGS="--engine gigaam --model-dir /models/gigaam-multilingual-ctc"

Sets: `corpus` (<repo>/../shared/corpus/real), `festvox-ru` (fetched from the Debian archive into
bench/.cache, see sets.py) and any `--set NAME=PATH` folder in the same format (sets.py).

Systems, all in this process, each model loaded once before the first file:
- `ours`: the pipeline (`create_pipeline(settings)`: engine, diarizer, per-turn language, assembly) with
  the configured engine: the environment's (KAZRU_ENGINE, KAZRU_GIGAAM_MODEL_DIR, KAZRU_WHISPER_MODEL, ...),
  or `--engine {whisper,gigaam,speechkit}` and `--model-dir DIR` (the engine's model folder) over it.
  The JSON's `engine` says which engine, model and folder were scored.
- `whisper_reference_language`: plain faster-whisper `transcribe` on the whole file with the
  Whisper model our Whisper engine uses (`model` in the JSON; the same as ours when ours is Whisper), compute type and beam (Settings().whisper.beam_size, greedy by default), told the file's
  reference language; `..._beam5`: the same with faster-whisper's own default beam of 5, so our
  greedy default is compared with the peer's usual setting too; both only on files with a
  transcript. `whisper_detected_language`: the same with `language=None` (Whisper's own language
  detection, over all its languages), on every file.
- Diarizers alone, on files with RTTM: `DIARIZER_PEERS` (one line each).

Allowed languages: a set's `--languages` (default kk,ru) are passed to our pipeline, except for a
file whose reference language is not among them (the English recordings of the shared corpus):
it is given its reference language alone, as a user who knows the recording's language would
choose (the pipeline cannot label English speech as en otherwise, and kk/ru would only measure
how it mislabels English).

Figures (metrics.py; per set and pooled): WER/CER per reference language against whole-file
transcripts (the hypothesis in time order) and ours/peer ratios; the share of hypothesis speech
time labelled with the reference language (ours: each segment's language, on files where it
had more than one language to choose from; the detecting peer: its one detected language); DER with ±0.25 s collar, overlap scored, with missed / false alarm /
confusion and confusion within detected speech; speaker count (≥ 2 s of speech on both sides);
cut words; real-time factors (ours per stage) and model load seconds; one row per file.
Progress goes to stderr, the JSON to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script: make `bench.accuracy` importable from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.accuracy.metrics import (  # noqa: E402
    DER_COLLAR_EACH_SIDE_S,
    ErrorTally,
    SecondsTally,
    Segment,
    _round,
    char_errors,
    counted_speakers,
    cut_words,
    der_figures,
    diarization_errors,
    language_seconds,
    time_ordered_text,
    word_errors,
)
from bench.accuracy.run import hypothesis_segments, machine_info, print_report, real_time_factors  # noqa: E402
from bench.accuracy.sets import (  # noqa: E402
    DEFAULT_CORPUS_DIR,
    FESTVOX_PACKAGE,
    FESTVOX_UTTERANCES,
    ReferenceFile,
    festvox_ru,
    load_folder,
)

SAMPLE_RATE = 16_000
OURS = "ours"
DEFAULT_LANGUAGES = ("kk", "ru")
# The whole default run (corpus + 100 utterances) took 38 min on 2 shared cores (load average 3.6-6.6 from
# other work; 33 CPU-minutes); each utterance costs all four speech systems, so 120 would take ~20 % longer.
DEFAULT_FESTVOX_COUNT = 100
# faster-whisper's own default for transcribe().
PEER_DEFAULT_BEAM = 5


def default_diarizer():
    """The diarizer our pipeline uses."""
    from kazru.settings import Settings
    from services.transcriber.pipeline import create_diarizer

    return create_diarizer(Settings())


def ge2e_diarizer():
    """The pipeline's previous diarizer: the GE2E encoder with the clustering limits it had."""
    from bench.ge2e.voice_encoder import VoiceEncoder
    from services.transcriber.diarization import ClusteringLimits, Diarizer

    return Diarizer(VoiceEncoder.load(), ClusteringLimits(min_speaker_windows=3, merge_cosine=None))


def _segmentation_peer(name: str):
    """pyannote segmentation-3.0 + CAM++ as pyannote 3.x (segmentation_diarizer.py): overlapping turns, or not."""
    from bench.accuracy import segmentation_diarizer

    return getattr(segmentation_diarizer, name)()


# Diarizers scored alone on files with RTTM: name → factory (called once). One line per peer.
DIARIZER_PEERS: dict[str, Callable[[], object]] = {
    "diarizer_default": default_diarizer,
    "diarizer_ge2e": ge2e_diarizer,
    "diarizer_segmentation_overlap": lambda: _segmentation_peer("overlap_peer"),
    "diarizer_segmentation_dominant": lambda: _segmentation_peer("dominant_peer"),
}


@dataclass(frozen=True)
class WhisperPeer:
    name: str
    beam_size: int
    detect_language: bool  # language=None: Whisper picks it; else it is told the reference language
    needs_text: bool  # only worth running where there is a transcript to score


def whisper_peers(settings) -> list[WhisperPeer]:
    return [
        WhisperPeer("whisper_reference_language", settings.whisper.beam_size, detect_language=False, needs_text=True),
        WhisperPeer("whisper_detected_language", settings.whisper.beam_size, detect_language=True, needs_text=False),
        WhisperPeer(f"whisper_reference_language_beam{PEER_DEFAULT_BEAM}", PEER_DEFAULT_BEAM, False, needs_text=True),
    ]


@dataclass
class SystemRun:
    """One system's output on one file, and what of it there is to score."""

    segments: list[Segment]
    wall_seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    has_text: bool = False
    labels_language: bool = False  # the segments' languages were chosen by the system, not given to it
    labels_speakers: bool = False


@dataclass
class SystemScore:
    """A system's figures on one file, or summed over files (`add`)."""

    files: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    words: dict[str, ErrorTally] = field(default_factory=dict)
    chars: dict[str, ErrorTally] = field(default_factory=dict)
    language: dict[str, SecondsTally] = field(default_factory=dict)
    segments_checked_for_cuts: int = 0
    cut_words: list[dict] = field(default_factory=list)
    diarized_files: int = 0
    der_components: dict[str, float] = field(default_factory=dict)
    speaker_counts_exact: int = 0

    def add(self, other: SystemScore) -> None:
        self.files += other.files
        self.audio_seconds += other.audio_seconds
        self.wall_seconds += other.wall_seconds
        for stage, seconds in other.stage_seconds.items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
        for mine, theirs in ((self.words, other.words), (self.chars, other.chars)):
            for language, tally in theirs.items():
                mine.setdefault(language, ErrorTally()).add(tally)
        for language, tally in other.language.items():
            self.language.setdefault(language, SecondsTally()).add(tally)
        self.segments_checked_for_cuts += other.segments_checked_for_cuts
        self.cut_words.extend(other.cut_words)
        self.diarized_files += other.diarized_files
        for name, seconds in other.der_components.items():
            self.der_components[name] = self.der_components.get(name, 0.0) + seconds
        self.speaker_counts_exact += other.speaker_counts_exact

    def summary(self, list_cut_words: bool) -> dict:
        figures: dict = {"files": self.files, "audio_seconds": round(self.audio_seconds, 3)}
        if self.words:
            figures["wer"] = {language: _round(tally.rate) for language, tally in sorted(self.words.items())}
            figures["cer"] = {language: _round(tally.rate) for language, tally in sorted(self.chars.items())}
            figures["reference_words"] = {language: tally.length for language, tally in sorted(self.words.items())}
            figures["cut_words"] = {
                "count": len(self.cut_words),
                "segments_checked": self.segments_checked_for_cuts,
                **({"found": self.cut_words} if list_cut_words else {}),
            }
        if self.language:
            pooled = SecondsTally()
            for tally in self.language.values():
                pooled.add(tally)
            figures["language_share"] = _round(pooled.share)
            figures["language_share_by_reference_language"] = {
                language: _round(tally.share) for language, tally in sorted(self.language.items())
            }
        if self.diarized_files:
            figures["diarization"] = {
                "files": self.diarized_files,
                **der_figures(self.der_components),
                "speaker_count_exact": _round(self.speaker_counts_exact / self.diarized_files),
                "collar_each_side_s": DER_COLLAR_EACH_SIDE_S,
                "skip_overlap": False,
            }
        if self.audio_seconds:
            factors = real_time_factors(self.stage_seconds, self.wall_seconds, self.audio_seconds)
            # Per-stage factors only for systems that report stages (the pipeline, the diarizers).
            figures |= (
                factors if self.stage_seconds else {"rtf": factors["rtf"], "wall_seconds": factors["wall_seconds"]}
            )
        return figures


def score_run(reference: ReferenceFile, run: SystemRun, duration: float) -> tuple[SystemScore, dict]:
    """One system on one file: its score (to add up) and its row figures."""
    score = SystemScore(
        files=1, audio_seconds=duration, wall_seconds=run.wall_seconds, stage_seconds=dict(run.stage_seconds)
    )
    row: dict = {"rtf": round(run.wall_seconds / duration, 4)}
    if run.has_text and reference.text:
        heard = time_ordered_text(run.segments)
        score.words[reference.language] = word_errors(reference.text, heard)
        score.chars[reference.language] = char_errors(reference.text, heard)
        score.segments_checked_for_cuts = sum(bool(segment.text.strip()) for segment in run.segments)
        score.cut_words = [{"id": reference.file_id} | cut for cut in cut_words(run.segments, reference.text)]
        row |= {
            "wer": _round(score.words[reference.language].rate),
            "cer": _round(score.chars[reference.language].rate),
            "cut_words": [cut["word"] for cut in score.cut_words],
            "text": heard,
        }
    if run.labels_language and reference.language is not None:
        score.language[reference.language] = language_seconds(run.segments, reference.language)
        row["language_share"] = _round(score.language[reference.language].share)
        row["languages_heard"] = sorted({segment.language for segment in run.segments})
    if run.labels_speakers and reference.turns is not None:
        score.diarized_files = 1
        score.der_components = diarization_errors(reference.turns, run.segments, duration, DER_COLLAR_EACH_SIDE_S)
        reference_speakers, hypothesis_speakers = counted_speakers(reference.turns), counted_speakers(run.segments)
        score.speaker_counts_exact = int(reference_speakers == hypothesis_speakers)
        row |= der_figures(score.der_components) | {
            "speakers": {
                "reference": reference_speakers,
                "hypothesis": hypothesis_speakers,
                "reference_any_length": len({turn.speaker for turn in reference.turns}),
                "hypothesis_any_length": len({segment.speaker for segment in run.segments}),
            }
        }
    return score, row


def allowed_languages(set_languages: tuple[str, ...], reference_language: str | None) -> tuple[str, ...]:
    """The rule of the module docstring: the set's languages, or the reference language alone (the set's where the
    reference has none)."""
    if reference_language is None or reference_language in set_languages:
        return set_languages
    return (reference_language,)


class Systems:
    """Every system's model, loaded once, and how long each load took."""

    def __init__(self, settings, only: str | None):
        self.load_seconds: dict[str, float] = {}
        self.pipeline = None
        self.whisper = None
        self.whisper_peers: list[WhisperPeer] = []
        self.diarizers: dict[str, object] = {}
        if only != "peers":
            from services.transcriber.pipeline import create_pipeline

            started = time.perf_counter()
            self.pipeline = create_pipeline(settings)
            self.load_seconds[OURS] = round(time.perf_counter() - started, 3)
        if only != "ours":
            from faster_whisper import WhisperModel

            started = time.perf_counter()
            # The model, compute type and threads our engine uses, so only the method differs.
            self.whisper = WhisperModel(
                settings.whisper_model_path,
                device="cpu",
                compute_type=settings.whisper.compute_type,
                cpu_threads=settings.whisper.cpu_threads,
            )
            self.load_seconds["whisper"] = round(time.perf_counter() - started, 3)
            self.whisper_peers = whisper_peers(settings)
            for name, factory in DIARIZER_PEERS.items():
                started = time.perf_counter()
                self.diarizers[name] = factory()
                self.load_seconds[name] = round(time.perf_counter() - started, 3)

    async def run(self, reference: ReferenceFile, samples, languages: tuple[str, ...]) -> dict[str, SystemRun]:
        runs: dict[str, SystemRun] = {}
        if self.pipeline is not None:
            started = time.perf_counter()
            result = await self.pipeline.run(
                samples, languages=languages, min_speakers=None, max_speakers=None, on_progress=lambda _fraction: None
            )
            runs[OURS] = SystemRun(
                hypothesis_segments(result),
                time.perf_counter() - started,
                dict(result.stage_seconds),
                has_text=True,
                # Given one language (see allowed_languages), the pipeline has no choice to score.
                labels_language=len(languages) > 1,
                labels_speakers=True,
            )
        for peer in self.whisper_peers:
            if (reference.text or not peer.needs_text) and (peer.detect_language or reference.language is not None):
                runs[peer.name] = self._transcribe(samples, peer, reference.language)
        if reference.turns is not None:
            for name, diarizer in self.diarizers.items():
                started = time.perf_counter()
                diarization = diarizer.diarize(samples)
                # Plain floats and strings: a diarizer may hand out numpy scalars, which JSON cannot write.
                turns = [
                    Segment(float(turn.start), float(turn.end), str(turn.speaker), "", "") for turn in diarization.turns
                ]
                runs[name] = SystemRun(
                    turns, time.perf_counter() - started, dict(diarization.stage_seconds), labels_speakers=True
                )
        return runs

    def _transcribe(self, samples, peer: WhisperPeer, reference_language: str | None) -> SystemRun:
        started = time.perf_counter()
        segments, info = self.whisper.transcribe(
            samples,
            language=None if peer.detect_language else reference_language,
            beam_size=peer.beam_size,
            word_timestamps=False,
        )
        segments = list(segments)  # transcribe() is lazy: the decoding happens here
        hypothesis = [
            Segment(segment.start, segment.end, "", info.language, segment.text.strip()) for segment in segments
        ]
        return SystemRun(hypothesis, time.perf_counter() - started, has_text=True, labels_language=peer.detect_language)


def ratios(systems: dict[str, dict]) -> dict:
    """ours / peer for WER and CER per language (below 1: ours is better)."""
    ours = systems.get(OURS, {})
    found = {}
    for name, figures in systems.items():
        if name == OURS or "wer" not in figures or "wer" not in ours:
            continue
        found[f"{OURS}/{name}"] = {
            measure: {
                language: _round(ours[measure][language] / peer_rate)
                if peer_rate and language in ours[measure]
                else None
                for language, peer_rate in figures[measure].items()
            }
            for measure in ("wer", "cer")
        }
    return found


def block(scores: dict[str, SystemScore], list_cut_words: bool) -> dict:
    systems = {name: score.summary(list_cut_words) for name, score in scores.items()}
    return {"systems": systems, "ratios": ratios(systems)}


def load_sets(args: argparse.Namespace) -> dict[str, list[ReferenceFile]]:
    folders = {"corpus": DEFAULT_CORPUS_DIR} | dict(_name_value(item, "--set") for item in args.set)
    folders = {name: Path(path) for name, path in folders.items()}
    chosen = (
        args.sets.split(",")
        if args.sets
        else [*folders, *([FESTVOX_PACKAGE] if FESTVOX_PACKAGE not in folders else [])]
    )
    sets = {}
    for name in chosen:
        if name in folders:
            files = load_folder(name, folders[name])
        elif name == FESTVOX_PACKAGE:
            files = festvox_ru(args.festvox_count)
        else:
            raise SystemExit(f"unknown set {name!r}: give its folder with --set {name}=PATH")
        sets[name] = files[: args.limit] if args.limit else files
    return sets


def set_languages(args: argparse.Namespace) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """`--languages kk,ru` for every set, `--languages NAME=kk,ru` for one."""
    default, per_set = DEFAULT_LANGUAGES, {}
    for item in args.languages:
        if "=" in item:
            name, languages = _name_value(item, "--languages")
            per_set[name] = tuple(languages.split(","))
        else:
            default = tuple(item.split(","))
    return default, per_set


def _name_value(item: str, option: str) -> tuple[str, str]:
    name, separator, value = item.partition("=")
    if not separator or not name or not value:
        raise SystemExit(f"{option} wants NAME=VALUE, not {item!r}")
    return name, value


def engine_settings(args: argparse.Namespace):
    """The settings `ours` runs on: the environment's, with `--engine` and `--model-dir` over them."""
    from kazru.settings import GigaamSettings, Settings, WhisperSettings

    engine = args.engine or Settings().engine
    changes: dict[str, object] = {"engine": engine}
    if args.model_dir is not None:
        if engine == "gigaam":
            changes["gigaam"] = GigaamSettings(model_dir=args.model_dir)  # its other fields: KAZRU_GIGAAM_*
        elif engine == "whisper":
            changes["whisper"] = WhisperSettings(model=str(args.model_dir))  # its other fields: KAZRU_WHISPER_*
        else:
            raise SystemExit(f"--model-dir: the {engine} engine runs at its provider and has no model folder")
    return Settings(**changes)


def engine_model_dir(settings) -> str | None:
    """The folder the configured engine reads its model from (None: a remote engine)."""
    if settings.engine == "gigaam":
        return str(settings.gigaam_model_dir)
    if settings.engine == "whisper":
        return settings.whisper_model_path
    return None


async def benchmark(args: argparse.Namespace) -> dict:
    from kazru.adapters import audio

    run_started = time.perf_counter()
    load_average_at_start = os.getloadavg()
    settings = engine_settings(args)
    sets = load_sets(args)
    default_languages, languages_by_set = set_languages(args)
    systems = Systems(settings, args.only)

    by_set: dict[str, dict[str, SystemScore]] = {}
    pooled: dict[str, SystemScore] = {}
    rows = []
    decode_seconds = 0.0
    for set_name, files in sets.items():
        set_scores = by_set.setdefault(set_name, {})
        for index, reference in enumerate(files, start=1):
            started = time.perf_counter()
            samples = await audio.decode_pcm16k(str(reference.audio), settings.ffmpeg_path)
            decode_seconds += time.perf_counter() - started
            duration = len(samples) / SAMPLE_RATE
            languages = allowed_languages(languages_by_set.get(set_name, default_languages), reference.language)

            row = {
                "id": reference.file_id,
                "set": set_name,
                "duration_s": round(duration, 3),
                "reference_language": reference.language,
                "languages_allowed": list(languages),
                "reference": {"text": reference.text is not None, "rttm": reference.turns is not None},
                "systems": {},
            }
            for name, run in (await systems.run(reference, samples, languages)).items():
                score, row["systems"][name] = score_run(reference, run, duration)
                set_scores.setdefault(name, SystemScore()).add(score)
                pooled.setdefault(name, SystemScore()).add(score)
            rows.append(row)
            print(f"[{set_name} {index}/{len(files)}] {progress_line(row)}", file=sys.stderr, flush=True)

    audio_seconds = sum(row["duration_s"] for row in rows)
    return {
        "benchmark": "accuracy-real",
        # What `ours` ran on; `model`, `compute_type` and `beam_size` are the Whisper peers' (and Whisper's).
        "engine": {"name": settings.engine, "model": settings.engine_model, "model_dir": engine_model_dir(settings)},
        "model": settings.whisper_model_path,
        "compute_type": settings.whisper.compute_type,
        "beam_size": settings.whisper.beam_size,
        "languages": {name: list(languages_by_set.get(name, default_languages)) for name in sets},
        "sets": {
            name: {"file_count": len(files), **block(by_set.get(name, {}), list_cut_words=True)}
            for name, files in sets.items()
        },
        "pooled": {"file_count": len(rows), "audio_seconds": round(audio_seconds, 3), **block(pooled, False)},
        "model_load_seconds": systems.load_seconds,
        "rtf_decode": round(decode_seconds / audio_seconds, 4) if audio_seconds else None,
        "run_seconds": round(time.perf_counter() - run_started, 1),
        "machine": machine_info()
        | {"load_average_at_start": load_average_at_start, "load_average_at_end": os.getloadavg()},
        "files": rows,
    }


def progress_line(row: dict) -> str:
    parts = []
    for name, figures in row["systems"].items():
        shown = " ".join(
            f"{key} {figures[key]}" for key in ("wer", "cer", "language_share", "der") if figures.get(key) is not None
        )
        parts.append(f"{name}: {shown} rtf {figures['rtf']}")
    return f"{row['id']} {row['duration_s']:.1f} s {row['reference_language']} | " + " | ".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=PATH", help="a reference folder (repeatable)"
    )
    parser.add_argument(
        "--sets", default=None, help=f"sets to run, comma-separated (default: corpus,{FESTVOX_PACKAGE})"
    )
    parser.add_argument(
        "--languages", action="append", default=[], metavar="[NAME=]LANGS", help="allowed languages (default kk,ru)"
    )
    parser.add_argument(
        "--festvox-count",
        type=int,
        default=DEFAULT_FESTVOX_COUNT,
        help=f"festvox-ru utterances, evenly spaced over the {FESTVOX_UTTERANCES} (default {DEFAULT_FESTVOX_COUNT})",
    )
    parser.add_argument("--limit", type=int, default=None, help="at most N files per set")
    parser.add_argument(
        "--only", choices=["ours", "peers"], default=None, help="run only our pipeline or only the peers"
    )
    parser.add_argument(
        "--engine", choices=["whisper", "gigaam", "speechkit"], default=None,
        help="the engine our pipeline runs on (default: KAZRU_ENGINE, else whisper)",
    )  # fmt: skip
    parser.add_argument(
        "--model-dir", type=Path, default=None,
        help="the engine's model folder (default: KAZRU_GIGAAM_MODEL_DIR / KAZRU_WHISPER_MODEL, else the installed one)",
    )  # fmt: skip
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON here")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    print_report(asyncio.run(benchmark(args)), args.json_out)


if __name__ == "__main__":
    main()
