"""The numpy GE2E encoder against resemblyzer's own torch encoder (reference made by scripts/convert_ge2e.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.ge2e.voice_encoder import (
    DEFAULT_ASSET,
    FRAMES_PER_SECOND,
    VoiceEncoder,
    normalize_volume,
    partial_slices,
)
from tests.helpers import cosine, reference_clip, reference_fixture

FIXTURES = ("ru_weather_m3", "ru_weather_f3", "kk_city_f3")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def encoder() -> VoiceEncoder:
    return VoiceEncoder.load()


reference = reference_fixture("ge2e_reference.npz")


@pytest.mark.parametrize("name", FIXTURES)
def test_mel_frames_match_resemblyzer(encoder, reference, name):
    expected = reference[f"mel_{name}"]
    mel = encoder.mel_frames(reference_clip(reference, name))
    assert mel.shape == expected.shape
    assert mel.dtype == np.float32
    assert np.abs(mel - expected).max() <= 1e-5 * expected.max()


@pytest.mark.parametrize("name", FIXTURES)
def test_embed_utterance_matches_torch_reference(encoder, reference, name):
    embedding, partials = encoder.embed_utterance(reference_clip(reference, name), return_partials=True)
    assert embedding.shape == (256,)
    assert partials.shape == reference[f"partials_{name}"].shape
    assert np.abs(partials - reference[f"partials_{name}"]).max() <= TOLERANCE
    assert np.abs(embedding - reference[f"embedding_{name}"]).max() <= TOLERANCE


@pytest.mark.parametrize("name", FIXTURES)
def test_volume_normalisation_matches_resemblyzer(encoder, reference, name):
    quiet = reference_clip(reference, name) * reference["quiet_gain"]
    embedding = encoder.embed_utterance(normalize_volume(quiet))
    assert np.abs(embedding - reference[f"quiet_normalized_embedding_{name}"]).max() <= TOLERANCE
    # The model is sensitive to level: without normalisation the quiet copy embeds elsewhere.
    assert cosine(encoder.embed_utterance(quiet), reference[f"embedding_{name}"]) < 0.9


def test_embed_windows_of_one_window_equals_the_batch_of_its_frames(encoder, reference):
    wav = reference_clip(reference, "kk_city_f3")
    start, end = 0.42, 1.97
    [embedding] = encoder.embed_windows(wav, [(start, end)])
    frames = encoder.mel_frames(wav)[round(start * FRAMES_PER_SECOND) : round(end * FRAMES_PER_SECOND)]
    np.testing.assert_allclose(embedding, encoder.embed_frames_batch(frames[None])[0], atol=1e-6)


def test_embed_windows_of_different_lengths_equal_each_window_alone(encoder, reference):
    wav = normalize_volume(reference_clip(reference, "ru_weather_f3"))
    duration = len(wav) / 16_000
    windows = [(0.0, 1.5), (0.75, 1.6), (1.0, 3.0), (0.3, 0.8), (duration - 1.0, duration + 2.0)]
    together = encoder.embed_windows(wav, windows)
    assert together.shape == (len(windows), 256)
    for window, embedding in zip(windows, together, strict=True):
        np.testing.assert_allclose(embedding, encoder.embed_windows(wav, [window])[0], atol=1e-6)
    # Different windows really give different embeddings (the batch is not one state copied).
    assert cosine(together[0], together[3]) < 0.99


def test_embed_windows_refuses_a_window_without_audio(encoder, reference):
    wav = reference_clip(reference, "ru_weather_m3")
    assert encoder.embed_windows(wav, []).shape == (0, 256)
    with pytest.raises(ValueError, match="no audio frames"):
        encoder.embed_windows(wav, [(0.0, 1.0), (10.0, 11.0)])


def test_partial_slices_follow_resemblyzer(reference):
    # 2.9 s: partials every round(16000 / 1.3 / 160) = 77 frames; the third covers too little and is dropped.
    n_samples = len(reference["pcm_ru_weather_m3"])
    assert partial_slices(n_samples) == [slice(0, 160), slice(77, 237), slice(154, 314)]
    assert partial_slices(8_000) == [slice(0, 160)]  # shorter than one partial: still one


def test_embeddings_separate_voices_not_sentences(encoder, reference):
    """Two espeak voices saying the same sentence lie further apart than two halves of one voice."""
    wavs = {name: normalize_volume(reference_clip(reference, name)) for name in FIXTURES}

    def halves(name: str) -> tuple[np.ndarray, np.ndarray]:
        wav = wavs[name]
        middle = len(wav) // 2
        return encoder.embed_utterance(wav[:middle]), encoder.embed_utterance(wav[middle:])

    male_first, male_second = halves("ru_weather_m3")
    female_first, female_second = halves("ru_weather_f3")
    different_voices = max(cosine(male_first, female_second), cosine(female_first, male_second))
    assert cosine(male_first, male_second) > different_voices + 0.1
    assert cosine(female_first, female_second) > different_voices + 0.1
    # Same female voice, other language and sentence, is closer than the male voice on the same sentence.
    whole = {name: encoder.embed_utterance(wav) for name, wav in wavs.items()}
    assert cosine(whole["ru_weather_f3"], whole["kk_city_f3"]) > cosine(whole["ru_weather_f3"], whole["ru_weather_m3"])


def test_live_against_resemblyzer_when_torch_is_installed(encoder, reference):
    """Only where torch and resemblyzer are importable (not in CI): compare on fresh, random input too."""
    torch = pytest.importorskip("torch")
    resemblyzer = pytest.importorskip("resemblyzer")
    torch_encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
    mels = np.random.default_rng(7).gamma(0.5, 0.02, size=(4, 120, 40)).astype(np.float32)
    with torch.no_grad():
        expected = torch_encoder(torch.from_numpy(mels)).numpy()
    assert np.abs(encoder.embed_frames_batch(mels) - expected).max() <= TOLERANCE
    wav = reference_clip(reference, "kk_city_f3")
    assert np.abs(encoder.embed_utterance(wav) - torch_encoder.embed_utterance(wav)).max() <= TOLERANCE


def test_asset_is_float32_and_small():
    with np.load(DEFAULT_ASSET) as asset:
        assert asset["lstm_weight_hh_l0"].dtype == np.float32
        assert asset["mel_filterbank"].shape == (40, 201)
    assert DEFAULT_ASSET.stat().st_size < 8_000_000
