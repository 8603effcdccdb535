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

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from services.transcriber.diarization import MAX_SPEAKERS, Diarizer
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


class PlainPeer(Diarizer):
    """The service's Diarizer with Silero's speech alone (no segmentation model) and the textbook clustering."""

    def __init__(self, encoder, similarity: float = SIMILARITY_THRESHOLD):
        super().__init__(encoder)
        self.similarity = similarity

    @classmethod
    def load(cls, model_dir=None, **options) -> PlainPeer:
        return cls(CamPlusPlusEncoder.load(model_dir), **options)

    def cluster(self, recording, speech, embeddings, min_speakers, max_speakers) -> np.ndarray:
        return threshold_clusters(embeddings, self.similarity, min_speakers, max_speakers)
