"""Yandex SpeechKit v3 engine: `AsyncRecognizer.RecognizeFile` → Operation polling → `GetRecognition`.

The connection (credentials, retries, refusals) and forgetting a recognition live in
`kazru.adapters.speechkit`, which the gateway and the janitor use too.

What this follows (Yandex Cloud docs, github.com/yandex-cloud/docs, en/speechkit/...):
- stt/api/transcribation-api-v3.md and _includes/speechkit/async-recognition-v3.md: RecognizeFile on
  stt.api.cloud.yandex.net:443 returns an Operation; its status is read from the Operation service
  (operation.api.cloud.yandex.net) until `done`; then GetRecognition streams `StreamingResponse`s:
  `final` (words with start/end ms, `languages` estimates) and, with normalisation on,
  `final_refinement.normalized_text` for the same `final_index`.
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
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np
from yandex.cloud.ai.stt.v3 import stt_pb2, stt_service_pb2, stt_service_pb2_grpc
from yandex.cloud.operation import operation_pb2, operation_service_pb2, operation_service_pb2_grpc

from kazru.adapters.audio import PCM_SAMPLE_BYTES, SAMPLE_RATE, as_recording, encode_ogg_opus, pcm16_bytes
from kazru.adapters.speechkit import TRANSIENT_CODES, SpeechKitClient, SpeechKitUnavailable, billed_seconds, describe
from kazru.domain import errors
from kazru.domain.recognition import (
    ExternalCopyCallback,
    ProgressCallback,
    Recognition,
    RecognizedSpan,
    RecognizedWord,
    RecordedAudio,
    SpeechRegion,
)
from kazru.settings import SpeechKitSettings

log = logging.getLogger(__name__)

# Our ISO 639-1 codes → SpeechKit's (stt/models.md lists kk-KZ, ru-RU, en-US among others).
SPEECHKIT_LANGUAGES = {"kk": "kk-KZ", "ru": "ru-RU", "en": "en-US"}
# Asynchronous recognition accepts at most 4 hours of audio (stt/transcribation.md).
MAX_DURATION_SECONDS = 4 * 3600
# The status-check quota is 5 per second: never poll faster than this.
MIN_STATUS_CHECK_INTERVAL = 0.2
# SpeechKit needs about 10 s per minute of single-channel audio (stt/transcribation.md); used for progress only.
PROCESSING_SECONDS_PER_AUDIO_SECOND = 10 / 60
# google.rpc.Code numbers, for an Operation's `error`.
_RPC_INVALID_ARGUMENT = 3


@dataclass(frozen=True)
class _EncodedAudio:
    content: bytes
    audio_format: stt_pb2.AudioFormatOptions
    # For logs and stage names: "LINEAR16_PCM" or "OGG_OPUS".
    label: str


class SpeechKitEngine:
    """The SpeechEngine protocol over SpeechKit v3, through `SpeechKitClient` (channels open on first use)."""

    name = "speechkit"

    def __init__(self, settings: SpeechKitSettings, ffmpeg_path: str = ""):
        """`settings` is `Settings.speechkit`; `ffmpeg_path` is `Settings.ffmpeg_path` (re-encoding to Opus)."""
        self._settings = settings
        self._ffmpeg_path = ffmpeg_path
        self._client = SpeechKitClient(settings)
        self.model_name = f"speechkit/{settings.model}"

    # -- public API -------------------------------------------------------------------------------

    async def recognize(
        self,
        audio: np.ndarray | RecordedAudio,
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
            return Recognition(engine=self.name, model=self.model_name, spans=[])

        stages: dict[str, float] = {}
        started = time.monotonic()
        encoded = await self._encode(recording, duration)
        stages["encode"] = time.monotonic() - started
        metadata = self._client.metadata()
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
        recognizer, operations = self._client.stubs()

        upload_started = time.monotonic()
        try:
            operation = await self._client.with_retries(
                "RecognizeFile",
                lambda timeout: recognizer.RecognizeFile(request, metadata=metadata, timeout=timeout),
            )
        except grpc.aio.AioRpcError as error:
            raise SpeechKitUnavailable(f"SpeechKit did not accept the recording: {describe(error)}") from error
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
            model=self.model_name,
            spans=spans,
            billed_seconds=billed_seconds(duration),
            external_operation_id=operation_id,
            stage_seconds=stages,
        )

    async def forget(self, external_operation_id: str) -> bool:
        """Delete the recognition Yandex keeps (DeleteRecognition)."""
        return await self._client.forget(external_operation_id)

    async def close(self) -> None:
        await self._client.close()

    # -- steps ------------------------------------------------------------------------------------

    async def _encode(self, recording: RecordedAudio, duration: float) -> _EncodedAudio:
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
                if refusal := self._client.refusal(error):
                    raise refusal from error
                raise errors.Internal(
                    f"SpeechKit lost recognition {operation.id}: {describe(error)}",
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
            responses = await self._client.with_retries("GetRecognition", read_all)
        except grpc.aio.AioRpcError as error:
            raise errors.Internal(
                f"SpeechKit's result stream for operation {operation_id} failed after "
                f"{len(received)} messages: {describe(error)}",
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
