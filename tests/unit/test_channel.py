"""The channel measured from the recording (services/transcriber/channel.py) and the similarity the diarizer's cut
takes on it (ClusteringLimits.for_channel), on real speech (festvox-ru) put through a telephone band and noise."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from kazru.adapters import audio
from kazru.domain.recognition import SpeechRegion
from services.transcriber.channel import Channel, measure_channel
from services.transcriber.diarization import CAMPLUS_LIMITS, ClusteringLimits, detect_speech
from tests.conftest import REAL_SPEECH_CLIP
from tests.unit.test_speech_segmentation import telephone_band

RATE = audio.SAMPLE_RATE


@pytest.fixture(scope="module")
def conversation() -> np.ndarray:
    """The real utterance twice, with pauses of room tone (a microphone's hiss 50 dB under the speech)."""
    speech = asyncio.run(audio.decode_pcm16k(str(REAL_SPEECH_CLIP)))
    hiss = np.random.default_rng(1).standard_normal(RATE).astype(np.float32) * np.sqrt(np.mean(speech**2)) * 10**-2.5
    return np.concatenate([hiss, speech, hiss, speech, hiss])


def with_noise(samples: np.ndarray, snr_db: float) -> np.ndarray:
    noise = np.random.default_rng(2).standard_normal(len(samples)).astype(np.float32)
    level = np.sqrt(np.mean(samples**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return samples + level * noise


def test_a_telephone_band_leaves_no_energy_above_4_khz(conversation):
    speech = detect_speech(conversation)
    assert measure_channel(conversation, speech).high_band_share > 1e-3
    call = telephone_band(conversation)
    assert measure_channel(call, detect_speech(call)).high_band_share < 1e-4


def test_background_noise_brings_speech_near_the_pauses(conversation):
    speech = detect_speech(conversation)
    quiet = measure_channel(conversation, speech).speech_to_pause_db
    noisy = measure_channel(with_noise(conversation, 5.0), speech).speech_to_pause_db
    assert quiet > 35 and noisy < 15, (quiet, noisy)


def test_without_pauses_the_noise_is_not_guessed(conversation):
    whole = [SpeechRegion(0.0, len(conversation) / RATE)]
    assert measure_channel(conversation, whole).speech_to_pause_db is None


def test_a_file_backed_recording_measures_as_samples_in_memory(conversation, tmp_path):
    path = tmp_path / "speech.pcm"
    pcm = (np.clip(conversation, -1, 1) * 32767).astype("<i2")
    path.write_bytes(pcm.tobytes())
    speech = detect_speech(conversation)
    from_file = measure_channel(audio.Recording.from_pcm_file(path), speech)
    in_memory = measure_channel(pcm.astype(np.float32) / 32768, speech)
    assert from_file.high_band_share == pytest.approx(in_memory.high_band_share, rel=1e-9)
    assert from_file.speech_to_pause_db == pytest.approx(in_memory.speech_to_pause_db, rel=1e-9)


def test_the_cut_takes_the_channel_similarity():
    assert CAMPLUS_LIMITS.for_channel(Channel(0.0, 40.0)).link_similarity == CAMPLUS_LIMITS.narrowband_link_similarity
    assert CAMPLUS_LIMITS.for_channel(Channel(0.02, 8.0)).link_similarity == CAMPLUS_LIMITS.noisy_link_similarity
    for clear in (Channel(0.02, 40.0), Channel(0.02, None)):
        assert CAMPLUS_LIMITS.for_channel(clear) == CAMPLUS_LIMITS
    # A setting without channel similarities keeps its own everywhere.
    plain = ClusteringLimits(count_rule="threshold", link_similarity=0.55)
    assert plain.for_channel(Channel(0.0, 3.0)) == plain
    # ...and the diarizer measures no channel for it.
    assert CAMPLUS_LIMITS.depends_on_channel and not plain.depends_on_channel
