"""The real SpeechKit v3 client against a local gRPC server built from the same `yandexcloud` stubs.

No network to Yandex: the fake (tests/fakes/speechkit_server.py) checks the credentials, folder,
model, language whitelist and audio it receives, and answers as scripted per test.
"""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from pydantic import ValidationError

from kazru.adapters.audio import SAMPLE_RATE
from kazru.adapters.speechkit import SpeechKitUnavailable, billed_seconds
from kazru.domain import errors
from kazru.settings import Settings, SpeechKitSettings
from services.transcriber.engines.speechkit import SpeechKitEngine
from tests.fakes.speechkit_server import FakeSpeechKit, Scenario, Utterance

API_KEY = "AQVN-test-key"
IAM_TOKEN = "t1.test-iam-token"
FOLDER = "b1gfaketestfolder"

RUSSIAN = Utterance(
    words=[("погода", 0.52, 0.98), ("в", 1.0, 1.05), ("алматы", 1.1, 1.7)],
    languages=[("ru-RU", 0.93), ("kk-KZ", 0.07)],
    confidence=0.87,
    normalized_words=[("Погода", 0.52, 0.98), ("в", 1.0, 1.05), ("Алматы.", 1.1, 1.7)],
)
KAZAKH = Utterance(
    words=[("сәлеметсіз", 2.3, 2.9), ("бе", 2.95, 3.1)],
    languages=[("ru-RU", 0.2), ("kk-KZ", 0.8)],
)
# SpeechKit guesses a language the job does not allow: the first allowed one is used.
ENGLISH_GUESS = Utterance(words=[("окей", 3.5, 3.8)], languages=[("en-US", 0.9)])


def engine_settings(address: str, **overrides) -> Settings:
    """Settings with the SpeechKit engine pointed at the fake; `overrides` are SpeechKitSettings fields."""
    values = dict(
        api_key=API_KEY,
        endpoint=address,
        operation_endpoint=address,
        tls=False,
        poll_initial_seconds=0.2,
        poll_max_seconds=0.5,
        retry_initial_seconds=0.01,
        retry_max_seconds=0.05,
        timeout_seconds=10.0,
        call_timeout_seconds=60.0,
    )
    values.update(overrides)
    return Settings(engine="speechkit", speechkit=SpeechKitSettings(**values))


def noise(seconds: float, level: float = 0.01) -> np.ndarray:
    return (np.random.default_rng(7).standard_normal(int(seconds * SAMPLE_RATE)) * level).astype(np.float32)


@pytest.fixture
async def fake():
    server = FakeSpeechKit(api_key=API_KEY, scenario=Scenario(utterances=[RUSSIAN, KAZAKH, ENGLISH_GUESS]))
    await server.start()
    yield server
    await server.stop()


async def recognize(settings: Settings, samples: np.ndarray, languages=("kk", "ru"), progress=None):
    engine = SpeechKitEngine(settings.speechkit, ffmpeg_path=settings.ffmpeg_path)
    try:
        return await engine.recognize(samples, list(languages), [], (progress if progress is not None else []).append)
    finally:
        await engine.close()


async def test_recognition_maps_utterances_words_languages_and_billing(fake: FakeSpeechKit):
    samples = noise(37.2)
    progress: list[float] = []
    result = await recognize(engine_settings(fake.address), samples, progress=progress)

    assert fake.problems == []
    # What SpeechKit received.
    (request,) = fake.requests
    model = request.recognition_model
    assert model.model == "general"
    assert list(model.language_restriction.language_code) == ["kk-KZ", "ru-RU"]
    assert model.language_restriction.restriction_type == model.language_restriction.WHITELIST
    assert model.audio_format.raw_audio.sample_rate_hertz == 16000
    assert (fake.audio[0].kind, fake.audio[0].channels) == ("LINEAR16_PCM", 1)
    assert len(request.content) == 2 * len(samples)
    decoded = np.frombuffer(request.content, dtype="<i2").astype(np.float32) / 32767
    assert np.max(np.abs(decoded - samples)) < 1e-4
    assert fake.metadata[0]["authorization"] == f"Api-Key {API_KEY}"
    assert "x-folder-id" not in fake.metadata[0]

    # What we made of the answer.
    assert result.engine == "speechkit"
    assert result.external_operation_id and result.external_operation_id.startswith("e03fake")
    assert [span.language for span in result.spans] == ["ru", "kk", "kk"]
    russian = result.spans[0]
    assert [word.text for word in russian.words] == ["Погода", "в", "Алматы."]  # the normalised refinement
    assert (russian.start, russian.end) == (0.52, 1.7)
    assert russian.words[2].start == 1.1 and russian.words[2].end == 1.7
    assert all(word.probability == pytest.approx(0.87) for word in russian.words)
    assert [word.text for word in result.spans[1].words] == ["сәлеметсіз", "бе"]
    assert all(word.probability == 1.0 for word in result.spans[1].words)  # SpeechKit left confidence unset
    assert result.billed_seconds == 38.0
    assert set(result.stage_seconds) == {"encode", "upload", "wait", "fetch"}
    assert progress[-1] == 1.0


async def test_without_normalisation_the_raw_finals_are_used(fake: FakeSpeechKit):
    fake.scenario.refinements = False
    result = await recognize(engine_settings(fake.address, text_normalization=False), noise(5))
    normalization = fake.requests[0].recognition_model.text_normalization
    assert normalization.text_normalization == normalization.TEXT_NORMALIZATION_DISABLED
    assert [word.text for word in result.spans[0].words] == ["погода", "в", "алматы"]
    assert [span.language for span in result.spans] == ["ru", "kk", "kk"]


async def test_iam_token_and_folder_are_sent():
    server = FakeSpeechKit(iam_token=IAM_TOKEN, folder_id=FOLDER, scenario=Scenario(utterances=[RUSSIAN]))
    await server.start()
    try:
        settings = engine_settings(server.address, api_key=None, iam_token=IAM_TOKEN, folder_id=FOLDER)
        result = await recognize(settings, noise(2))
    finally:
        await server.stop()
    assert server.problems == []
    assert [span.language for span in result.spans] == ["ru"]
    # Every call (RecognizeFile, status checks, GetRecognition) carried both headers.
    assert server.metadata and all(
        m["authorization"] == f"Bearer {IAM_TOKEN}" and m["x-folder-id"] == FOLDER for m in server.metadata
    )


async def test_a_wrong_api_key_fails_at_once_naming_it(fake: FakeSpeechKit):
    with pytest.raises(errors.Unauthenticated, match="SpeechKit refused the API key") as caught:
        await recognize(engine_settings(fake.address, api_key="revoked-key"), noise(1))
    assert caught.value.code == "SPEECHKIT_UNAUTHENTICATED"
    assert fake.recognize_calls == 1 and fake.status_check_times == []


@pytest.mark.parametrize(
    ("code", "error", "text"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated, "refused the API key"),
        (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied, "ai.speechkit-stt.user"),
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument, "rejected the request"),
    ],
)
async def test_refusals_fail_at_once_without_retry(fake: FakeSpeechKit, code, error, text):
    fake.scenario.recognize_errors = [code, code, code]
    with pytest.raises(error, match=text):
        await recognize(engine_settings(fake.address), noise(1))
    assert fake.recognize_calls == 1
    assert fake.status_check_times == [] and fake.result_calls == 0


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED]
)
async def test_transient_errors_are_retried_then_succeed(fake: FakeSpeechKit, code):
    fake.scenario.recognize_errors = [code, code]
    fake.scenario.status_errors = [code]
    fake.scenario.result_errors = [code]
    result = await recognize(engine_settings(fake.address), noise(2))
    assert fake.recognize_calls == 3
    assert len(fake.requests) == 1  # one recognition started, so billed once
    assert fake.result_calls == 2
    assert len(result.spans) == 3 and fake.problems == []


async def test_persistent_unavailability_gives_up_after_the_attempts(fake: FakeSpeechKit):
    fake.scenario.recognize_errors = [grpc.StatusCode.UNAVAILABLE] * 10
    with pytest.raises(SpeechKitUnavailable, match="UNAVAILABLE"):
        await recognize(engine_settings(fake.address, max_attempts=3), noise(1))
    assert fake.recognize_calls == 3


async def test_status_checks_stay_within_five_per_second(fake: FakeSpeechKit):
    fake.scenario.processing_seconds = 2.5
    progress: list[float] = []
    # Start at the fastest rate the quota allows (5 checks per second) and stay within it.
    settings = engine_settings(fake.address, poll_initial_seconds=0.2, poll_max_seconds=0.3)
    result = await recognize(settings, noise(30), progress=progress)
    checks = fake.status_check_times
    assert len(checks) >= 5
    gaps = np.diff(checks)
    assert gaps.min() >= 0.19
    # In any one-second window, at most 5 checks.
    assert max(sum(1 for t in checks if start <= t < start + 1.0) for start in checks) <= 5
    assert len(result.spans) == 3
    waiting = [p for p in progress if p < 1.0]
    assert waiting and waiting == sorted(waiting) and 0 < waiting[-1] <= 0.95
    assert progress[-1] == 1.0


async def test_an_operation_that_never_finishes_times_out_and_is_deleted(fake: FakeSpeechKit):
    fake.scenario.never_finishes = True
    settings = engine_settings(fake.address, timeout_seconds=1.5, timeout_per_audio_second=0)
    started = time.monotonic()
    with pytest.raises(errors.Unavailable, match="did not finish") as caught:
        await recognize(settings, noise(2))
    assert caught.value.code == "SPEECHKIT_TIMEOUT"
    assert time.monotonic() - started < 4
    assert fake.result_calls == 0
    assert len(fake.deleted) == 1  # Yandex does not keep the recording we gave up on


async def test_an_empty_result_is_an_error(fake: FakeSpeechKit):
    fake.scenario.empty_result = True
    with pytest.raises(errors.Internal, match="empty result") as caught:
        await recognize(engine_settings(fake.address), noise(2))
    assert caught.value.code == "SPEECHKIT_EMPTY_RESULT"
    assert len(fake.deleted) == 1


async def test_an_error_mid_stream_is_an_error_not_a_partial_result(fake: FakeSpeechKit):
    fake.scenario.stream_error_after = 2
    with pytest.raises(errors.Internal, match="failed after 2 messages: INTERNAL") as caught:
        await recognize(engine_settings(fake.address), noise(2))
    assert caught.value.code == "SPEECHKIT_RESULT_FAILED"
    assert fake.result_calls == 1


async def test_a_transient_break_mid_stream_reads_the_whole_result_again(fake: FakeSpeechKit):
    fake.scenario.stream_error_after = 4
    fake.scenario.stream_error_code = grpc.StatusCode.UNAVAILABLE
    fake.scenario.stream_breaks = 1
    result = await recognize(engine_settings(fake.address), noise(2))
    assert fake.result_calls == 2
    assert [span.language for span in result.spans] == ["ru", "kk", "kk"]  # nothing doubled or lost


async def test_a_failed_operation_reports_speechkits_reason(fake: FakeSpeechKit):
    fake.scenario.operation_error = (3, "audio could not be decoded")
    with pytest.raises(errors.InvalidArgument, match="audio could not be decoded"):
        await recognize(engine_settings(fake.address), noise(2))


@pytest.mark.slow  # encodes 35 minutes of audio with libopus (~10-20 s on 2 cores)
async def test_pcm_over_60_mb_is_sent_as_mono_ogg_opus(fake: FakeSpeechKit):
    minutes = 35  # 35 min of 16-bit 16 kHz PCM is 67.2 MB
    samples = noise(minutes * 60, level=0.003)
    result = await recognize(engine_settings(fake.address), samples)
    assert fake.problems == []
    (audio,) = fake.audio
    assert audio.kind == "OGG_OPUS" and audio.channels == 1
    assert audio.size <= 60_000_000 and fake.requests[0].content[:4] == b"OggS"
    assert audio.duration_seconds == pytest.approx(minutes * 60, abs=0.1)
    assert result.billed_seconds == minutes * 60
    assert "encode" in result.stage_seconds


async def test_recordings_over_four_hours_are_refused_before_calling_yandex(fake: FakeSpeechKit):
    # A zero-stride view: 4 h 1 s of samples without allocating them.
    samples = np.broadcast_to(np.float32(0), ((4 * 3600 + 1) * SAMPLE_RATE,))
    with pytest.raises(errors.InvalidArgument, match="at most 4 h") as caught:
        await recognize(engine_settings(fake.address), samples)
    assert caught.value.code == "RECORDING_TOO_LONG_FOR_SPEECHKIT"
    assert fake.recognize_calls == 0 and fake.metadata == []


async def test_forget_deletes_the_recognition_and_tolerates_it_being_gone(fake: FakeSpeechKit):
    settings = engine_settings(fake.address)
    engine = SpeechKitEngine(settings.speechkit, ffmpeg_path=settings.ffmpeg_path)
    try:
        result = await engine.recognize(noise(2), ["kk", "ru"], [], lambda fraction: None)
        await engine.forget(result.external_operation_id)
        await engine.forget(result.external_operation_id)  # NOT_FOUND the second time: fine
    finally:
        await engine.close()
    assert fake.deleted == [result.external_operation_id]


def test_billing_follows_the_asynchronous_pricing_rules():
    # Examples from Yandex's pricing page (asynchronous recognition).
    assert billed_seconds(1, channels=1) == 15
    assert billed_seconds(1, channels=2) == 15
    assert billed_seconds(1, channels=3) == 30
    assert billed_seconds(15.5, channels=2) == 16
    assert billed_seconds(15.5, channels=4) == 32
    assert billed_seconds(37.2) == 38


def test_settings_need_exactly_one_credential_and_a_folder_with_an_iam_token():
    with pytest.raises(ValidationError, match="exactly one of"):
        Settings(engine="speechkit")
    with pytest.raises(ValidationError, match="exactly one of"):
        Settings(engine="speechkit", speechkit=SpeechKitSettings(api_key="a", iam_token="b"))
    with pytest.raises(ValidationError, match="FOLDER_ID"):
        Settings(engine="speechkit", speechkit=SpeechKitSettings(iam_token="b"))
    assert Settings(engine="speechkit", speechkit=SpeechKitSettings(api_key="a")).speechkit.model == "general"
    assert Settings(engine="whisper").speechkit.api_key is None
