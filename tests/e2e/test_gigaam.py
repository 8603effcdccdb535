"""KAZRU_ENGINE=gigaam through the whole stack: a mixed Kazakh/Russian recording (espeak-ng, each word
spoken on its own so its time is exact), the test GigaAM model folder (tests/fakes/gigaam_model.py),
upload → transcript → TXT/SRT/JSON exports."""

from __future__ import annotations

import time

import httpx
import pytest

from kazru.settings import GigaamSettings
from tests import export_checks
from tests.e2e.conftest import API_KEY, start_stack, stop_stack
from tests.fakes.gigaam_model import build_gigaam_model
from tests.fakes.spoken_words import Turn, speak, write_wav

AUTH = {"Authorization": f"Bearer {API_KEY}"}
FRAME = 0.04
TURNS = [
    Turn("ru+m3", "Добрый день сегодня мы обсудим план работы", "A"),
    Turn("kk+f3", "Сәлеметсіз бе менің атым Айгерім", "B"),
    Turn("ru+m3", "Москва является столицей России", "A"),
    Turn("kk+f3", "Біз жаңа жобаны келесі аптада бастаймыз", "B"),
]
EXPECTED = [
    ("ru", "Добрый день сегодня мы обсудим план работы."),
    ("kk", "Сәлеметсіз бе менің атым айгерім."),
    ("ru", "Москва является столицей россии."),
    ("kk", "Біз жаңа жобаны келесі аптада бастаймыз."),
]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gigaam-e2e")
    audio, turns = speak(TURNS)
    model = build_gigaam_model(folder / "model", [word for turn in turns for word in turn.words], audio=audio)
    return write_wav(folder / "сұхбат.wav", audio), turns, model


@pytest.fixture(scope="module")
def stack(infra, recording, tmp_path_factory):
    _, _, model = recording
    started = start_stack(infra, tmp_path_factory.mktemp("gigaam-stack"), engine="gigaam",
                          gigaam=GigaamSettings(model_dir=model))  # fmt: skip
    yield started
    stop_stack(started)


def wait_for_job(stack, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{stack.http}/api/v1/jobs/{job_id}", headers=AUTH).json()
        if job["state"] in ("SUCCEEDED", "FAILED"):
            return job
        time.sleep(0.2)
    raise TimeoutError(job)


def test_a_mixed_kazakh_russian_recording_reads_right_in_the_transcript_and_exports(stack, recording):
    path, turns, _ = recording
    with path.open("rb") as audio:
        response = httpx.post(f"{stack.http}/api/v1/upload", headers=AUTH, files={"file": (path.name, audio, "audio/wav")},
                              data={"language": "kk,ru"})  # fmt: skip
    assert response.status_code == 202, response.text
    job = wait_for_job(stack, response.json()["job_id"])
    assert job["state"] == "SUCCEEDED", job["error"]
    job_id = job["job_id"]
    # The job says which engine and model wrote it (the test model folder is configured as the default model).
    assert (job["engine"], job["engine_model"]) == ("gigaam", "gigaam-multilingual-ctc")

    transcript = httpx.get(f"{stack.http}/api/v1/jobs/{job_id}/transcript", headers=AUTH).json()
    segments = transcript["segments"]
    assert [(segment["language"], segment["text"]) for segment in segments] == EXPECTED
    assert len({segment["speaker"] for segment in segments}) == 2  # two voices, each keeping its language
    for segment, turn in zip(segments, turns, strict=True):
        for word, planned in zip(segment["words"], turn.words, strict=True):
            assert word["text"].lower().rstrip(".") == planned.text
            assert abs(word["start"] - planned.start_seconds) <= FRAME, (word, planned)
            if len(planned.text) > 1:  # the test model writes a one-letter word on one frame
                assert abs(word["end"] - planned.end_seconds) <= FRAME, (word, planned)
    assert set(transcript["language_shares"]) == {"kk", "ru"}

    def export(fmt: str) -> bytes:
        response = httpx.get(f"{stack.http}/api/v1/jobs/{job_id}/export/{fmt}", headers=AUTH)
        assert response.status_code == 200, response.text
        return response.content

    txt = export("txt").decode()
    for _, text in EXPECTED:
        assert text in txt
    subtitles = export_checks.parse_srt(export("srt"))
    captions = " ".join(subtitle.content.replace("\n", " ") for subtitle in subtitles)
    for _, text in EXPECTED:
        assert text in captions
    assert abs(subtitles[0].start.total_seconds() - turns[0].start) <= 0.3
    document = export_checks.parse_json(export("json"))
    assert [(segment["language"], segment["text"]) for segment in document["segments"]] == EXPECTED
    assert (document["engine"], document["engine_model"]) == ("gigaam", "gigaam-multilingual-ctc")
