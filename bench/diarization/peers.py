"""The plain peer of issue 24: Silero VAD + 1.5 s windows + the same CAM++ + average-linkage AHC at cosine 0.55.

Everything but the speech detection and the clustering is the service's own code
(services/transcriber/diarization.py), called as its Diarizer calls it: the 1.5 s windows every 0.75 s
(`embedding_windows`), their CAM++ prints (`CamPlusPlusEncoder.embed_windows`) and the frames-to-turns step
(`turns_from_windows`). Speech is Silero VAD's alone (`detect_speech` without the segmentation model that ours
joins to it), as the issue defines the peer. The clustering is the textbook one, with no speaker counting and no
clean-up: average linkage on cosine distance, merging while two clusters' mean similarity is at least
SIMILARITY_THRESHOLD.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from kazru.adapters.audio import Recording, as_recording
from services.transcriber.diarization import (
    MAX_SPEAKERS,
    Diarization,
    detect_speech,
    embedding_windows,
    turns_from_windows,
)
from services.transcriber.speaker_embedding import CamPlusPlusEncoder

# Cosine similarity (1 - scipy's cosine distance) at which average linkage stops merging.
SIMILARITY_THRESHOLD = 0.55


def threshold_clusters(
    embeddings: np.ndarray,
    similarity: float = SIMILARITY_THRESHOLD,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> np.ndarray:
    """Labels 0..k-1: average linkage cut at `similarity`; when that gives a count outside the caller's
    hints, the tree is cut at the nearest allowed count instead (as the segmentation peer does)."""
    if len(embeddings) < 2:
        return np.zeros(len(embeddings), dtype=int)
    upper = min(max_speakers or MAX_SPEAKERS, MAX_SPEAKERS, len(embeddings))
    lower = min(max(min_speakers or 1, 1), upper)
    tree = linkage(embeddings, method="average", metric="cosine")
    labels = fcluster(tree, t=1.0 - similarity, criterion="distance") - 1
    if not lower <= labels.max() + 1 <= upper:
        labels = fcluster(tree, t=min(max(labels.max() + 1, lower), upper), criterion="maxclust") - 1
    return np.unique(labels, return_inverse=True)[1]


class PlainPeer:
    def __init__(self, encoder, similarity: float = SIMILARITY_THRESHOLD):
        self._encoder = encoder
        self.similarity = similarity

    @classmethod
    def load(cls, model_dir=None, **options) -> PlainPeer:
        return cls(CamPlusPlusEncoder.load(model_dir), **options)

    def diarize(
        self, audio: np.ndarray | Recording, min_speakers: int | None = None, max_speakers: int | None = None
    ) -> Diarization:
        recording = as_recording(audio)
        stages: dict[str, float] = {}
        started = time.perf_counter()
        speech = detect_speech(recording)
        stages["vad_seconds"] = time.perf_counter() - started
        windows = embedding_windows(speech)
        if not windows:
            return Diarization(turns=[], speech=speech, stage_seconds=stages)
        started = time.perf_counter()
        embeddings = self._encoder.embed_windows(recording, windows)
        stages["embedding_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        labels = threshold_clusters(embeddings, self.similarity, min_speakers, max_speakers)
        turns = turns_from_windows(speech, windows, labels, recording.duration)
        stages["clustering_seconds"] = time.perf_counter() - started
        return Diarization(turns=turns, speech=speech, stage_seconds=stages)
