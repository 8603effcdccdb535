"""Yandex SpeechKit v3 engine: `AsyncRecognizer.RecognizeFile` → Operation polling → `GetRecognition`.

What this follows (Yandex Cloud docs, github.com/yandex-cloud/docs, en/speechkit/...):
- stt/api/transcribation-api-v3.md and _includes/speechkit/async-recognition-v3.md: RecognizeFile on
  stt.api.cloud.yandex.net:443 returns an Operation; its status is read from the Operation service
  (operation.api.cloud.yandex.net) until `done`; then GetRecognition streams `StreamingResponse`s:
  `final` (words with start/end ms, `languages` estimates) and, with normalisation on,
  `final_refinement.normalized_text` for the same `final_index`.
- concepts/auth.md: `authorization: Api-Key <key>` or `Bearer <IAM token>`; API v3 also takes `x-folder-id`.
- stt-v3/api-ref/grpc/AsyncRecognizer/recognizeFile.md: inline `content` or an Object Storage `uri`;
  raw LINEAR16_PCM (rate, channels) or containers WAV / OGG_OPUS / MP3; a language WHITELIST.
- stt/transcribation.md, _includes/speechkit-limits.md: at most 4 hours of audio; results kept 3 days;
  quotas on recognition requests per hour and on status checks.
Words carry no confidence in v3 (`Word` has text and times only); speakers come from our own diarizer,
so SpeechKit's speaker labelling is not asked for.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
import numpy as np
from yandex.cloud.ai.stt.v3 import stt_pb2, stt_service_pb2, stt_service_pb2_grpc
from yandex.cloud.operation import operation_pb2, operation_service_pb2, operation_service_pb2_grpc

from kazru.adapters.audio import PCM_SAMPLE_BYTES, SAMPLE_RATE, Recording, as_recording, encode_ogg_opus, pcm16_bytes
from kazru.domain import errors
from kazru.domain.recognition import (
    ExternalCopyCallback,
    ProgressCallback,
    Recognition,
    RecognizedSpan,
    RecognizedWord,
    SpeechRegion,
)
from kazru.settings import SpeechKitSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Our ISO 639-1 codes → SpeechKit's (stt/models.md lists kk-KZ, ru-RU, en-US among others).
SPEECHKIT_LANGUAGES = {"kk": "kk-KZ", "ru": "ru-RU", "en": "en-US"}
# Asynchronous recognition accepts at most 4 hours of audio (stt/transcribation.md).
MAX_DURATION_SECONDS = 4 * 3600
# The status-check quota is 5 per second: never poll faster than this.
MIN_STATUS_CHECK_INTERVAL = 0.2
# SpeechKit needs about 10 s per minute of single-channel audio (stt/transcribation.md); used for progress only.
PROCESSING_SECONDS_PER_AUDIO_SECOND = 10 / 60
# Big enough for 60 MB of inline content plus the request around it.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 128 * 1024 * 1024),
    ("grpc.max_receive_message_length", 128 * 1024 * 1024),
]

TRANSIENT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}
)
# google.rpc.Code numbers, for an Operation's `error`.
_RPC_INVALID_ARGUMENT = 3


def billed_seconds(duration_seconds: float, channels: int = 1) -> float:
    """What SpeechKit bills for asynchronous recognition of this audio.

    en/speechkit/pricing.md, "Asynchronous recognition": the unit is one second of two-channel audio,
    rounded up; the channel count is rounded up to an even number; at least 15 s per pair of channels
    (1 s mono → 15 s, 15.5 s stereo → 16 s, 15.5 s on 4 channels → 32 s). The per-15-second units of
    the same page apply to synchronous and streaming recognition only.
    """
    channel_pairs = math.ceil(channels / 2)
    return float(max(15, math.ceil(duration_seconds)) * channel_pairs)


class SpeechKitUnavailable(Exception):
    """SpeechKit could not take the request even after retries: the job is tried again later."""


@dataclass(frozen=True)
class _EncodedAudio:
    content: bytes
    audio_format: stt_pb2.AudioFormatOptions
    # For logs and stage names: "LINEAR16_PCM" or "OGG_OPUS".
    label: str


class SpeechKitEngine:
    """The SpeechEngine protocol over SpeechKit v3 (grpc.aio); channels open on first use."""

    name = "speechkit"

    def __init__(self, settings: SpeechKitSettings, ffmpeg_path: str = ""):
        """`settings` is `Settings.speechkit`; `ffmpeg_path` is `Settings.ffmpeg_path` (re-encoding to Opus)."""
        self._settings = settings
        self._ffmpeg_path = ffmpeg_path
        self._recognizer: stt_service_pb2_grpc.AsyncRecognizerStub | None = None
        self._operations: operation_service_pb2_grpc.OperationServiceStub | None = None
        self._channels: list[grpc.aio.Channel] = []

    # -- public API -------------------------------------------------------------------------------

    async def recognize(
        self,
        audio: np.ndarray | Recording,
        languages: Sequence[str],
        regions: Sequence[SpeechRegion],
        on_progress: ProgressCallback,
        on_external_copy: ExternalCopyCallback | None = None,
    ) -> Recognition:
        del regions  # SpeechKit finds speech itself; our diarizer labels speakers afterwards
        settings = self._settings
        language_codes = _speechkit_languages(languages)
        recording = as_recording(audio)
        duration = recording.duration
        if duration > MAX_DURATION_SECONDS:
            raise errors.InvalidArgument(
                f"the recording lasts {duration / 3600:.2f} h; SpeechKit recognises at most 4 h per file",
                code="RECORDING_TOO_LONG_FOR_SPEECHKIT",
                details={"duration_seconds": f"{duration:.1f}", "limit_seconds": str(MAX_DURATION_SECONDS)},
            )
        if recording.sample_count == 0:
            on_progress(1.0)
            return Recognition(engine=self.name, spans=[])

        stages: dict[str, float] = {}
        started = time.monotonic()
        encoded = await self._encode(recording, duration)
        stages["encode"] = time.monotonic() - started
        metadata = self._metadata()
        request = stt_pb2.RecognizeFileRequest(
            content=encoded.content,
            recognition_model=stt_pb2.RecognitionModelOptions(
                model=settings.model,
                audio_format=encoded.audio_format,
                text_normalization=stt_pb2.TextNormalizationOptions(
                    text_normalization=(
                        stt_pb2.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
                        if settings.text_normalization
                        else stt_pb2.TextNormalizationOptions.TEXT_NORMALIZATION_DISABLED
                    ),
                    # Punctuation and capitals, as the local engine writes.
                    literature_text=settings.text_normalization,
                ),
                language_restriction=stt_pb2.LanguageRestrictionOptions(
                    restriction_type=stt_pb2.LanguageRestrictionOptions.WHITELIST,
                    language_code=language_codes,
                ),
                # Ignored by RecognizeFile (it always has the whole file) but says what we mean.
                audio_processing_type=stt_pb2.RecognitionModelOptions.FULL_DATA,
            ),
        )
        recognizer, operations = self._stubs()

        upload_started = time.monotonic()
        try:
            operation = await self._with_retries(
                "RecognizeFile",
                lambda timeout: recognizer.RecognizeFile(request, metadata=metadata, timeout=timeout),
            )
        except grpc.aio.AioRpcError as error:
            raise SpeechKitUnavailable(f"SpeechKit did not accept the recording: {_describe(error)}") from error
        stages["upload"] = time.monotonic() - upload_started
        operation_id = operation.id
        log.info(
            "SpeechKit recognition started",
            extra={
                "operation_id": operation_id,
                # Yandex support finds a request by this id (x-client-request-id).
                "client_request_id": dict(metadata)["x-client-request-id"],
                "audio_format": encoded.label,
                "bytes": len(encoded.content),
            },
        )

        # From here on Yandex holds a copy: every failure deletes it, and fails the job rather than
        # retrying it (a retry would upload and bill the recording again).
        deadline = started + settings.timeout_seconds + duration * settings.timeout_per_audio_second
        try:
            if on_external_copy is not None:
                await on_external_copy(operation_id)
            async with asyncio.timeout_at(_loop_time_at(deadline)):
                waiting_started = time.monotonic()
                await self._wait_until_done(operations, operation, metadata, duration, on_progress)
                stages["wait"] = time.monotonic() - waiting_started
                fetch_started = time.monotonic()
                responses = await self._fetch_result(recognizer, operation_id, metadata)
                stages["fetch"] = time.monotonic() - fetch_started
        except BaseException as failure:
            await self._forget_quietly(operation_id)
            if isinstance(failure, TimeoutError):
                raise errors.Unavailable(
                    f"SpeechKit did not finish recognising within {deadline - started:.0f} s "
                    f"(operation {operation_id})",
                    code="SPEECHKIT_TIMEOUT",
                    details={"operation_id": operation_id},
                ) from failure
            raise

        spans = spans_from_responses(responses, languages)
        on_progress(1.0)
        return Recognition(
            engine=self.name,
            spans=spans,
            billed_seconds=billed_seconds(duration),
            external_operation_id=operation_id,
            stage_seconds=stages,
        )

    async def forget(self, external_operation_id: str) -> bool:
        """DeleteRecognition: Yandex keeps results for 3 days unless told otherwise. Also the
        janitor's and the gateway's `kazru.domain.external_copies` port."""
        recognizer, _ = self._stubs()
        request = stt_pb2.DeleteRecognitionRequest(operation_id=external_operation_id)
        metadata = self._metadata()
        try:
            await self._with_retries(
                "DeleteRecognition",
                lambda timeout: recognizer.DeleteRecognition(request, metadata=metadata, timeout=timeout),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:  # already gone: what we wanted
                raise
        return True

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        self._recognizer = self._operations = None

    # -- steps ------------------------------------------------------------------------------------

    async def _encode(self, recording: Recording, duration: float) -> _EncodedAudio:
        settings = self._settings
        if recording.sample_count * PCM_SAMPLE_BYTES <= settings.max_inline_bytes:
            return _EncodedAudio(
                content=pcm16_bytes(recording.read(0, recording.sample_count)),
                audio_format=stt_pb2.AudioFormatOptions(
                    raw_audio=stt_pb2.RawAudio(
                        audio_encoding=stt_pb2.RawAudio.LINEAR16_PCM,
                        sample_rate_hertz=SAMPLE_RATE,
                        audio_channel_count=1,
                    )
                ),
                label="LINEAR16_PCM",
            )
        ogg = await encode_ogg_opus(recording, settings.opus_bitrate, self._ffmpeg_path)
        if len(ogg) > settings.max_inline_bytes:
            raise errors.InvalidArgument(
                f"the recording ({duration / 60:.0f} min) does not fit SpeechKit's "
                f"{settings.max_inline_bytes / 1e6:.0f} MB request even as Opus",
                code="RECORDING_TOO_LARGE_FOR_SPEECHKIT",
            )
        return _EncodedAudio(
            content=ogg,
            audio_format=stt_pb2.AudioFormatOptions(
                container_audio=stt_pb2.ContainerAudio(container_audio_type=stt_pb2.ContainerAudio.OGG_OPUS)
            ),
            label="OGG_OPUS",
        )

    async def _wait_until_done(
        self,
        operations: operation_service_pb2_grpc.OperationServiceStub,
        operation: operation_pb2.Operation,
        metadata: list[tuple[str, str]],
        duration: float,
        on_progress: ProgressCallback,
    ) -> None:
        """Poll the Operation service with a growing interval, never faster than the quota allows."""
        settings = self._settings
        expected_seconds = max(5.0, duration * PROCESSING_SECONDS_PER_AUDIO_SECOND)
        interval = max(MIN_STATUS_CHECK_INTERVAL, settings.poll_initial_seconds)
        started = time.monotonic()
        request = operation_service_pb2.GetOperationRequest(operation_id=operation.id)
        while not operation.done:
            await asyncio.sleep(interval)
            interval = min(max(settings.poll_max_seconds, MIN_STATUS_CHECK_INTERVAL), interval * 1.5)
            try:
                operation = await operations.Get(request, metadata=metadata, timeout=settings.call_timeout_seconds)
            except grpc.aio.AioRpcError as error:
                code = error.code()
                if code in TRANSIENT_CODES:  # a missed check: the overall deadline bounds these
                    log.warning("SpeechKit status check failed; checking again", extra={"code": code.name})
                    continue
                if refusal := _refusal(error, self._credential_name()):
                    raise refusal from error
                raise errors.Internal(
                    f"SpeechKit lost recognition {operation.id}: {_describe(error)}",
                    code="SPEECHKIT_OPERATION_LOST",
                ) from error
            on_progress(min(0.95, (time.monotonic() - started) / expected_seconds))
        if operation.HasField("error"):
            status = operation.error
            message = f"SpeechKit could not recognise the recording: {status.message or 'no reason given'}"
            if status.code == _RPC_INVALID_ARGUMENT:
                raise errors.InvalidArgument(message, code="SPEECHKIT_REJECTED_AUDIO")
            raise errors.Internal(message, code="SPEECHKIT_RECOGNITION_FAILED", details={"rpc_code": status.code})

    async def _fetch_result(
        self,
        recognizer: stt_service_pb2_grpc.AsyncRecognizerStub,
        operation_id: str,
        metadata: list[tuple[str, str]],
    ) -> list[stt_pb2.StreamingResponse]:
        """The whole result stream, or an error: a stream cut short is read again from the start, never kept."""
        request = stt_service_pb2.GetRecognitionRequest(operation_id=operation_id)
        received: list[stt_pb2.StreamingResponse] = []

        async def read_all(timeout: float) -> list[stt_pb2.StreamingResponse]:
            received.clear()
            async for response in recognizer.GetRecognition(request, metadata=metadata, timeout=timeout):
                received.append(response)
            return list(received)

        try:
            responses = await self._with_retries("GetRecognition", read_all)
        except grpc.aio.AioRpcError as error:
            raise errors.Internal(
                f"SpeechKit's result stream for operation {operation_id} failed after "
                f"{len(received)} messages: {_describe(error)}",
                code="SPEECHKIT_RESULT_FAILED",
            ) from error
        if not responses:
            raise errors.Internal(
                f"SpeechKit returned an empty result for operation {operation_id}", code="SPEECHKIT_EMPTY_RESULT"
            )
        return responses

    async def _forget_quietly(self, operation_id: str) -> None:
        try:
            await asyncio.shield(self.forget(operation_id))
        except Exception:  # noqa: BLE001 - the original failure matters more; Yandex drops it in 3 days anyway
            log.warning("could not delete SpeechKit recognition %s", operation_id, exc_info=True)

    # -- plumbing ---------------------------------------------------------------------------------

    async def _with_retries(self, what: str, call: Callable[[float], Awaitable[T]]) -> T:
        """Run `call(timeout)`; retry transient codes with exponential backoff and jitter, map refusals."""
        settings = self._settings
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call(settings.call_timeout_seconds)
            except grpc.aio.AioRpcError as error:
                if refusal := _refusal(error, self._credential_name()):
                    raise refusal from error
                if error.code() not in TRANSIENT_CODES or attempt >= settings.max_attempts:
                    raise
                ceiling = min(settings.retry_max_seconds, settings.retry_initial_seconds * 2 ** (attempt - 1))
                delay = random.uniform(ceiling / 2, ceiling)
                log.warning(
                    "SpeechKit %s failed (%s); retrying in %.2f s", what, error.code().name, delay,
                    extra={"attempt": attempt},
                )  # fmt: skip
                await asyncio.sleep(delay)

    def _stubs(
        self,
    ) -> tuple[stt_service_pb2_grpc.AsyncRecognizerStub, operation_service_pb2_grpc.OperationServiceStub]:
        if self._recognizer is None or self._operations is None:
            settings = self._settings
            stt_channel = self._open(settings.endpoint)
            operation_channel = (
                stt_channel
                if settings.operation_endpoint == settings.endpoint
                else self._open(settings.operation_endpoint)
            )
            self._recognizer = stt_service_pb2_grpc.AsyncRecognizerStub(stt_channel)
            self._operations = operation_service_pb2_grpc.OperationServiceStub(operation_channel)
        return self._recognizer, self._operations

    def _open(self, endpoint: str) -> grpc.aio.Channel:
        if self._settings.tls:
            channel = grpc.aio.secure_channel(endpoint, grpc.ssl_channel_credentials(), options=CHANNEL_OPTIONS)
        else:
            channel = grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
        self._channels.append(channel)
        return channel

    def _metadata(self) -> list[tuple[str, str]]:
        settings = self._settings
        if settings.api_key:
            authorization = f"Api-Key {settings.api_key.get_secret_value()}"
        elif settings.iam_token:
            authorization = f"Bearer {settings.iam_token.get_secret_value()}"
        else:
            raise errors.FailedPrecondition(
                "SpeechKit needs an API key or an IAM token", code="SPEECHKIT_NO_CREDENTIALS"
            )
        metadata = [("authorization", authorization), ("x-client-request-id", str(uuid.uuid4()))]
        if settings.folder_id:
            metadata.append(("x-folder-id", settings.folder_id))
        return metadata

    def _credential_name(self) -> str:
        return "API key" if self._settings.api_key else "IAM token"


def _speechkit_languages(languages: Sequence[str]) -> list[str]:
    if not languages:
        raise errors.InvalidArgument("no language allowed for the job", code="NO_LANGUAGE")
    unknown = [language for language in languages if language not in SPEECHKIT_LANGUAGES]
    if unknown:
        raise errors.InvalidArgument(
            f"SpeechKit is not set up for language(s) {', '.join(unknown)}; use {', '.join(SPEECHKIT_LANGUAGES)}",
            code="LANGUAGE_NOT_SUPPORTED",
        )
    return [SPEECHKIT_LANGUAGES[language] for language in languages]


def _refusal(error: grpc.aio.AioRpcError, credential: str) -> errors.KazruError | None:
    """SpeechKit's refusals that no retry can fix, as domain errors naming the cause."""
    code, reason = error.code(), error.details() or "no reason given"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return errors.Unauthenticated(
            f"SpeechKit refused the {credential} ({reason}); check KAZRU_SPEECHKIT_"
            f"{'API_KEY' if credential == 'API key' else 'IAM_TOKEN'}",
            code="SPEECHKIT_UNAUTHENTICATED",
        )
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return errors.PermissionDenied(
            f"SpeechKit denied access ({reason}); the service account needs the ai.speechkit-stt.user role "
            "in the folder (KAZRU_SPEECHKIT_FOLDER_ID)",
            code="SPEECHKIT_PERMISSION_DENIED",
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return errors.InvalidArgument(f"SpeechKit rejected the request: {reason}", code="SPEECHKIT_INVALID_REQUEST")
    return None


def _describe(error: grpc.aio.AioRpcError) -> str:
    return f"{error.code().name}: {error.details() or 'no details'}"


def _loop_time_at(monotonic_deadline: float) -> float:
    """A time.monotonic() deadline on the event loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


def spans_from_responses(
    responses: Sequence[stt_pb2.StreamingResponse], languages: Sequence[str]
) -> list[RecognizedSpan]:
    """Utterances (`final`, replaced by its `final_refinement` when there is one) as spans, in time order.

    Language comes from the utterance's language estimates, restricted to the allowed set; SpeechKit
    gives no per-word confidence, so words carry the utterance's (1.0 when SpeechKit leaves it unset).
    """
    finals: dict[tuple[str, int], stt_pb2.Alternative] = {}
    refinements: dict[tuple[str, int], stt_pb2.Alternative] = {}
    order: list[tuple[str, int]] = []
    for response in responses:
        event = response.WhichOneof("Event")
        if event == "final":
            update, index = response.final, response.audio_cursors.final_index
            target = finals
        elif event == "final_refinement":
            update, index = response.final_refinement.normalized_text, response.final_refinement.final_index
            target = refinements
        else:
            continue
        if not update.alternatives:
            continue
        key = (update.channel_tag or response.channel_tag, index)
        if key not in finals and key not in refinements:
            order.append(key)
        target[key] = update.alternatives[0]

    spans = []
    for key in order:
        final, refined = finals.get(key), refinements.get(key)
        shown = refined if refined is not None and (refined.words or refined.text) else final
        if shown is None:
            continue
        estimates = list((final.languages if final is not None else []) or shown.languages)
        confidence = (final or shown).confidence
        words = _words(shown, confidence if confidence > 0 else 1.0)
        if not words:
            continue
        spans.append(
            RecognizedSpan(
                start=words[0].start,
                end=max(word.end for word in words),
                language=_language(estimates, languages),
                words=words,
            )
        )
    spans.sort(key=lambda span: span.start)
    return spans


def _words(alternative: stt_pb2.Alternative, probability: float) -> tuple[RecognizedWord, ...]:
    words = [
        RecognizedWord(
            start=word.start_time_ms / 1000,
            end=max(word.start_time_ms, word.end_time_ms) / 1000,
            text=word.text.strip(),
            probability=probability,
        )
        for word in alternative.words
        if word.text.strip()
    ]
    if words or not alternative.text.strip():
        return tuple(words)
    # Text without word timings: spread the words evenly over the utterance rather than lose them.
    tokens = alternative.text.split()
    start, end = alternative.start_time_ms / 1000, max(alternative.start_time_ms, alternative.end_time_ms) / 1000
    step = (end - start) / len(tokens)
    return tuple(
        RecognizedWord(start + i * step, start + (i + 1) * step, token, probability) for i, token in enumerate(tokens)
    )


def _language(estimates: Sequence[stt_pb2.LanguageEstimation], allowed: Sequence[str]) -> str:
    for estimate in sorted(estimates, key=lambda estimate: estimate.probability, reverse=True):
        language = estimate.language_code.split("-")[0].lower()
        if language in allowed:
            return language
    return allowed[0]
