"""Our diarizer on the committed conversations (real VAD, real CAM++ encoder), scored with pyannote.metrics;
and the same diarizer labelling what SpeechKit recognised (SpeechKit's own labels stop at two speakers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.accuracy.metrics import DER_COLLAR_EACH_SIDE_S, Segment, diarization_errors
from kazru.adapters import audio
from kazru.settings import Settings
from services.transcriber.diarization import Diarizer
from services.transcriber.engines.speechkit import SpeechKitEngine
from services.transcriber.pipeline import TranscriptionPipeline, create_diarizer
from tests.conftest import FIXTURES, REAL_SPEECH_CLIP
from tests.fakes.speechkit_server import FakeSpeechKit, Scenario, Utterance
from tests.integration.test_speechkit import API_KEY, engine_settings

CONVERSATIONS = {"conversation_3spk": 3, "conversation_2spk": 2}


@pytest.fixture(scope="module")
def diarizer() -> Diarizer:
    return create_diarizer(Settings())


def reference_turns(name: str) -> list[dict]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


async def decoded(name: str):
    return await audio.decode_pcm16k(str(FIXTURES / f"{name}.flac"), "")


@pytest.mark.parametrize("name", CONVERSATIONS)
async def test_diarizer_finds_who_spoke_when(diarizer, name):
    samples = await decoded(name)
    result = diarizer.diarize(samples)
    assert len(result.speakers) == CONVERSATIONS[name]
    reference = [Segment(t["start"], t["end"], t["speaker"], t["language"], t["text"]) for t in reference_turns(name)]
    hypothesis = [Segment(t.start, t.end, t.speaker, "", "") for t in result.turns]
    errors = diarization_errors(reference, hypothesis, len(samples) / audio.SAMPLE_RATE, DER_COLLAR_EACH_SIDE_S)
    der = (errors["missed detection"] + errors["false alarm"] + errors["confusion"]) / errors["total"]
    assert der <= 0.10, errors
    # Turns are time-ordered, do not overlap, and speakers are numbered as they first speak.
    assert all(a.end <= b.start for a, b in zip(result.turns, result.turns[1:], strict=False))
    assert result.speakers == [f"S{i + 1}" for i in range(CONVERSATIONS[name])]


# Real voices (../shared/corpus, beside the repository in CI too): a two-party telephone call and
# one Kazakh speaker. espeak's variants are one machine; these are people.
REAL_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "real"


def real_turns(name: str) -> list[Segment]:
    turns = []
    for line in (REAL_CORPUS / f"{name}.rttm").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            start, length = float(fields[3]), float(fields[4])
            turns.append(Segment(start, start + length, fields[7], "", ""))
    return turns


async def test_diarizer_tells_two_real_voices_apart(diarizer):
    samples = await audio.decode_pcm16k(str(REAL_CORPUS / "en_pyannote_sample.flac"), "")
    result = diarizer.diarize(samples)
    assert len(result.speakers) == 2
    errors = diarization_errors(
        real_turns("en_pyannote_sample"),
        [Segment(t.start, t.end, t.speaker, "", "") for t in result.turns],
        len(samples) / audio.SAMPLE_RATE,
        DER_COLLAR_EACH_SIDE_S,
    )
    # GE2E, the encoder before CAM++, heard one speaker here (DER 0.46); CAM++ scores 0.06.
    assert errors["confusion"] / errors["total"] <= 0.15, errors


@pytest.mark.parametrize("name", ["kk_is2ai_example_1", "kk_is2ai_example_2"])
async def test_one_real_voice_is_one_speaker(diarizer, name):
    samples = await audio.decode_pcm16k(str(REAL_CORPUS / f"{name}.flac"), "")
    assert diarizer.diarize(samples).speakers == ["S1"]


async def test_speaker_hints_bound_the_count(diarizer):
    samples = await decoded("conversation_3spk")
    assert len(diarizer.diarize(samples, max_speakers=2).speakers) == 2
    assert len(diarizer.diarize(samples, min_speakers=4).speakers) == 4
    assert diarizer.diarize(samples[:0]).turns == []


async def test_three_speakers_with_speechkit_words(diarizer):
    """SpeechKit answers with words and no usable speaker labels; every word gets one of three speakers."""
    turns = reference_turns("conversation_3spk")
    utterances = []
    for turn in turns:
        words = turn["text"].split()
        step = (turn["end"] - turn["start"]) / len(words)
        timed = [(word, turn["start"] + i * step, turn["start"] + (i + 0.9) * step) for i, word in enumerate(words)]
        code = {"kk": "kk-KZ", "ru": "ru-RU"}[turn["language"]]
        utterances.append(Utterance(words=timed, languages=[(code, 0.9)], confidence=0.9))
    fake = FakeSpeechKit(api_key=API_KEY, scenario=Scenario(utterances=utterances))
    address = await fake.start()
    engine = SpeechKitEngine(engine_settings(address).speechkit)
    try:
        result = await TranscriptionPipeline(engine, diarizer).run(await decoded("conversation_3spk"), ("kk", "ru"))
    finally:
        await engine.close()
        await fake.stop()
    assert fake.problems == []
    assert [speaker.label for speaker in result.speakers] == ["S1", "S2", "S3"]
    # Each reference speaker maps to exactly one of ours, and every turn keeps its own language.
    # Segments span the diarizer's turns, whose edges may differ from the reference by the
    # benchmark's collar (VAD padding, 10 ms frames).
    ours_by_reference: dict[str, set[str]] = {}
    collar = DER_COLLAR_EACH_SIDE_S
    for turn in turns:
        inside = [s for s in result.segments if turn["start"] - collar <= s.start and s.end <= turn["end"] + collar]
        assert inside, (turn, [(s.start, s.end, s.speaker) for s in result.segments])
        ours_by_reference.setdefault(turn["speaker"], set()).update(s.speaker for s in inside)
        assert {s.language for s in inside} == {turn["language"]}
    assert all(len(ours) == 1 for ours in ours_by_reference.values()), ours_by_reference
    assert len(set().union(*ours_by_reference.values())) == 3
    assert result.engine == "speechkit" and result.billed_seconds >= 15


async def test_two_real_voices_talking_at_once_invent_no_third_speaker(diarizer):
    """A real Russian voice, then a real Kazakh one starting 1.5 s before the first stops: the overlap
    belongs to one of the two, and each keeps the speech they have alone."""
    first = await audio.decode_pcm16k(str(REAL_SPEECH_CLIP), "")
    second = await audio.decode_pcm16k(str(REAL_CORPUS / "kk_is2ai_example_1.flac"), "")
    overlap = int(1.5 * audio.SAMPLE_RATE)
    mixed = np.zeros(len(first) + len(second) - overlap, dtype=np.float32)
    mixed[: len(first)] += first
    mixed[len(first) - overlap :] += second
    result = diarizer.diarize(mixed)
    assert len(result.speakers) == 2, result.turns
    first_alone = (0.5, len(first) / audio.SAMPLE_RATE - 1.6)
    second_alone = (len(first) / audio.SAMPLE_RATE + 0.1, len(mixed) / audio.SAMPLE_RATE - 0.5)
    assert result.speaker_at(*first_alone) != result.speaker_at(*second_alone)
