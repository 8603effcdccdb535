"""Conversations of real voices for scoring diarizers, with exact references (issue 24).

    python bench/diarization/conversations.py                      # the whole set (300 conversations)
    python bench/diarization/conversations.py --limit 10 --pool tuning --jobs 1

The 262 LibriSpeech readers of ../shared/corpus/librispeech_voices are split by sex into two disjoint
pools, `tuning` and `heldout` (the split is drawn from the seed). Conversation i comes from pool i % 2 and
is planned from (seed, i) alone, so any process can build any conversation and a run can be cut short,
resumed or run in parallel without changing a byte:

- 1-6 speakers of its pool; pairs and trios are same-sex on purpose in half the cases, mixed otherwise;
  in some one speaker dominates (about two thirds of the talk);
- turns of 0.3-1 s (backchannels, some of them said while another talks), 1-4 s, 4-12 s and 12-30 s
  (monologues), each cut from the speaker's own utterances; pauses of 0.1-3 s; 0-20 % of the speech
  overlapped (a per-conversation budget; the manifest gives the exact share);
- one channel of those people upload: clean, Opus 16-32 kbit/s (a real libopus round trip through
  ffmpeg), 8 kHz telephone band (resampled down and up, band-passed 300-3400 Hz), noise at 5-20 dB SNR
  (coloured noise, or babble of 4-6 voices of the same pool that are not in the conversation), or a
  reverberant room (an exponentially decaying noise impulse response, RT60 0.2-0.8 s).

A voice's material is its utterances with the silence at their ends cut and pauses inside them longer
than MAX_PAUSE_SECONDS shortened to it (an energy threshold, MATERIAL_FLOOR_DB under the utterance's
loud frames), so a turn is speech from its first sample to its last: its RTTM line is exactly where its
samples were placed. Every conversation gets a microphone's hiss 45-60 dB under its speech, so that
nothing in it is digital silence. Written into the gitignored bench/.cache/conversations/<version>-seed<seed>/:
`<name>.flac` (16 kHz mono), `<name>.rttm`, and `manifest.jsonl` (one line per conversation: file,
pool, n_speakers, speakers, sexes, same_sex, dominant and its share of the talk, overlap_share,
channel, duration_s).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.signal import butter, fftconvolve, resample_poly, sosfiltfilt

# Run as a script: make `bench` importable from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.accuracy.sets import CACHE_DIR, DEFAULT_CORPUS_DIR  # noqa: E402
from kazru.adapters.audio import (  # noqa: E402
    SAMPLE_RATE,
    Recording,
    decode_pcm16k,
    encode_ogg_opus,
    ffmpeg_exe,
    pcm16_bytes,
)

# The shared corpus beside the checkout, as bench/accuracy/sets.DEFAULT_CORPUS_DIR (`--voices` elsewhere).
VOICES_DIR = DEFAULT_CORPUS_DIR.parent / "librispeech_voices"
# Bump when a change to this file changes what a seed builds, so an old cache is never taken for a new set.
GENERATOR_VERSION = "v1"
DEFAULT_SEED = 24
DEFAULT_COUNT = 300
POOLS = ("tuning", "heldout")

MATERIAL_FLOOR_DB = 35.0  # frames this far under the utterance's loud (95th percentile) frames are silence
MAX_PAUSE_SECONDS = 0.15  # longer pauses inside a voice's material are shortened to this
EDGE_PAD_SECONDS = 0.03  # kept around each stretch of speech, so word onsets and tails are not clipped
FADE_SECONDS = 0.01  # turns cut mid-word fade in and out, so the cut does not click

SPEAKER_COUNT_WEIGHTS = {1: 0.10, 2: 0.30, 3: 0.25, 4: 0.15, 5: 0.10, 6: 0.10}
SAME_SEX_SHARE = 0.5  # of pairs and trios
DOMINANT_SHARE = 0.3  # of conversations of 2 or more
DOMINANT_TALK_SHARE = 2 / 3  # of the turns' picks, for the dominant speaker
# (shortest, longest) seconds of each kind of turn, and how often each is drawn.
TURN_KINDS = {"backchannel": (0.3, 1.0), "short": (1.0, 4.0), "medium": (4.0, 12.0), "monologue": (12.0, 30.0)}
TURN_KIND_WEIGHTS = {"backchannel": 0.15, "short": 0.35, "medium": 0.35, "monologue": 0.15}
DOMINANT_TURN_KIND_WEIGHTS = {"backchannel": 0.05, "short": 0.25, "medium": 0.40, "monologue": 0.30}
MAX_OVERLAP_SHARE = 0.20
NO_OVERLAP_SHARE = 0.3  # of conversations have none at all
# Every speaker talks at least this long, so that each one counts (bench/accuracy/metrics.counted_speakers: 2 s).
MIN_SPEAKER_SECONDS = 4.0
# Every conversation's hiss (pink noise) is this far under its speech, whatever its channel.
NOISE_FLOOR_SNR_DB = (45.0, 60.0)
CHANNELS = ("clean", "opus", "telephone", "noise", "reverb")
BABBLE_VOICES = (4, 6)


@dataclass(frozen=True)
class Voice:
    speaker: str
    sex: str


@dataclass(frozen=True)
class Material:
    """A voice's speech, as lengths only (what planning needs): its samples and where each stretch of
    speech in it starts (turns start there, not in a pause)."""

    samples: int
    run_starts: tuple[int, ...]


@dataclass(frozen=True)
class PlacedTurn:
    speaker: str
    start: int  # samples into the conversation
    samples: int
    source_offset: int  # samples into the speaker's material (read cyclically)


@dataclass
class ConversationPlan:
    name: str
    pool: str
    speakers: tuple[str, ...]
    sexes: tuple[str, ...]
    dominant: str | None
    turns: list[PlacedTurn]
    samples: int
    gains_db: dict[str, float]
    channel: dict = field(default_factory=dict)

    @property
    def same_sex(self) -> bool:
        return len(self.speakers) > 1 and len(set(self.sexes)) == 1

    def talk_share(self, speaker: str) -> float:
        """The speaker's share of all turns' seconds (overlapped seconds count for each talker)."""
        return sum(turn.samples for turn in self.turns if turn.speaker == speaker) / sum(t.samples for t in self.turns)

    def manifest_row(self) -> dict:
        return {
            "file": f"{self.name}.flac",
            "rttm": f"{self.name}.rttm",
            "pool": self.pool,
            "n_speakers": len(self.speakers),
            "speakers": list(self.speakers),
            "sexes": list(self.sexes),
            "same_sex": self.same_sex,
            "dominant": self.dominant,
            "dominant_talk_share": round(self.talk_share(self.dominant), 4) if self.dominant else None,
            "overlap_share": round(overlap_share(self.turns), 4),
            "channel": self.channel,
            "duration_s": round(self.samples / SAMPLE_RATE, 4),
            "turns": len(self.turns),
        }


def read_voices(voices_dir: Path = VOICES_DIR) -> list[Voice]:
    with open(voices_dir / "SPEAKERS.tsv", encoding="utf-8", newline="") as file:
        return [Voice(row["speaker"], row["sex"]) for row in csv.DictReader(file, delimiter="\t")]


def split_pools(voices: list[Voice], seed: int) -> dict[str, list[Voice]]:
    """Each sex shuffled by the seed and dealt alternately into the pools: disjoint, balanced by sex."""
    rng = np.random.default_rng([seed, 0])
    pools: dict[str, list[Voice]] = {pool: [] for pool in POOLS}
    for sex in sorted({voice.sex for voice in voices}):
        of_sex = sorted((voice for voice in voices if voice.sex == sex), key=lambda voice: voice.speaker)
        for position, index in enumerate(rng.permutation(len(of_sex))):
            pools[POOLS[position % 2]].append(of_sex[index])
    return {pool: sorted(members, key=lambda voice: voice.speaker) for pool, members in pools.items()}


def overlap_share(turns: list[PlacedTurn]) -> float:
    """Samples where two or more speakers talk over samples where anyone talks (a speaker's own turns
    never overlap one another, so each turn adds one talker)."""
    edges: list[tuple[int, int]] = []
    for turn in turns:
        edges += [(turn.start, 1), (turn.start + turn.samples, -1)]
    talking, previous, speech, overlapped = 0, 0, 0, 0
    for position, change in sorted(edges):
        if talking >= 1:
            speech += position - previous
        if talking >= 2:
            overlapped += position - previous
        talking += change
        previous = position
    return overlapped / speech if speech else 0.0


def rttm_text(uri: str, turns: list[PlacedTurn]) -> str:
    """One SPEAKER line per turn, times in seconds written exactly (a sample is 62.5 µs: 7 decimals)."""

    def seconds(samples: int) -> str:
        return f"{samples / SAMPLE_RATE:.7f}".rstrip("0").rstrip(".")

    lines = [
        f"SPEAKER {uri} 1 {seconds(turn.start)} {seconds(turn.samples)} <NA> <NA> {turn.speaker} <NA> <NA>\n"
        for turn in sorted(turns, key=lambda turn: (turn.start, turn.speaker))
    ]
    return "".join(lines)


def _weighted(rng: np.random.Generator, weights: dict):
    keys = list(weights)
    chances = np.array([weights[key] for key in keys], dtype=float)
    return keys[rng.choice(len(keys), p=chances / chances.sum())]


def _seconds(value: float) -> int:
    return int(round(value * SAMPLE_RATE))


def plan_conversation(
    index: int, seed: int, pools: dict[str, list[Voice]], materials: dict[str, Material]
) -> ConversationPlan:
    """Conversation `index`, from (seed, index) and the materials' lengths alone."""
    rng = np.random.default_rng([seed, 1, index])
    pool = POOLS[index % 2]
    members = pools[pool]
    n_speakers = int(_weighted(rng, SPEAKER_COUNT_WEIGHTS))
    by_sex = {sex: [voice for voice in members if voice.sex == sex] for sex in ("F", "M")}
    if n_speakers in (2, 3) and rng.random() < SAME_SEX_SHARE:
        sex = str(rng.choice(["F", "M"]))
        chosen = list(rng.choice(by_sex[sex], n_speakers, replace=False))
    elif n_speakers in (2, 3):
        # Mixed on purpose: one of each sex, then (a trio) anyone.
        chosen = [by_sex["F"][rng.integers(len(by_sex["F"]))], by_sex["M"][rng.integers(len(by_sex["M"]))]]
        rest = [voice for voice in members if voice not in chosen]
        chosen += list(rng.choice(rest, n_speakers - 2, replace=False))
        chosen = [chosen[i] for i in rng.permutation(len(chosen))]
    else:
        chosen = list(rng.choice(members, n_speakers, replace=False))
    speakers = tuple(voice.speaker for voice in chosen)
    dominant = str(speakers[rng.integers(n_speakers)]) if n_speakers > 1 and rng.random() < DOMINANT_SHARE else None

    target = rng.uniform(75, 110) if rng.random() < 0.15 else rng.uniform(25, 65)
    overlap_budget = 0.0 if rng.random() < NO_OVERLAP_SHARE else rng.uniform(0.03, MAX_OVERLAP_SHARE)
    overlap_chance = rng.uniform(0.5, 1.0)
    pick_weights = rng.dirichlet(np.full(n_speakers, 3.0))
    if dominant is not None:
        others = (1 - DOMINANT_TALK_SHARE) / (n_speakers - 1)
        pick_weights = np.array([DOMINANT_TALK_SHARE if s == dominant else others for s in speakers])

    turns: list[PlacedTurn] = []
    cursor = _seconds(rng.uniform(0.2, 1.0))
    previous: PlacedTurn | None = None

    def take(speaker: str, length: int, start: int) -> PlacedTurn:
        material = materials[speaker]
        offset = int(material.run_starts[rng.integers(len(material.run_starts))])
        return PlacedTurn(speaker, start, length, offset)

    def fits(candidate: PlacedTurn) -> bool:
        """Within the overlap budget, and never over the same speaker's own turn."""
        own = (turn for turn in turns if turn.speaker == candidate.speaker)
        candidate_end = candidate.start + candidate.samples
        if any(turn.start < candidate_end and candidate.start < turn.start + turn.samples for turn in own):
            return False
        return overlap_share([*turns, candidate]) <= overlap_budget

    def next_speaker() -> str:
        if n_speakers == 1 or previous is None or previous.speaker == dominant:
            # The dominant speaker may go on after a pause; anyone else hands over.
            return speakers[int(rng.choice(n_speakers, p=pick_weights))]
        weights = np.where(np.array(speakers) == previous.speaker, 0.0, pick_weights)
        return speakers[int(rng.choice(n_speakers, p=weights / weights.sum()))]

    def turn_length(speaker: str) -> int:
        kind = _weighted(rng, DOMINANT_TURN_KIND_WEIGHTS if speaker == dominant else TURN_KIND_WEIGHTS)
        shortest, longest = TURN_KINDS[kind]
        return _seconds(rng.uniform(shortest, longest))

    def place(speaker: str, length: int) -> None:
        nonlocal cursor, previous
        start = cursor + _seconds(rng.uniform(1.2, 3.0) if rng.random() < 0.1 else rng.uniform(0.1, 1.2))
        handing_over = previous is not None and previous.speaker != speaker
        if handing_over and overlap_budget > 0 and rng.random() < overlap_chance:
            # Starting before the other has finished: at most 60 % of either turn, at most 4 s.
            most = min(4.0, 0.6 * previous.samples / SAMPLE_RATE, 0.6 * length / SAMPLE_RATE)
            if most >= 0.2:
                early = _seconds(rng.uniform(0.2, most))
                candidate = take(speaker, length, previous.start + previous.samples - early)
                if fits(candidate):
                    start = candidate.start
        turn = take(speaker, length, start)
        turns.append(turn)
        cursor = max(cursor, turn.start + turn.samples)
        previous = turn

    while cursor < _seconds(target):
        speaker = next_speaker()
        length = turn_length(speaker)
        if (
            length < _seconds(1.0)
            and previous is not None
            and previous.speaker != speaker
            and previous.samples > _seconds(3.0)
            and overlap_budget > 0
            and rng.random() < 0.7
        ):
            # A backchannel said while the other goes on ("mm", "yes"): inside their turn, not after it.
            margin = _seconds(0.5)
            room = previous.samples - length - 2 * margin
            if room > 0:
                candidate = take(speaker, length, previous.start + margin + int(rng.integers(room)))
                if fits(candidate):
                    turns.append(candidate)
                    continue
        place(speaker, length)
    for speaker in speakers:
        # Everyone must be heard enough to count: a quiet one gets a turn more, at the end.
        while sum(turn.samples for turn in turns if turn.speaker == speaker) < _seconds(MIN_SPEAKER_SECONDS):
            place(speaker, _seconds(rng.uniform(MIN_SPEAKER_SECONDS, 8.0)))
    samples = cursor + _seconds(rng.uniform(0.3, 1.0))
    gains_db = {speaker: round(float(rng.uniform(-6.0, 6.0)), 2) for speaker in speakers}
    return ConversationPlan(
        name=f"conv{index:04d}_{pool}_{n_speakers}spk",
        pool=pool,
        speakers=speakers,
        sexes=tuple(voice.sex for voice in chosen),
        dominant=dominant,
        turns=sorted(turns, key=lambda turn: turn.start),
        samples=samples,
        gains_db=gains_db,
        channel=_plan_channel(rng, index, members, speakers),
    )


def _plan_channel(rng: np.random.Generator, index: int, members: list[Voice], speakers: tuple[str, ...]) -> dict:
    # Cycled rather than drawn, so every pool gets each channel in the same share.
    kind = CHANNELS[(index // 2) % len(CHANNELS)]
    channel: dict = {"kind": kind, "seed": int(rng.integers(2**31))}
    if kind == "opus":
        channel["bitrate"] = int(rng.choice([16_000, 20_000, 24_000, 32_000]))
    elif kind == "noise":
        channel["snr_db"] = round(float(rng.uniform(5.0, 20.0)), 2)
        channel["noise"] = str(rng.choice(["babble", "pink", "brown"], p=[0.5, 0.25, 0.25]))
        if channel["noise"] == "babble":
            outsiders = [voice.speaker for voice in members if voice.speaker not in speakers]
            count = int(rng.integers(BABBLE_VOICES[0], BABBLE_VOICES[1] + 1))
            channel["babble_speakers"] = sorted(str(s) for s in rng.choice(outsiders, count, replace=False))
    elif kind == "reverb":
        channel["rt60_s"] = round(float(rng.uniform(0.2, 0.8)), 3)
    return channel


def plan_set(seed: int, count: int, materials: dict[str, Material], voices: list[Voice]) -> list[ConversationPlan]:
    pools = split_pools(voices, seed)
    return [plan_conversation(index, seed, pools, materials) for index in range(count)]


# ---- audio ----------------------------------------------------------------------------------------------


def speech_runs(samples: np.ndarray) -> list[tuple[int, int]]:
    """Stretches of speech in a clean utterance (sample ranges): 20 ms frames over the energy floor."""
    frame, hop = _seconds(0.02), _seconds(0.01)
    if len(samples) < frame:
        return []
    frames = np.lib.stride_tricks.sliding_window_view(samples, frame)[::hop]
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = level >= np.percentile(level, 95) - MATERIAL_FLOOR_DB
    edges = np.diff(np.concatenate(([0], loud.astype(int), [0])))
    pad = _seconds(EDGE_PAD_SECONDS)
    runs = []
    for first, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        start, stop = max(first * hop - pad, 0), min((end - 1) * hop + frame + pad, len(samples))
        if runs and start <= runs[-1][1]:
            runs[-1] = (runs[-1][0], stop)
        else:
            runs.append((start, stop))
    return runs


def compact_material(utterances: list[np.ndarray]) -> tuple[np.ndarray, tuple[int, ...]]:
    """A voice's utterances as one stretch of speech: silence at the ends cut, longer pauses shortened to
    MAX_PAUSE_SECONDS (their own room tone, not digital silence); between two utterances the room tone
    before the next one's first word. Also where each stretch of speech starts."""
    most = _seconds(MAX_PAUSE_SECONDS)
    pieces, run_starts, length = [], [], 0
    for utterance in utterances:
        runs = speech_runs(utterance)
        for position, (start, stop) in enumerate(runs):
            if pieces:
                if position == 0:
                    pause = utterance[max(0, start - most) : start]
                else:
                    pause = utterance[runs[position - 1][1] : start]
                    if len(pause) > most:
                        pause = np.concatenate([pause[: most // 2], pause[len(pause) - (most - most // 2) :]])
                pieces.append(pause)
                length += len(pause)
            run_starts.append(length)
            pieces.append(utterance[start:stop])
            length += stop - start
    return np.concatenate(pieces).astype(np.float32), tuple(run_starts)


def load_materials(
    voices: list[Voice], voices_dir: Path, cache: Path, jobs: int
) -> tuple[dict[str, np.ndarray], dict[str, Material]]:
    """Every voice's compacted material and where its stretches of speech start, decoded once and kept in
    the cache (voices.npz: `<speaker>` the samples, `<speaker>_runs` the starts)."""
    path = cache / "voices.npz"
    if not path.is_file():
        with multiprocessing.get_context("fork").Pool(jobs) as workers:
            decoded = workers.map(_decoded_voice, [voices_dir / voice.speaker for voice in voices])
        arrays = {}
        for voice, (samples, run_starts) in zip(voices, decoded, strict=True):
            arrays[voice.speaker], arrays[f"{voice.speaker}_runs"] = samples, np.array(run_starts, dtype=np.int64)
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache, suffix=".npz", delete=False) as scratch:
            np.savez(scratch, **arrays)
        os.replace(scratch.name, path)
    with np.load(path) as stored:
        audio = {voice.speaker: stored[voice.speaker] for voice in voices}
        runs = {voice.speaker: tuple(int(start) for start in stored[f"{voice.speaker}_runs"]) for voice in voices}
    return audio, {speaker: Material(len(samples), runs[speaker]) for speaker, samples in audio.items()}


def _decoded_voice(folder: Path) -> tuple[np.ndarray, tuple[int, ...]]:
    utterances = [asyncio.run(decode_pcm16k(str(path))) for path in sorted(folder.glob("*.opus"))]
    return compact_material(utterances)


def cyclic(material: np.ndarray, offset: int, length: int) -> np.ndarray:
    """`length` samples of `material` from `offset`, going round to its start (after a short pause) when it ends."""
    looped = np.concatenate([material, np.zeros(_seconds(MAX_PAUSE_SECONDS), dtype=np.float32)])
    repeats = int(np.ceil((offset + length) / len(looped))) + 1
    return np.tile(looped, repeats)[offset : offset + length]


def render(plan: ConversationPlan, audio: dict[str, np.ndarray]) -> np.ndarray:
    mix = np.zeros(plan.samples, dtype=np.float32)
    fade = _seconds(FADE_SECONDS)
    for turn in plan.turns:
        gain = 10 ** (plan.gains_db[turn.speaker] / 20)
        piece = cyclic(audio[turn.speaker], turn.source_offset, turn.samples) * gain
        ramp = np.linspace(0.0, 1.0, min(fade, len(piece) // 2), dtype=np.float32)
        piece[: len(ramp)] *= ramp
        piece[len(piece) - len(ramp) :] *= ramp[::-1]
        mix[turn.start : turn.start + turn.samples] += piece
    speech = np.zeros(plan.samples, dtype=bool)
    for turn in plan.turns:
        speech[turn.start : turn.start + turn.samples] = True
    # No upload is digital silence between turns: a microphone's hiss, far under the speech.
    floor_rng = np.random.default_rng([plan.channel["seed"], 1])
    floor = coloured_noise(plan.samples, 1.0, floor_rng)
    mix = add_at_snr(mix, speech, floor, floor_rng.uniform(*NOISE_FLOOR_SNR_DB)).astype(np.float32)
    mix = apply_channel(mix, speech, plan.channel, audio)
    # Uploads come at all levels: peak between -12 and -1 dBFS.
    peak_db = np.random.default_rng(plan.channel["seed"]).uniform(-12.0, -1.0)
    return (mix * (10 ** (peak_db / 20) / max(float(np.abs(mix).max()), 1e-9))).astype(np.float32)


def apply_channel(mix: np.ndarray, speech: np.ndarray, channel: dict, audio: dict[str, np.ndarray]) -> np.ndarray:
    rng = np.random.default_rng(channel["seed"])
    kind = channel["kind"]
    if kind == "opus":
        return opus_round_trip(mix, channel["bitrate"])
    if kind == "telephone":
        return telephone_band(mix)
    if kind == "noise":
        if channel["noise"] == "babble":
            noise = babble(channel["babble_speakers"], len(mix), audio, rng)
        else:
            noise = coloured_noise(len(mix), 1.0 if channel["noise"] == "pink" else 2.0, rng)
        return add_at_snr(mix, speech, noise, channel["snr_db"])
    if kind == "reverb":
        return reverberate(mix, channel["rt60_s"], rng)
    return mix


def opus_round_trip(samples: np.ndarray, bitrate: int) -> np.ndarray:
    """Encoded and decoded by ffmpeg's libopus (the service's own encoder settings), cut back to its length."""
    ogg = asyncio.run(encode_ogg_opus(Recording.from_samples(np.clip(samples, -1, 1)), bitrate))
    with tempfile.NamedTemporaryFile(suffix=".ogg") as encoded:
        encoded.write(ogg)
        encoded.flush()
        decoded = asyncio.run(decode_pcm16k(encoded.name))
    return np.pad(decoded, (0, max(0, len(samples) - len(decoded))))[: len(samples)]


def telephone_band(samples: np.ndarray) -> np.ndarray:
    narrow = resample_poly(samples, 1, 2)
    band = sosfiltfilt(butter(4, [300, 3400], btype="bandpass", fs=SAMPLE_RATE // 2, output="sos"), narrow)
    return resample_poly(band, 2, 1)[: len(samples)].astype(np.float32)


def coloured_noise(length: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power falling as 1/f^exponent (1: pink, 2: brown), shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.fft.rfftfreq(length, 1 / SAMPLE_RATE)
    spectrum *= 1 / np.maximum(frequencies, 20.0) ** (exponent / 2)
    return np.fft.irfft(spectrum, n=length).astype(np.float32)


def babble(speakers: list[str], length: int, audio: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Several other voices at once, each from a random point of its material."""
    noise = np.zeros(length, dtype=np.float32)
    for speaker in speakers:
        material = audio[speaker]
        voice = cyclic(material, int(rng.integers(len(material))), length)
        noise += voice / max(float(np.sqrt(np.mean(voice**2))), 1e-9)
    return noise


def add_at_snr(mix: np.ndarray, speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Noise scaled so that the speech's power (where someone talks) is `snr_db` over the noise's."""
    speech_power = float(np.mean(mix[speech] ** 2)) if speech.any() else float(np.mean(mix**2))
    noise_power = max(float(np.mean(noise**2)), 1e-12)
    return mix + noise * np.sqrt(speech_power / noise_power / 10 ** (snr_db / 10))


def reverberate(samples: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A room: the direct sound, then noise decaying by 60 dB over `rt60` s (no added delay)."""
    length = _seconds(rt60)
    time_axis = np.arange(length) / SAMPLE_RATE
    response = rng.standard_normal(length) * np.exp(-6.9078 * time_axis / rt60) * 0.3
    response[0] = 1.0
    response /= np.sqrt(np.sum(response**2))
    return fftconvolve(samples, response)[: len(samples)].astype(np.float32)


def write_flac(samples: np.ndarray, path: Path) -> None:
    """16-bit FLAC through ffmpeg, written beside and renamed, so a reader never sees half a file."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp.flac")
    command = [ffmpeg_exe(), "-v", "error", "-y", "-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0"]
    subprocess.run([*command, "-c:a", "flac", str(scratch)], input=pcm16_bytes(samples), check=True)
    os.replace(scratch, path)


def write_text(text: str, path: Path) -> None:
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(text, encoding="utf-8")
    os.replace(scratch, path)


# Set in the parent before the workers fork, so they share the audio instead of pickling it per task.
_AUDIO: dict[str, np.ndarray] = {}


def _build(job: tuple[ConversationPlan, Path]) -> str:
    plan, folder = job
    flac, rttm = folder / f"{plan.name}.flac", folder / f"{plan.name}.rttm"
    if not (flac.is_file() and rttm.is_file()):
        write_flac(render(plan, _AUDIO), flac)
        write_text(rttm_text(plan.name, plan.turns), rttm)
    return plan.name


def output_dir(seed: int) -> Path:
    return CACHE_DIR / "conversations" / f"{GENERATOR_VERSION}-seed{seed}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the real-voice conversation set (issue 24)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="conversations in the set (both pools)")
    parser.add_argument("--limit", type=int, help="build only the first N of the chosen pool(s)")
    parser.add_argument("--pool", choices=(*POOLS, "all"), default="all")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--voices", type=Path, default=VOICES_DIR, help="the librispeech_voices folder")
    args = parser.parse_args()

    started = time.perf_counter()
    voices = read_voices(args.voices)
    folder = output_dir(args.seed)
    audio, materials = load_materials(voices, args.voices, CACHE_DIR / "conversations", args.jobs)
    plans = plan_set(args.seed, args.count, materials, voices)
    folder.mkdir(parents=True, exist_ok=True)
    # The manifest always describes the whole set: it is what the seed builds, whatever part is built now.
    write_text("".join(json.dumps(plan.manifest_row()) + "\n" for plan in plans), folder / "manifest.jsonl")
    pools = split_pools(voices, args.seed)
    write_text(
        json.dumps({pool: [asdict(voice) for voice in members] for pool, members in pools.items()}, indent=1),
        folder / "pools.json",
    )
    chosen = [plan for plan in plans if args.pool in ("all", plan.pool)][: args.limit]
    _AUDIO.update(audio)
    with multiprocessing.get_context("fork").Pool(args.jobs) as workers:
        for done, name in enumerate(workers.imap_unordered(_build, [(plan, folder) for plan in chosen]), start=1):
            if done % 25 == 0 or done == len(chosen):
                print(f"{done}/{len(chosen)} {name}", file=sys.stderr, flush=True)
    hours = sum(plan.samples for plan in chosen) / SAMPLE_RATE / 3600
    print(
        json.dumps(
            {"folder": str(folder), "built": len(chosen), "audio_hours": round(hours, 3),
             "seconds": round(time.perf_counter() - started, 1)}
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
