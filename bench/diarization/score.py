"""Score diarizers on the built conversations (conversations.py) and on the real recordings, in one run.

    python bench/diarization/score.py                                    # both pools + ../shared/corpus/real
    python bench/diarization/score.py --pool tuning --limit 20 --no-real
    python bench/diarization/score.py --hints exact --json-out bench/results/diarization.json

Diarizers, each loaded once: `ours` (services.transcriber.diarization.Diarizer with the CAM++ encoder, as
the pipeline builds it) and `plain_peer` (peers.py). Count hints (`--hints`): `none`, what the pipeline
passes when the user gives none (min_speakers = max_speakers = None); `exact`, both set to the reference
count, as a user who says how many people talk.

Figures per set (`tuning`, `heldout`, `real`) and diarizer, for all files and per group (number of speakers,
same-sex and mixed groups of 2-3, channel, a dominant speaker, 10 % overlap or more): DER with ±0.25 s collar,
overlap scored (bench/accuracy/metrics.py, pyannote.metrics), its missed / false alarm / confusion parts and
confusion within detected speech; the speaker count (speakers with ≥ 2 s of speech, metrics.counted_speakers)
exact / over / under; the diarization real-time factor. Rates are pooled over files (summed seconds).
Progress and the tables go to stderr, the JSON to stdout (and `--json-out`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script: make `bench` importable from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.accuracy.metrics import (  # noqa: E402
    DER_COLLAR_EACH_SIDE_S,
    Segment,
    _round,
    counted_speakers,
    der_figures,
    diarization_errors,
)
from bench.accuracy.run import machine_info, print_report  # noqa: E402
from bench.accuracy.sets import DEFAULT_CORPUS_DIR, REFERENCE_SUFFIXES, is_recording, rttm_turns_for  # noqa: E402
from bench.diarization.conversations import DEFAULT_SEED, POOLS, output_dir  # noqa: E402
from kazru.adapters.audio import SAMPLE_RATE, decode_pcm16k  # noqa: E402

DER_PARTS = ("total", "missed detection", "false alarm", "confusion")
# Overlap share from which a conversation is in the "overlap >= 10 %" group.
HIGH_OVERLAP_SHARE = 0.10


def ours():
    """Our diarizer exactly as the pipeline builds it (services/transcriber/pipeline.create_diarizer)."""
    from kazru.settings import Settings
    from services.transcriber.pipeline import create_diarizer

    return create_diarizer(Settings())


def plain_peer():
    from bench.diarization.peers import PlainPeer
    from kazru.settings import Settings

    return PlainPeer.load(Settings().speaker_model_dir)


DIARIZERS = {"ours": ours, "plain_peer": plain_peer}


@dataclass(frozen=True)
class Item:
    """One file to diarize: its reference turns and what groups it belongs to."""

    set_name: str
    file_id: str
    audio: Path
    turns: tuple[Segment, ...]
    meta: dict = field(default_factory=dict)


def conversation_items(folder: Path, pool: str, limit: int | None) -> list[Item]:
    """The built conversations of `pool` (or both) that are on disk, in manifest order."""
    manifest = folder / "manifest.jsonl"
    if not manifest.is_file():
        raise SystemExit(f"{manifest} is missing: build the set first (bench/diarization/conversations.py)")
    items: dict[str, list[Item]] = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        audio, rttm = folder / row["file"], folder / row["rttm"]
        if pool not in ("all", row["pool"]) or not (audio.is_file() and rttm.is_file()):
            continue
        turns = rttm_turns_for(audio.stem, rttm.read_text(encoding="utf-8"), rttm)
        items.setdefault(row["pool"], []).append(Item(row["pool"], audio.stem, audio, turns, row))
    return [item for pool_items in items.values() for item in pool_items[:limit]]


def real_items(folder: Path) -> list[Item]:
    """Every recording with an RTTM beside it (its language does not matter here, unlike in bench/accuracy)."""
    items = []
    for audio in sorted(path for path in folder.iterdir() if path.suffix.lower() not in REFERENCE_SUFFIXES):
        rttm = audio.with_suffix(".rttm")
        if rttm.is_file() and is_recording(audio):
            turns = rttm_turns_for(audio.stem, rttm.read_text(encoding="utf-8"), rttm)
            items.append(Item("real", audio.stem, audio, turns))
    return items


def groups_of(item: Item, reference_count: int) -> list[str]:
    """The groups a file is scored in, besides `all`."""
    groups = [f"speakers={reference_count}"]
    meta = item.meta
    if not meta:
        return groups
    if meta["n_speakers"] in (2, 3):
        groups.append("same_sex_2_3" if meta["same_sex"] else "mixed_sex_2_3")
    groups.append(f"channel={meta['channel']['kind']}")
    if meta["dominant"]:
        groups.append("dominant_speaker")
    if meta["overlap_share"] >= HIGH_OVERLAP_SHARE:
        groups.append("overlap>=10%")
    return groups


@dataclass
class Tally:
    files: int = 0
    audio_seconds: float = 0.0
    diarization_seconds: float = 0.0
    der: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DER_PARTS, 0.0))
    count_exact: int = 0
    count_over: int = 0
    count_under: int = 0

    def add(self, row: dict) -> None:
        self.files += 1
        self.audio_seconds += row["duration_s"]
        self.diarization_seconds += row["diarization_seconds"]
        for part in DER_PARTS:
            self.der[part] += row["der_seconds"][part]
        difference = row["hypothesis_speakers"] - row["reference_speakers"]
        self.count_exact += difference == 0
        self.count_over += difference > 0
        self.count_under += difference < 0

    def figures(self) -> dict:
        return {
            "files": self.files,
            "audio_seconds": round(self.audio_seconds, 1),
            **der_figures(self.der),
            "count_exact": _round(self.count_exact / self.files),
            "count_over": _round(self.count_over / self.files),
            "count_under": _round(self.count_under / self.files),
            "rtf": _round(self.diarization_seconds / self.audio_seconds),
        }


def score_file(item: Item, diarization, duration: float, seconds: float) -> dict:
    segments = [Segment(turn.start, turn.end, turn.speaker, "", "") for turn in diarization.turns]
    components = diarization_errors(item.turns, segments, duration, DER_COLLAR_EACH_SIDE_S)
    return {
        "set": item.set_name,
        "file": item.file_id,
        "duration_s": round(duration, 3),
        "reference_speakers": counted_speakers(item.turns),
        "hypothesis_speakers": counted_speakers(segments),
        "der_seconds": {part: round(components[part], 3) for part in DER_PARTS},
        **der_figures(components),
        "diarization_seconds": round(seconds, 3),
        "stage_seconds": {stage: round(spent, 3) for stage, spent in diarization.stage_seconds.items()},
    }


def summarise(rows: list[dict], items: dict[tuple[str, str], Item]) -> dict:
    """{set: {diarizer: {group: figures}}}, `all` first."""
    tallies: dict[str, dict[str, dict[str, Tally]]] = {}
    for row in rows:
        by_group = tallies.setdefault(row["set"], {}).setdefault(row["diarizer"], {})
        item = items[(row["set"], row["file"])]
        for group in ["all", *groups_of(item, row["reference_speakers"])]:
            by_group.setdefault(group, Tally()).add(row)
    return {
        set_name: {
            diarizer: {group: by_group[group].figures() for group in sorted(by_group, key=_group_order)}
            for diarizer, by_group in by_diarizer.items()
        }
        for set_name, by_diarizer in tallies.items()
    }


def _group_order(group: str) -> tuple[int, str]:
    prefixes = ("all", "speakers=", "same_sex", "mixed_sex", "channel=", "dominant", "overlap")
    return next(i for i, prefix in enumerate(prefixes) if group.startswith(prefix)), group


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def print_tables(summary: dict) -> None:
    header = "| group | diarizer | files | DER | missed | false alarm | confusion | count exact / over / under | RTF |"
    for set_name, by_diarizer in summary.items():
        print(f"\n### {set_name}\n\n{header}\n|{' --- |' * 9}", file=sys.stderr)
        groups = list(next(iter(by_diarizer.values())))
        for group in groups:
            for diarizer, by_group in by_diarizer.items():
                figures = by_group.get(group)
                if figures is None:
                    continue
                counts = " / ".join(percent(figures[key]) for key in ("count_exact", "count_over", "count_under"))
                print(
                    f"| {group} | {diarizer} | {figures['files']} | {percent(figures['der'])} | "
                    f"{percent(figures['der_missed'])} | {percent(figures['der_false_alarm'])} | "
                    f"{percent(figures['der_confusion'])} | {counts} | {figures['rtf']:.4f} |",
                    file=sys.stderr,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description="Score diarizers on the conversation set and real recordings")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="which built set")
    parser.add_argument("--pool", choices=(*POOLS, "all", "none"), default="all")
    parser.add_argument("--limit", type=int, help="the first N conversations of each pool")
    parser.add_argument("--real", type=Path, default=DEFAULT_CORPUS_DIR, help="real recordings with RTTM")
    parser.add_argument("--no-real", action="store_true")
    parser.add_argument("--diarizers", default=",".join(DIARIZERS), help=f"of {', '.join(DIARIZERS)}")
    parser.add_argument("--hints", choices=("none", "exact"), default="none", help="count hints passed")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    items = [] if args.pool == "none" else conversation_items(output_dir(args.seed), args.pool, args.limit)
    if not args.no_real:
        items += real_items(args.real)
    diarizers = {}
    load_seconds = {}
    for name in args.diarizers.split(","):
        started = time.perf_counter()
        diarizers[name] = DIARIZERS[name]()
        load_seconds[name] = round(time.perf_counter() - started, 3)
    rows = []
    for number, item in enumerate(items, start=1):
        samples = asyncio.run(decode_pcm16k(str(item.audio)))
        duration = len(samples) / SAMPLE_RATE
        told = counted_speakers(item.turns) if args.hints == "exact" else None
        for name, diarizer in diarizers.items():
            started = time.perf_counter()
            diarization = diarizer.diarize(samples, min_speakers=told, max_speakers=told)
            seconds = time.perf_counter() - started
            rows.append({"diarizer": name, **score_file(item, diarization, duration, seconds)})
        print(f"{number}/{len(items)} {item.file_id}", file=sys.stderr, flush=True)
    summary = summarise(rows, {(item.set_name, item.file_id): item for item in items})
    print_tables(summary)
    print_report(
        {
            "benchmark": "diarization on built conversations and real recordings (issue 24)",
            "machine": machine_info(),
            "seed": args.seed,
            "hints": args.hints,
            "collar_each_side_s": DER_COLLAR_EACH_SIDE_S,
            "skip_overlap": False,
            "load_seconds": load_seconds,
            "summary": summary,
            "files": rows,
        },
        args.json_out,
    )


if __name__ == "__main__":
    main()
