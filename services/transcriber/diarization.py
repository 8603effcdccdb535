"""Who spoke when: our own diarizer, the same for every engine.

speech regions (Silero VAD, shipped inside faster-whisper, joined with what pyannote's segmentation-3.0 hears:
    speech_segmentation.py)
  → speaker embeddings of short overlapping windows (CAM++ on onnxruntime, speaker_embedding.py)
  → the number of speakers: the groups of an average-linkage tree (cosine) cut where two groups stop being as
    alike as one voice's windows (or another ClusteringLimits.count_rule), kept within the caller's min/max and
    MAX_SPEAKERS
  → agglomerative clustering into that many (cosine, average linkage), tiny
    clusters folded into their nearest speaker, speakers whose centroids are as
    close as one voice's merged, a nearest-centroid refinement, small groups close to a speaker joined to it
  → one label per 10 ms frame by the windows covering it, short flips smoothed
  → speaker turns (split at long pauses, at most MAX_TURN_SECONDS).

Blocking CPU work: call `diarize` from a worker thread. Memory does not grow with the
recording's length: the audio is read in blocks (VAD) and windows (embeddings), and at most
MAX_CLUSTERED_WINDOWS windows are clustered pairwise.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps
from scipy.cluster.hierarchy import fcluster, linkage

from kazru.adapters.audio import SAMPLE_RATE, Recording, as_recording
from kazru.domain.recognition import SpeechRegion
from services.transcriber.channel import Channel, measure_channel
from services.transcriber.speech_segmentation import SpeechSegmentation

MAX_SPEAKERS = 10

# Silero VAD holds about four float copies of what it is given, so a long recording is run in
# blocks of about this length (38 MB of samples), each cut at the quietest 0.1 s of the last
# VAD_CUT_SEARCH_SECONDS before its end, where a person cutting it by hand would cut. A shorter
# recording is run whole, exactly as before.
VAD_BLOCK_SECONDS = 600.0
VAD_CUT_SEARCH_SECONDS = 30.0
# Speech cut by a block's edge anyway comes back as two regions this close: they are one.
VAD_REJOIN_SECONDS = 0.2

# Counting and linking speakers compares every pair of windows (memory and time grow with the
# square): past this many windows (25 min of speech) the voices are learned from this many windows
# spread evenly over the recording, and every window then goes to its nearest voice.
MAX_CLUSTERED_WINDOWS = 2000

# Embedding windows: long enough for a stable voice print, short enough to
# resolve quick exchanges.
WINDOW_SECONDS = 1.5
STEP_SECONDS = 0.75
# Speech shorter than this gets no window of its own; it takes the label of its neighbours.
MIN_WINDOW_SECONDS = 0.4

# Each window keeps this share of its most similar windows as graph edges when the
# speakers are counted (the "p-pruning" of spectral diarization): enough to join
# one voice's windows, few enough not to bridge two voices. Swept 0.1-0.35 on the
# accuracy corpus (bench/accuracy, BENCHMARKS.md): 0.2 gave the lowest DER.
AFFINITY_KEEP = 0.2


@dataclass(frozen=True)
class ClusteringLimits:
    """How windows become speakers; the limits live in the speaker encoder's embedding space.

    `count_rule` says how many speakers there are: "eigengap" (the pruned affinity graph's largest
    eigengap, keeping `affinity_keep` of each window's neighbours), "threshold" (average linkage cut
    where two groups' mean cosine similarity falls below `link_similarity`) or "threshold_sized" (the
    groups of that cut with at least `min_speaker_windows` windows) or "threshold_or_eigengap" (the
    larger of the eigengap's and the cut's counts). Then a group of fewer than
    `min_speaker_windows` windows is folded into its nearest speaker, and speakers whose centroids are
    closer than `merge_cosine` are one (None: never)."""

    min_speaker_windows: int = 4
    # None: never merge by closeness (GE2E's setting before CAM++: 3 windows, no merge).
    merge_cosine: float | None = 0.8
    count_rule: str = "eigengap"
    affinity_keep: float = 0.2
    link_similarity: float = 0.55
    # A speaker heard in fewer than `small_speaker_windows` windows joins the nearest speaker whose centroid is at
    # least `small_merge_cosine` alike (None: never): a few seconds of one voice in noise or a strained moment,
    # not a person of its own.
    small_speaker_windows: int = 0
    small_merge_cosine: float | None = None
    # The cut's similarity on a telephone band (channel.py: no energy above 4 kHz), where voices sound more alike,
    # and in background noise (speech under `noisy_below_db` over the pauses), where one voice sounds less like
    # itself. None: `link_similarity` there too.
    narrowband_link_similarity: float | None = None
    noisy_link_similarity: float | None = None
    noisy_below_db: float = 15.0

    @property
    def depends_on_channel(self) -> bool:
        return self.narrowband_link_similarity is not None or self.noisy_link_similarity is not None

    def for_channel(self, channel: Channel) -> ClusteringLimits:
        """These limits with the cut's similarity the channel calls for."""
        if self.narrowband_link_similarity is not None and channel.high_band_share < NARROWBAND_HIGH_BAND_SHARE:
            return replace(self, link_similarity=self.narrowband_link_similarity)
        noisy = channel.speech_to_pause_db is not None and channel.speech_to_pause_db < self.noisy_below_db
        if self.noisy_link_similarity is not None and noisy:
            return replace(self, link_similarity=self.noisy_link_similarity)
        return self


# Below this share of the speech's energy above 4 kHz the recording is a telephone band (channel.py).
NARROWBAND_HIGH_BAND_SHARE = 1e-4


# CAM++'s setting, chosen by bench/diarization/tune.py on the tuning pool of 150 built conversations of real voices
# (the lowest DER among the 411 settings it tries that keep the regression tests) and proven on the held-out pool of
# 150 others (BENCHMARKS.md): speakers are the groups of an average-linkage cut where two groups' mean cosine
# similarity falls below 0.575 (0.6 on a telephone band, 0.5 in background noise: channel.py); a group of under 4
# windows folds into its nearest speaker, one of under 6 joins a speaker whose centroid is 0.7 alike. The eigengap
# count before it merged voices: held-out DER 17.2 -> 8.2 %, count exact 49 -> 80 % on the same speech regions.
CAMPLUS_LIMITS = ClusteringLimits(
    count_rule="threshold",
    link_similarity=0.575,
    min_speaker_windows=4,
    merge_cosine=0.8,
    small_speaker_windows=6,
    small_merge_cosine=0.7,
    narrowband_link_similarity=0.6,
    noisy_link_similarity=0.5,
    noisy_below_db=15.0,
)

FRAME_SECONDS = 0.01
# A run of one speaker shorter than this inside another's speech is a flip, not a turn.
MIN_RUN_SECONDS = 0.6
# A pause at least this long ends a turn even when the same person goes on.
TURN_PAUSE_SECONDS = 1.0
# Turns are recognised one at a time by Whisper, whose window is 30 s.
MAX_TURN_SECONDS = 28.0


@dataclass(frozen=True)
class SpeakerTurn:
    start: float
    end: float
    speaker: str


@dataclass
class Diarization:
    turns: list[SpeakerTurn]
    speech: list[SpeechRegion]
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # Turn starts, for finding a word's turn by bisection (built on first use).
    _starts: list[float] | None = field(default=None, init=False, repr=False)

    @property
    def speakers(self) -> list[str]:
        return list(dict.fromkeys(turn.speaker for turn in self.turns))

    def speaker_at(self, start: float, end: float) -> str | None:
        """The speaker of the turn overlapping [start, end] most, else of the nearest turn."""
        index = self.turn_index_at(start, end)
        return None if index is None else self.turns[index].speaker

    def turn_index_at(self, start: float, end: float) -> int | None:
        """Index of the turn overlapping [start, end] most, else of the nearest turn.
        Turns are time-ordered and do not overlap, so only a few around `start` can match."""
        if not self.turns:
            return None
        if self._starts is None:
            self._starts = [turn.start for turn in self.turns]
        first = max(bisect.bisect_right(self._starts, start) - 1, 0)
        last = bisect.bisect_left(self._starts, end, lo=first)
        best, best_overlap = None, 0.0
        for index in range(first, last):
            turn = self.turns[index]
            overlap = min(end, turn.end) - max(start, turn.start)
            if overlap > best_overlap:
                best, best_overlap = index, overlap
        if best is not None:
            return best
        middle = (start + end) / 2
        neighbours = range(max(first - 1, 0), min(last + 1, len(self.turns)))
        return min(neighbours, key=lambda index: self._distance(self.turns[index], middle))

    @staticmethod
    def _distance(turn: SpeakerTurn, moment: float) -> float:
        return max(turn.start - moment, moment - turn.end, 0.0)


# Called from the diarizing thread with the seconds of audio the VAD has scanned and the seconds of speech
# it found in them.
ScanCallback = Callable[[float, float], None]


class SpeakerEncoder(Protocol):
    def embed_windows(self, wav: np.ndarray | Recording, windows: Sequence[tuple[float, float]]) -> np.ndarray:
        """(n, D) L2-normalised embeddings of the windows (seconds) of 16 kHz `wav`."""
        ...


class Diarizer:
    def __init__(
        self,
        encoder: SpeakerEncoder,
        limits: ClusteringLimits = CAMPLUS_LIMITS,
        segmentation: SpeechSegmentation | None = None,
    ):
        self._encoder = encoder
        self._limits = limits
        # None: speech is what Silero VAD hears (the plain peer's detector, and tests without the model).
        self._segmentation = segmentation

    def diarize(
        self,
        audio: np.ndarray | Recording,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        on_scanned: ScanCallback | None = None,
    ) -> Diarization:
        recording = as_recording(audio)
        stages: dict[str, float] = {}
        started = time.perf_counter()
        speech = detect_speech(recording, on_scanned, self._segmentation)
        stages["vad_seconds"] = time.perf_counter() - started
        windows = embedding_windows(speech)
        if not windows:
            return Diarization(turns=[], speech=speech, stage_seconds=stages)

        started = time.perf_counter()
        embeddings = self._encoder.embed_windows(recording, windows)
        stages["embedding_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        labels = self.cluster(recording, speech, embeddings, min_speakers, max_speakers)
        turns = turns_from_windows(speech, windows, labels, recording.duration)
        stages["clustering_seconds"] = time.perf_counter() - started
        return Diarization(turns=turns, speech=speech, stage_seconds=stages)


    def cluster(
        self,
        recording: Recording,
        speech: list[SpeechRegion],
        embeddings: np.ndarray,
        min_speakers: int | None,
        max_speakers: int | None,
    ) -> np.ndarray:
        """Speaker labels of the windows' prints; the channel is measured only when the limits depend on it."""
        limits = self._limits
        if limits.depends_on_channel:
            limits = limits.for_channel(measure_channel(recording, speech))
        return cluster_speakers(embeddings, min_speakers, max_speakers, limits)


def detect_speech(
    audio: np.ndarray | Recording,
    on_scanned: ScanCallback | None = None,
    segmentation: SpeechSegmentation | None = None,
) -> list[SpeechRegion]:
    """Speech regions of the recording, found block by block (VAD_BLOCK_SECONDS) by Silero VAD and, given
    `segmentation`, also where that model hears speech (the union); `on_scanned` hears after each block how far
    the scan is and how much speech it found so far."""
    recording = as_recording(audio)
    regions: list[SpeechRegion] = []
    start = 0
    while start < recording.sample_count:
        stop = _vad_block_end(recording, start)
        offset = start / SAMPLE_RATE
        for number, (first, last) in enumerate(_speech_in_block(recording.read(start, stop), segmentation)):
            region = SpeechRegion(offset + first, offset + last)
            if number == 0 and regions and region.start - regions[-1].end < VAD_REJOIN_SECONDS:
                regions[-1] = SpeechRegion(regions[-1].start, region.end)
            else:
                regions.append(region)
        start = stop
        if on_scanned is not None:
            on_scanned(stop / SAMPLE_RATE, sum(region.end - region.start for region in regions))
    return regions


# Silero's settings: speech of at least 150 ms, pauses of at least 200 ms, 60 ms of margin.
_SILERO_OPTIONS = VadOptions(min_speech_duration_ms=150, min_silence_duration_ms=200, speech_pad_ms=60)


def _speech_in_block(samples: np.ndarray, segmentation: SpeechSegmentation | None) -> list[tuple[float, float]]:
    """(start, end) seconds of speech in one block: Silero's regions, joined with the segmentation model's where
    given, held to Silero's own minimum speech and pause lengths."""
    silero = [
        (stamp["start"] / SAMPLE_RATE, stamp["end"] / SAMPLE_RATE)
        for stamp in get_speech_timestamps(samples, _SILERO_OPTIONS, sampling_rate=SAMPLE_RATE)
    ]
    if segmentation is None:
        return silero
    centres, speaking = segmentation.speech_mask(samples)
    for first, last in silero:
        speaking[(centres >= first) & (centres <= last)] = True
    half_frame = (centres[1] - centres[0]) / 2 if len(centres) > 1 else 0.0
    edges = np.flatnonzero(np.diff(np.concatenate(([0], speaking.astype(np.int8), [0]))))
    joined: list[tuple[float, float]] = []
    duration = len(samples) / SAMPLE_RATE
    for begin, end in zip(edges[::2], edges[1::2], strict=True):
        first = max(centres[begin] - half_frame, 0.0)
        last = min(centres[end - 1] + half_frame, duration)
        if joined and first - joined[-1][1] < _SILERO_OPTIONS.min_silence_duration_ms / 1000:
            joined[-1] = (joined[-1][0], last)
        else:
            joined.append((first, last))
    # Silero's own regions already hold its minimum; what the model alone adds must too.
    return [(first, last) for first, last in joined if last - first >= _SILERO_OPTIONS.min_speech_duration_ms / 1000]


def _vad_block_end(recording: Recording, start: int) -> int:
    """Where the VAD block starting at `start` ends: the recording's end if it is near, else the
    middle of the quietest 0.1 s in the last VAD_CUT_SEARCH_SECONDS of a full block."""
    block, search = int(VAD_BLOCK_SECONDS * SAMPLE_RATE), int(VAD_CUT_SEARCH_SECONDS * SAMPLE_RATE)
    if recording.sample_count - start <= block:
        return recording.sample_count
    frame = SAMPLE_RATE // 10
    tail = recording.read(start + block - search, start + block)
    energy = np.square(tail[: len(tail) // frame * frame].reshape(-1, frame)).sum(axis=1)
    return start + block - search + int(np.argmin(energy)) * frame + frame // 2


def embedding_windows(speech: list[SpeechRegion]) -> list[tuple[float, float]]:
    windows = []
    for region in speech:
        length = region.end - region.start
        if length < MIN_WINDOW_SECONDS:
            continue
        if length <= WINDOW_SECONDS:
            windows.append((region.start, region.end))
            continue
        count = int(np.ceil((length - WINDOW_SECONDS) / STEP_SECONDS)) + 1
        # Spread the windows evenly so the last one ends exactly at the region's end.
        step = (length - WINDOW_SECONDS) / (count - 1)
        windows.extend((region.start + i * step, region.start + i * step + WINDOW_SECONDS) for i in range(count))
    return windows


def cluster_speakers(
    embeddings: np.ndarray,
    min_speakers: int | None,
    max_speakers: int | None,
    limits: ClusteringLimits = CAMPLUS_LIMITS,
) -> np.ndarray:
    """Cluster labels 0..k-1 for each embedding."""
    if len(embeddings) > MAX_CLUSTERED_WINDOWS:
        return _cluster_through_an_even_sample(embeddings, min_speakers, max_speakers, limits)
    upper = min(max_speakers or MAX_SPEAKERS, MAX_SPEAKERS, len(embeddings))
    lower = min(max(min_speakers or 1, 1), upper)
    if len(embeddings) == 1:
        return np.zeros(1, dtype=int)
    tree = linkage(embeddings, method="average", metric="cosine")
    if limits.count_rule in ("threshold", "threshold_sized"):
        groups = fcluster(tree, t=1.0 - limits.link_similarity, criterion="distance")
        sizes = np.bincount(groups)[1:]
        if limits.count_rule == "threshold_sized":
            # Only groups big enough to be a speaker count; the tree is then cut at that many, so a
            # voice's stray windows join their voice in the tree rather than by a later fold.
            count = max(int(np.sum(sizes >= limits.min_speaker_windows)), 1)
        else:
            count = len(sizes)
    elif limits.count_rule == "threshold_or_eigengap":
        # The larger of the two counts: the tree is cut finer, and what is too small to be a speaker is
        # folded into its nearest voice below.
        threshold_count = len(np.unique(fcluster(tree, t=1.0 - limits.link_similarity, criterion="distance")))
        count = max(threshold_count, count_speakers(embeddings, upper, limits.affinity_keep))
    else:
        count = count_speakers(embeddings, upper, limits.affinity_keep)
    count = min(max(count, lower), upper)
    labels = fcluster(tree, t=count, criterion="maxclust")
    labels = _merge_small_clusters(embeddings, labels - 1, lower, limits.min_speaker_windows)
    if limits.merge_cosine is not None:
        labels = _merge_close_clusters(embeddings, labels, lower, limits.merge_cosine)
    labels = _reassign_to_centroids(embeddings, labels)
    if limits.small_merge_cosine is not None:
        labels = _merge_close_small_clusters(
            embeddings, labels, lower, limits.small_speaker_windows, limits.small_merge_cosine
        )
    return labels


def _cluster_through_an_even_sample(
    embeddings: np.ndarray, min_speakers: int | None, max_speakers: int | None, limits: ClusteringLimits
) -> np.ndarray:
    """The voices learned from MAX_CLUSTERED_WINDOWS windows spread evenly over the recording; each
    window then joins the nearest voice and the centroids are refined on all of them."""
    sample = np.linspace(0, len(embeddings) - 1, MAX_CLUSTERED_WINDOWS).round().astype(int)
    # A speaker's size is counted in windows: in a sample of one window in k, one of the sample's stands for k.
    share = len(sample) / len(embeddings)
    sample_limits = replace(
        limits,
        min_speaker_windows=max(2, math.ceil(limits.min_speaker_windows * share)),
        small_speaker_windows=math.ceil(limits.small_speaker_windows * share),
    )
    sample_labels = cluster_speakers(embeddings[sample], min_speakers, max_speakers, sample_limits)
    nearest = np.argmax(embeddings @ _centroids(embeddings[sample], sample_labels).T, axis=1)
    return _reassign_to_centroids(embeddings, np.unique(nearest, return_inverse=True)[1])


def count_speakers(embeddings: np.ndarray, upper: int, affinity_keep: float = AFFINITY_KEEP) -> int:
    """The eigengap of the normalised Laplacian of the pruned affinity graph: with k
    well-separated voices the graph has k nearly disconnected parts, so k eigenvalues
    sit near 0 and the largest jump follows them."""
    count = len(embeddings)
    if count < 3:
        return 1
    affinity = np.clip(embeddings @ embeddings.T, 0.0, None)
    neighbours = max(2, int(np.ceil(affinity_keep * count)))
    kth_largest = -np.sort(-affinity, axis=1)[:, neighbours - 1 : neighbours]
    pruned = np.where(affinity >= kth_largest, affinity, 0.0)
    pruned = (pruned + pruned.T) / 2
    scale = 1 / np.sqrt(np.maximum(pruned.sum(axis=1), 1e-9))
    laplacian = np.eye(count) - scale[:, None] * pruned * scale[None, :]
    eigenvalues = np.linalg.eigvalsh(laplacian)[: upper + 1]
    return int(np.argmax(np.diff(eigenvalues)[:upper]) + 1)


def _merge_small_clusters(embeddings: np.ndarray, labels: np.ndarray, lower: int, min_windows: int) -> np.ndarray:
    """A "speaker" heard in only a couple of windows is nearly always one voice's odd
    moment (a laugh, a cough, a strained word): fold it into the nearest speaker."""
    while True:
        sizes = np.bincount(labels)
        small = [k for k in np.argsort(sizes) if sizes[k] < min_windows]
        if not small or len(sizes) <= lower:
            break
        victim = small[0]
        centroids = _centroids(embeddings, labels)
        closeness = centroids @ centroids[victim]
        closeness[victim] = -np.inf
        labels = np.where(labels == victim, int(np.argmax(closeness)), labels)
        labels = np.unique(labels, return_inverse=True)[1]
    return labels


def _merge_close_small_clusters(
    embeddings: np.ndarray, labels: np.ndarray, lower: int, small_windows: int, merge_cosine: float
) -> np.ndarray:
    """Join a speaker of fewer than `small_windows` windows to its nearest speaker while their centroids are at
    least `merge_cosine` alike, the most alike pair first; then refine by the nearest centroid again."""
    merged = False
    while labels.max() + 1 > lower:
        sizes = np.bincount(labels)
        centroids = _centroids(embeddings, labels)
        closeness = centroids @ centroids.T
        np.fill_diagonal(closeness, -np.inf)
        nearest = closeness.max(axis=1)
        candidates = [k for k in range(len(sizes)) if sizes[k] < small_windows and nearest[k] >= merge_cosine]
        if not candidates:
            break
        victim = max(candidates, key=lambda k: nearest[k])
        labels = np.unique(np.where(labels == victim, int(np.argmax(closeness[victim])), labels), return_inverse=True)[1]
        merged = True
    return _reassign_to_centroids(embeddings, labels) if merged else labels


def _merge_close_clusters(embeddings: np.ndarray, labels: np.ndarray, lower: int, merge_cosine: float) -> np.ndarray:
    """Join the two speakers with the closest centroids while they are closer than `merge_cosine`."""
    while labels.max() + 1 > lower:
        centroids = _centroids(embeddings, labels)
        closeness = centroids @ centroids.T
        np.fill_diagonal(closeness, -np.inf)
        first, second = np.unravel_index(np.argmax(closeness), closeness.shape)
        if closeness[first, second] < merge_cosine:
            break
        labels = np.unique(np.where(labels == second, first, labels), return_inverse=True)[1]
    return labels


def _centroids(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    centroids = np.stack([embeddings[labels == k].mean(axis=0) for k in range(labels.max() + 1)])
    return centroids / np.linalg.norm(centroids, axis=1, keepdims=True)


def _reassign_to_centroids(embeddings: np.ndarray, labels: np.ndarray, rounds: int = 2) -> np.ndarray:
    """Average linkage fixes early merges for good; a couple of nearest-centroid passes
    move windows that ended up with the wrong group (k-means refinement)."""
    count = labels.max() + 1
    for _ in range(rounds):
        centroids = _centroids(embeddings, labels)
        updated = np.argmax(embeddings @ centroids.T, axis=1)
        if len(set(updated)) < count or np.array_equal(updated, labels):
            break  # never lose a cluster to refinement
        labels = updated
    return labels


def turns_from_windows(
    speech: list[SpeechRegion], windows: list[tuple[float, float]], labels: np.ndarray, duration: float
) -> list[SpeakerTurn]:
    frames = int(np.ceil(duration / FRAME_SECONDS)) + 1
    count = labels.max() + 1
    votes = np.zeros((count, frames), dtype=np.float32)
    for (start, end), label in zip(windows, labels, strict=True):
        first, last = int(start / FRAME_SECONDS), int(np.ceil(end / FRAME_SECONDS))
        # Windows weigh most at their centre, where their voice print is sure.
        votes[label, first:last] += np.hanning(last - first + 2)[1:-1]
    is_speech = np.zeros(frames, dtype=bool)
    for region in speech:
        is_speech[int(region.start / FRAME_SECONDS) : int(np.ceil(region.end / FRAME_SECONDS))] = True

    frame_labels = np.full(frames, -1)
    voted = votes.max(axis=0) > 0
    frame_labels[voted] = votes[:, voted].argmax(axis=0)
    frame_labels[~is_speech] = -1
    _fill_unvoted_speech(frame_labels, is_speech)
    _smooth_short_runs(frame_labels, int(MIN_RUN_SECONDS / FRAME_SECONDS))
    return _relabel_by_first_appearance(_runs_to_turns(frame_labels))


def _fill_unvoted_speech(frame_labels: np.ndarray, is_speech: np.ndarray) -> None:
    """Speech too short for a window of its own takes the nearest labelled frame's speaker."""
    labelled = np.flatnonzero(frame_labels >= 0)
    if len(labelled) == 0:
        return
    missing = np.flatnonzero(is_speech & (frame_labels < 0))
    if len(missing):
        positions = np.clip(np.searchsorted(labelled, missing), 1, len(labelled) - 1)
        left, right = labelled[positions - 1], labelled[positions]
        nearest = np.where(missing - left <= right - missing, left, right)
        frame_labels[missing] = frame_labels[nearest]


def _smooth_short_runs(frame_labels: np.ndarray, min_frames: int, passes: int = 5) -> None:
    """Relabel short runs of speech to the longer speaker beside them (flips inside one voice)."""
    for _ in range(passes):
        runs = _runs(frame_labels)
        changed = False
        for index, (label, start, end) in enumerate(runs):
            if label >= 0 and end - start < min_frames:
                neighbours = _speech_neighbours(runs, index)
                if neighbours and max(neighbours)[1] != label:
                    frame_labels[start:end] = max(neighbours)[1]
                    changed = True
        if not changed:
            return


def _speech_neighbours(runs: list[tuple[int, int, int]], index: int) -> list[tuple[int, int]]:
    """(length, label) of the speech runs touching runs[index] (no pause between)."""
    found = []
    for other in (index - 1, index + 1):
        if 0 <= other < len(runs) and runs[other][0] >= 0:
            label, start, end = runs[other]
            found.append((end - start, label))
    return found


def _runs(frame_labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(label, first frame, end frame) of each run of equal labels."""
    if len(frame_labels) == 0:
        return []
    boundaries = np.flatnonzero(np.diff(frame_labels)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(frame_labels)]))
    return [(int(frame_labels[s]), int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def _runs_to_turns(frame_labels: np.ndarray) -> list[SpeakerTurn]:
    """Speech runs → turns: one speaker's speech joined across pauses shorter than
    TURN_PAUSE_SECONDS, and cut so that no turn is longer than MAX_TURN_SECONDS."""
    turns: list[SpeakerTurn] = []
    for label, start, end in _runs(frame_labels):
        if label < 0:
            continue
        begin, finish, speaker = start * FRAME_SECONDS, end * FRAME_SECONDS, str(label)
        previous = turns[-1] if turns else None
        if (
            previous is not None
            and previous.speaker == speaker
            and begin - previous.end < TURN_PAUSE_SECONDS
            and finish - previous.start <= MAX_TURN_SECONDS
        ):
            turns[-1] = SpeakerTurn(previous.start, finish, speaker)
            continue
        while finish - begin > MAX_TURN_SECONDS:  # one long stretch with no pause
            turns.append(SpeakerTurn(begin, begin + MAX_TURN_SECONDS, speaker))
            begin += MAX_TURN_SECONDS
        turns.append(SpeakerTurn(begin, finish, speaker))
    return turns


def _relabel_by_first_appearance(turns: list[SpeakerTurn]) -> list[SpeakerTurn]:
    names: dict[str, str] = {}
    for turn in turns:
        names.setdefault(turn.speaker, f"S{len(names) + 1}")
    return [SpeakerTurn(turn.start, turn.end, names[turn.speaker]) for turn in turns]
