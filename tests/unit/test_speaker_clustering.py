"""The diarizer's clustering on prints with a known answer: each voice a tight bundle of windows around its
own direction (cosine ~0.72 within a voice), the voices sharing a common direction that sets how alike two
voices are, so the right speaker count is not in doubt."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from services.transcriber.diarization import CAMPLUS_LIMITS, ClusteringLimits, cluster_speakers

# The service's rule (CAMPLUS_LIMITS: the cut, small groups joined to a close speaker) and others
# bench/diarization/tune.py measured (issue 24): the cut alone, and the larger of it and the eigengap's count.
AVERAGE_LINKAGE_CUT = ClusteringLimits(count_rule="threshold", link_similarity=0.575)
CUT_OR_EIGENGAP = ClusteringLimits(count_rule="threshold_or_eigengap", link_similarity=0.575, min_speaker_windows=5)


def voices(windows_per_voice: list[int], alike: float, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised 192-d prints of the voices and each print's true voice; `alike` is the share of each
    voice's direction that all voices have in common (0: orthogonal voices)."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.standard_normal((192, len(windows_per_voice) + 1)))[0].T
    centres = np.sqrt(alike) * directions[0] + np.sqrt(1 - alike) * directions[1:]
    truth = np.repeat(np.arange(len(windows_per_voice)), windows_per_voice)
    prints = centres[truth] + 0.045 * rng.standard_normal((len(truth), 192))
    return prints / np.linalg.norm(prints, axis=1, keepdims=True), truth


def same_partition(labels: np.ndarray, truth: np.ndarray) -> bool:
    pairs = {(int(a), int(b)) for a, b in zip(labels, truth, strict=True)}
    return len(pairs) == len(set(labels)) == len(set(truth))


@pytest.mark.parametrize("limits", [CAMPLUS_LIMITS, AVERAGE_LINKAGE_CUT, CUT_OR_EIGENGAP])
def test_six_voices_are_six_speakers(limits):
    prints, truth = voices([12, 9, 15, 8, 10, 11], alike=0.45)
    assert same_partition(cluster_speakers(prints, None, None, limits), truth)


@pytest.mark.parametrize("limits", [CAMPLUS_LIMITS, AVERAGE_LINKAGE_CUT, CUT_OR_EIGENGAP])
def test_a_few_stray_windows_are_not_a_speaker_of_their_own(limits):
    prints, truth = voices([20, 18, 2], alike=0.3)
    labels = cluster_speakers(prints, None, None, limits)
    assert labels.max() + 1 == 2
    assert same_partition(labels[truth < 2], truth[truth < 2])


# Not the eigengap alone: told at most 2 of 4 voices it finds its gap among the first 3 eigenvalues and
# answers 1 (a max hint is an upper bound, so that is allowed; tests/integration covers the default's hints).
@pytest.mark.parametrize("limits", [CAMPLUS_LIMITS, AVERAGE_LINKAGE_CUT, CUT_OR_EIGENGAP])
def test_count_hints_bound_the_count(limits):
    prints, _ = voices([12, 9, 15, 8], alike=0.3)
    assert cluster_speakers(prints, None, 2, limits).max() + 1 == 2
    assert cluster_speakers(prints, 6, None, limits).max() + 1 == 6


def test_a_small_group_close_to_a_voice_joins_it_and_a_small_distinct_voice_stays():
    """Five windows of one voice heard through noise (their centroid ~0.73 alike to the voice's) are that voice;
    five windows of another person (~0.5 alike) are a speaker of their own, however briefly heard."""
    rng = np.random.default_rng(11)
    directions = np.linalg.qr(rng.standard_normal((192, 5)))[0].T
    first, second, distinct = directions[0], directions[1], 0.55 * directions[0] + 0.83 * directions[2]
    muffled = 0.78 * first + 0.63 * directions[3]  # the first voice, coloured by the channel
    groups = [(first, 20), (second, 20), (muffled, 5), (distinct, 5)]
    prints = np.concatenate([centre + 0.045 * rng.standard_normal((count, 192)) for centre, count in groups])
    prints /= np.linalg.norm(prints, axis=1, keepdims=True)
    truth = np.repeat([0, 1, 0, 2], [count for _, count in groups])
    joined = CAMPLUS_LIMITS
    assert same_partition(cluster_speakers(prints, None, None, joined), truth)
    # Without the rule the channel's group is a speaker of its own.
    kept_apart = replace(joined, small_merge_cosine=None)
    assert cluster_speakers(prints, None, None, kept_apart).max() + 1 == 4
