"""The conversation set's pure parts (bench/diarization/conversations.py) and the peer's clustering
(bench/diarization/peers.py): no audio decoded, no model, no servers."""

from __future__ import annotations

import numpy as np
import pytest

from bench.accuracy.sets import parse_rttm
from bench.diarization.conversations import (
    MAX_OVERLAP_SHARE,
    MIN_SPEAKER_SECONDS,
    SAMPLE_RATE,
    Material,
    PlacedTurn,
    Voice,
    compact_material,
    cyclic,
    overlap_share,
    plan_set,
    rttm_text,
    split_pools,
)
from bench.diarization.peers import threshold_clusters
from bench.diarization.score import Tally

# 262 voices as in SPEAKERS.tsv: 131 of each sex.
VOICES = [Voice(str(100 + number), "F" if number % 2 else "M") for number in range(262)]


def materials(seed: int = 7) -> dict[str, Material]:
    """Made-up material lengths (2-100 s, speech starting every ~2 s), like the real voices'."""
    rng = np.random.default_rng(seed)
    made = {}
    for voice in VOICES:
        samples = int(rng.uniform(2, 100) * SAMPLE_RATE)
        made[voice.speaker] = Material(samples, tuple(range(0, samples, 2 * SAMPLE_RATE)))
    return made


def test_rttm_gives_back_the_exact_samples_where_turns_were_placed():
    turns = [
        PlacedTurn("alice", start=16_001, samples=4_801, source_offset=0),  # 1.0000625 s, 0.3000625 s
        PlacedTurn("bob", start=3, samples=480_000, source_offset=0),
        PlacedTurn("alice", start=1_600_007, samples=1, source_offset=0),
    ]
    parsed = parse_rttm(rttm_text("conv", turns))["conv"]
    placed = sorted((turn.start, turn.start + turn.samples, turn.speaker) for turn in turns)
    # To the sample, not to the millisecond (a writer with 3 decimals would give 16 000 for 16 001).
    assert [(round(s.start * SAMPLE_RATE, 6), round(s.end * SAMPLE_RATE, 6), s.speaker) for s in parsed] == placed


def test_pools_are_disjoint_complete_and_balanced_by_sex():
    pools = split_pools(VOICES, seed=24)
    tuning, heldout = ({voice.speaker for voice in pools[name]} for name in ("tuning", "heldout"))
    assert not tuning & heldout
    assert tuning | heldout == {voice.speaker for voice in VOICES}
    for sex in "FM":
        counts = [sum(voice.sex == sex for voice in pools[name]) for name in ("tuning", "heldout")]
        assert abs(counts[0] - counts[1]) <= 1
    assert split_pools(VOICES, seed=25) != pools  # the split is part of the seed


def test_every_conversation_keeps_to_its_pool_and_babble_too():
    pools = split_pools(VOICES, seed=24)
    members = {name: {voice.speaker for voice in voices} for name, voices in pools.items()}
    for plan in plan_set(24, 60, materials(), VOICES):
        assert set(plan.speakers) <= members[plan.pool]
        babble = set(plan.channel.get("babble_speakers", ()))
        assert babble <= members[plan.pool] and not babble & set(plan.speakers)


def test_the_seed_reproduces_the_same_manifest_and_another_seed_does_not():
    first = [plan.manifest_row() | {"turns": plan.turns} for plan in plan_set(24, 40, materials(), VOICES)]
    again = [plan.manifest_row() | {"turns": plan.turns} for plan in plan_set(24, 40, materials(), VOICES)]
    other = [plan.manifest_row() | {"turns": plan.turns} for plan in plan_set(25, 40, materials(), VOICES)]
    assert first == again
    assert first != other


def test_the_set_has_what_the_issue_asks_for():
    plans = plan_set(24, 300, materials(), VOICES)
    counts = {n: sum(len(plan.speakers) == n for plan in plans) for n in range(1, 7)}
    assert all(counts[n] >= 10 for n in counts), counts
    same_sex = [plan for plan in plans if len(plan.speakers) in (2, 3) and plan.same_sex]
    assert len(same_sex) >= 50
    assert {plan.pool for plan in plans} == {"tuning", "heldout"}
    lengths = [turn.samples / SAMPLE_RATE for plan in plans for turn in plan.turns]
    assert min(lengths) < 0.5 and max(lengths) > 25
    shares = [overlap_share(plan.turns) for plan in plans]
    assert min(shares) == 0 and max(shares) <= MAX_OVERLAP_SHARE and max(shares) > 0.1
    assert {plan.channel["kind"] for plan in plans} == {"clean", "opus", "telephone", "noise", "reverb"}
    for plan in plans:
        for speaker in plan.speakers:
            own = sorted((turn.start, turn.start + turn.samples) for turn in plan.turns if turn.speaker == speaker)
            assert all(end <= next_start for (_, end), (next_start, _) in zip(own, own[1:], strict=False))  # never over itself
            assert sum(end - start for start, end in own) >= MIN_SPEAKER_SECONDS * SAMPLE_RATE
        assert max(turn.start + turn.samples for turn in plan.turns) < plan.samples


def test_overlap_share_is_overlapped_over_spoken_time():
    turns = [
        PlacedTurn("a", 0, 100, 0),  # a: 0-100
        PlacedTurn("b", 80, 40, 0),  # b: 80-120, overlaps a for 20
        PlacedTurn("c", 90, 5, 0),  # c: 90-95, three at once, still 5 samples of overlap
        PlacedTurn("a", 200, 50, 0),  # after a pause that counts for nothing
    ]
    # spoken: 0-120 and 200-250 = 170; overlapped: 80-100 = 20
    assert overlap_share(turns) == pytest.approx(20 / 170)
    assert overlap_share([PlacedTurn("a", 0, 10, 0), PlacedTurn("b", 10, 10, 0)]) == 0  # touching is not overlap
    assert overlap_share([]) == 0


def test_material_keeps_speech_and_shortens_pauses():
    loud = np.sin(np.arange(SAMPLE_RATE) / 5).astype(np.float32) * 0.5  # 1 s of "speech"
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    material, run_starts = compact_material([np.concatenate([silence, loud, silence, loud, silence])])
    # Two seconds of speech (plus a few ms kept at the edges) and one pause cut to 0.15 s, not 3 s of silence.
    assert 2.15 * SAMPLE_RATE <= len(material) <= 2.4 * SAMPLE_RATE
    assert len(run_starts) == 2 and run_starts[0] == 0


def test_cyclic_reads_round_the_material():
    material = np.arange(1, 11, dtype=np.float32)
    piece = cyclic(material, offset=8, length=5000)
    assert len(piece) == 5000
    assert list(piece[:2]) == [9, 10] and piece[2] == 0  # then the short pause before it starts again


def test_peer_cuts_average_linkage_at_its_similarity_and_obeys_hints():
    rng = np.random.default_rng(0)
    centres = np.linalg.qr(rng.standard_normal((192, 3)))[0].T  # three orthogonal voices
    embeddings = np.concatenate([centre + 0.1 * rng.standard_normal((20, 192)) / np.sqrt(192) for centre in centres])
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    assert threshold_clusters(embeddings).max() + 1 == 3
    assert threshold_clusters(embeddings, max_speakers=2).max() + 1 == 2
    assert threshold_clusters(embeddings, similarity=-1.0).max() + 1 == 1  # everything is "similar enough"


def test_count_tally_separates_exact_over_and_under():
    tally = Tally()
    for reference, hypothesis in ((2, 2), (2, 3), (3, 2), (3, 1)):
        tally.add(
            {
                "duration_s": 10.0,
                "diarization_seconds": 0.5,
                "der_seconds": {"total": 8.0, "missed detection": 1.0, "false alarm": 0.0, "confusion": 1.0},
                "reference_speakers": reference,
                "hypothesis_speakers": hypothesis,
            }
        )
    figures = tally.figures()
    assert (figures["count_exact"], figures["count_over"], figures["count_under"]) == (0.25, 0.25, 0.5)
    assert figures["der"] == 0.25 and figures["der_confusion"] == 0.125 and figures["rtf"] == 0.05
