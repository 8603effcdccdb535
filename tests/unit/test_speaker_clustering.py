"""The diarizer's clustering on prints with a known answer: voices as tight bundles around orthogonal
directions (cosine between voices ~0, within a voice ~0.8), so the right speaker count is not in doubt."""

from __future__ import annotations

import numpy as np

from services.transcriber.diarization import CAMPLUS_LIMITS, ClusteringLimits, cluster_speakers


def voices(windows_per_voice: list[int], dimensions: int = 192, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised prints of len(windows_per_voice) voices and each print's true voice."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.standard_normal((dimensions, len(windows_per_voice))))[0].T
    truth = np.repeat(np.arange(len(windows_per_voice)), windows_per_voice)
    prints = centres[truth] + 0.035 * rng.standard_normal((len(truth), dimensions))
    return prints / np.linalg.norm(prints, axis=1, keepdims=True), truth


def same_partition(labels: np.ndarray, truth: np.ndarray) -> bool:
    pairs = {(int(a), int(b)) for a, b in zip(labels, truth, strict=True)}
    return len(pairs) == len(set(labels)) == len(set(truth))


def test_six_voices_are_six_speakers_with_the_default_setting():
    # Six voices is where the eigengap count used to merge people (issue 24).
    prints, truth = voices([12, 9, 15, 8, 10, 11])
    labels = cluster_speakers(prints, None, None, CAMPLUS_LIMITS)
    assert same_partition(labels, truth)


def test_a_few_stray_windows_are_not_a_speaker_of_their_own():
    prints, truth = voices([20, 18, 2])
    labels = cluster_speakers(prints, None, None, CAMPLUS_LIMITS)
    assert labels.max() + 1 == 2
    assert same_partition(labels[truth < 2], truth[truth < 2])


def test_count_hints_bound_the_threshold_count():
    prints, _ = voices([12, 9, 15, 8])
    threshold = ClusteringLimits(count_rule="threshold", link_similarity=0.55)
    assert cluster_speakers(prints, None, 2, threshold).max() + 1 == 2
    assert cluster_speakers(prints, 6, None, threshold).max() + 1 == 6
