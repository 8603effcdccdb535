"""The OpenAI-compatible routes driven by the official `openai` client (nobody here wrote it) against the whole
stack with the real model: every response format on real speech, our speakers in `diarized_json`, a long
upload, and refusals in OpenAI's error shape that leave nothing behind."""

from __future__ import annotations

import subprocess
from datetime import datetime

import httpx
import numpy as np
import openai
import pytest
import srt
import webvtt

from kazru.adapters.audio import SAMPLE_RATE, ffmpeg_exe
from tests.conftest import FIXTURES, REAL_SPEECH_CLIP, REAL_SPEECH_SECONDS, REAL_SPEECH_WORDS
from tests.e2e.conftest import API_KEY, start_stack, stop_stack
from tests.helpers import leftovers, wav_header

AUTH = {"Authorization": f"Bearer {API_KEY}"}
# Longer than OpenAI's own 25 MB cap: 14 minutes of 16 kHz PCM between two real utterances.
LONG_GAP_SECONDS = 14 * 60


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    started = start_stack(infra, tmp_path_factory.mktemp("openai"), reuse_identical_uploads=True)
    yield started
    stop_stack(started)


@pytest.fixture
async def client(stack):
    async with openai.AsyncOpenAI(
        base_url=f"{stack.http}/v1", api_key=API_KEY, max_retries=0, timeout=300
    ) as client:  # fmt: skip
        yield client


def heard_the_words(text: str) -> bool:
    return all(word in text.lower() for word in REAL_SPEECH_WORDS)


async def transcribe(client, path, **options):
    with path.open("rb") as audio:
        return await client.audio.transcriptions.create(file=(path.name, audio), model="whisper-1", **options)


async def test_json_and_text_carry_what_was_said(client):
    result = await transcribe(client, REAL_SPEECH_CLIP)
    assert isinstance(result, openai.types.audio.Transcription)
    assert heard_the_words(result.text), result.text
    assert result.usage.type == "duration" and result.usage.seconds == 5  # 4.56 s, rounded up as OpenAI does
    text = await transcribe(client, REAL_SPEECH_CLIP, response_format="text", language="ru")
    assert isinstance(text, str) and heard_the_words(text) and text.endswith("\n")


async def test_subtitles_parse_with_other_peoples_parsers(client, tmp_path):
    subtitles = await transcribe(client, REAL_SPEECH_CLIP, response_format="srt")
    cues = list(srt.parse(subtitles))
    assert cues and heard_the_words(" ".join(cue.content for cue in cues))
    assert 0 <= cues[0].start.total_seconds() < cues[-1].end.total_seconds() <= REAL_SPEECH_SECONDS + 0.5
    captions = await transcribe(client, REAL_SPEECH_CLIP, response_format="vtt")
    (tmp_path / "captions.vtt").write_text(captions, encoding="utf-8")
    parsed = webvtt.read(str(tmp_path / "captions.vtt"))
    assert heard_the_words(" ".join(caption.text for caption in parsed))


async def test_verbose_json_has_language_duration_segments_and_words(client):
    result = await transcribe(
        client, REAL_SPEECH_CLIP, response_format="verbose_json", timestamp_granularities=["word", "segment"]
    )
    assert isinstance(result, openai.types.audio.TranscriptionVerbose)
    assert result.language == "russian"
    assert result.duration == pytest.approx(REAL_SPEECH_SECONDS, abs=0.05)
    assert result.segments and heard_the_words(" ".join(segment.text for segment in result.segments))
    for segment in result.segments:
        assert 0 <= segment.start < segment.end <= result.duration + 0.05
        assert segment.avg_logprob <= 0 and segment.compression_ratio > 0
        assert segment.model_extra["speaker"] == "A" and segment.model_extra["language"] == "ru"
    words = result.words
    assert heard_the_words(" ".join(word.word for word in words))
    assert all(a.start <= b.start for a, b in zip(words, words[1:], strict=False))
    # Only words asked for: no segments.
    only_words = await transcribe(
        client, REAL_SPEECH_CLIP, response_format="verbose_json", timestamp_granularities=["word"]
    )
    assert only_words.words and only_words.segments is None


async def test_diarized_json_has_our_two_speakers_and_the_job_is_a_normal_one(client, stack):
    conversation = FIXTURES / "conversation_2spk.flac"
    with conversation.open("rb") as audio:
        raw = await client.audio.transcriptions.with_raw_response.create(
            file=(conversation.name, audio), model="gpt-4o-transcribe-diarize", response_format="diarized_json"
        )
    result = raw.parse()
    assert isinstance(result, openai.types.audio.TranscriptionDiarized)
    assert result.task == "transcribe" and result.text
    assert {segment.speaker for segment in result.segments} == {"A", "B"}
    assert all(segment.type == "transcript.text.segment" for segment in result.segments)
    # The answer names its job: listed, exportable and deletable like any other.
    job_id = raw.headers["x-job-id"]
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH) as api:
        job = (await api.get(raw.headers["location"])).json()
        assert job["job_id"] == job_id and job["state"] == "SUCCEEDED" and job["speaker_count"] == 2
        exported = await api.get(f"/api/v1/jobs/{job_id}/export/txt")
        # "S2:", or "S2 (ru):" where the recording's turns were given more than one language
        assert exported.status_code == 200 and "] S2" in exported.text
        assert (await api.delete(f"/api/v1/jobs/{job_id}")).status_code == 200
        assert (await api.get(f"/api/v1/jobs/{job_id}/transcript")).status_code == 410


async def test_a_long_upload_keeps_its_timings_far_into_the_file(client, tmp_path):
    decoded = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(REAL_SPEECH_CLIP), "-f", "s16le", "-ac", "1", "-ar", "16000", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    gap = np.zeros(LONG_GAP_SECONDS * SAMPLE_RATE, dtype=np.int16).tobytes()
    pcm = decoded + gap + decoded
    path = tmp_path / "long interview.wav"
    path.write_bytes(wav_header(len(pcm)) + pcm)
    assert path.stat().st_size > 25 * 1024 * 1024
    result = await transcribe(client, path, response_format="verbose_json", timestamp_granularities=["word"])
    second_start = REAL_SPEECH_SECONDS + LONG_GAP_SECONDS
    assert result.duration == pytest.approx(second_start + REAL_SPEECH_SECONDS, abs=0.1)
    late = [word for word in result.words if word.start >= second_start - 0.5]
    early = [word for word in result.words if word.end <= REAL_SPEECH_SECONDS + 0.5]
    assert heard_the_words(" ".join(word.word for word in early)), result.text
    assert heard_the_words(" ".join(word.word for word in late)), result.text
    assert all(word.end <= result.duration + 0.05 for word in late)


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"These are meeting notes, not a recording.\n" * 200, "NOT_AUDIO"), (b"", "EMPTY_FILE")],
    ids=["not-audio", "empty"],
)  # fmt: skip
async def test_a_bad_file_is_a_bad_request_in_openais_shape_and_nothing_is_left(
    client, tmp_path, store, database, content, code
):
    before = await leftovers(store, database)
    notes = tmp_path / "notes.mp3"
    notes.write_bytes(content)
    # As OpenAI answers a bad file: 400, so its SDK raises BadRequestError (not a bare APIStatusError).
    with pytest.raises(openai.BadRequestError) as refused:
        await transcribe(client, notes)
    assert refused.value.status_code == 400
    error = refused.value.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == "file" and error["code"] == code and error["message"]
    assert await leftovers(store, database) == before


async def test_translation_is_refused_clearly_in_openais_shape(client):
    with pytest.raises(openai.BadRequestError) as refused:
        with REAL_SPEECH_CLIP.open("rb") as audio:
            await client.audio.translations.create(file=("a.flac", audio), model="whisper-1")
    error = refused.value.response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "TRANSLATION_NOT_SUPPORTED")
    assert "translation to English is not offered" in error["message"]


async def test_bad_fields_are_refused_before_the_file_is_stored(client, store, database):
    before = await leftovers(store, database)
    with pytest.raises(openai.BadRequestError) as unknown_model:
        await client.audio.transcriptions.create(file=("a.flac", REAL_SPEECH_CLIP.read_bytes()), model="whisper-9")
    assert unknown_model.value.body["param"] == "model" and unknown_model.value.code == "MODEL_NOT_FOUND"
    with pytest.raises(openai.BadRequestError) as bad_format:
        await transcribe(client, REAL_SPEECH_CLIP, response_format="docx")
    assert bad_format.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as bad_language:
        await transcribe(client, REAL_SPEECH_CLIP, language="xx")
    assert "unsupported language" in bad_language.value.message
    assert await leftovers(store, database) == before


async def test_models_and_keys(client, stack):
    listed = await client.models.list()
    assert {"kazru-stt", "whisper-1"} <= {model.id for model in listed.data}
    assert (await client.models.retrieve("kazru-stt")).owned_by == "kazru"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-5")
    # Outside make run (KAZRU_ANONYMOUS_ACCESS=cookie here), a key must be one of ours.
    async with openai.AsyncOpenAI(base_url=f"{stack.http}/v1", api_key="sk-not-ours", max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError) as refused:
            await stranger.models.list()
    assert refused.value.code == "INVALID_API_KEY"


async def test_an_identical_upload_reuses_the_transcript_without_the_engine(client, stack, tmp_path):
    # A file of its own (so no earlier test's job of these bytes exists): the real clip with a second of silence.
    decoded = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(REAL_SPEECH_CLIP), "-f", "s16le", "-ac", "1", "-ar", "16000", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    pcm = decoded + bytes(2 * SAMPLE_RATE)
    path = tmp_path / "again.wav"
    path.write_bytes(wav_header(len(pcm)) + pcm)
    results, jobs = [], []
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH) as api:
        for _ in range(2):
            with path.open("rb") as audio:
                raw = await client.audio.transcriptions.with_raw_response.create(
                    file=(path.name, audio), model="whisper-1", response_format="verbose_json",
                    timestamp_granularities=["word"],
                )  # fmt: skip
            results.append(raw.parse())
            jobs.append((await api.get(raw.headers["location"])).json())
    first, second = jobs
    assert first["reused_from"] is None and second["reused_from"] == first["job_id"]
    engine_time = datetime.fromisoformat(second["finished_at"]) - datetime.fromisoformat(second["created_at"])
    assert engine_time.total_seconds() < 1.0
    assert results[1].text == results[0].text and results[1].words == results[0].words
    assert second["speaker_count"] == first["speaker_count"] and second["billed_seconds"] == 0
