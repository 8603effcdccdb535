"""A local stand-in for Yandex SpeechKit v3, built from the same `yandexcloud` stubs as the client.

It serves `speechkit.stt.v3.AsyncRecognizer` and `yandex.cloud.operation.OperationService` on a free
port and behaves like the real service where our client depends on it: RecognizeFile answers an
Operation, OperationService.Get says when it is done, GetRecognition streams `final` and
`final_refinement` messages per utterance, DeleteRecognition forgets it.

It CHECKS what it receives, as the real one would refuse it: the authorization header (API key or
IAM token), the folder id, the model, the language whitelist, the audio format, and that the content
matches the declared format (PCM length a whole number of samples; Ogg Opus pages with an OpusHead and
a duration read from the last page's granule position). A failed check answers UNAUTHENTICATED,
PERMISSION_DENIED or INVALID_ARGUMENT and is recorded in `problems`.

A `Scenario` scripts the answers: utterances, errors for the first N calls of each method, a slow or
never-finishing operation, an error mid-stream, an empty result, a failed operation.
"""

from __future__ import annotations

import itertools
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from google.protobuf import empty_pb2
from google.rpc import status_pb2
from yandex.cloud.ai.stt.v3 import stt_pb2, stt_service_pb2, stt_service_pb2_grpc
from yandex.cloud.operation import operation_pb2, operation_service_pb2, operation_service_pb2_grpc

# What the real service says it accepts (stt/models.md; RawAudio sample rates in formats.md).
KNOWN_LANGUAGES = frozenset({"auto", "kk-KZ", "ru-RU", "en-US", "de-DE", "uz-UZ", "tr-TR", "fr-FR", "es-ES"})
PCM_SAMPLE_RATES = frozenset({8000, 16000, 48000})
MAX_CONTENT_BYTES = 60_000_000
OPUS_GRANULE_RATE = 48_000


@dataclass(frozen=True)
class Utterance:
    """One recognised utterance: words as (text, start s, end s), language estimates as (code, probability)."""

    words: list[tuple[str, float, float]]
    languages: list[tuple[str, float]] = field(default_factory=list)
    confidence: float = 0.0
    # What `final_refinement` (normalised text) says instead of the raw words, if given.
    normalized_words: list[tuple[str, float, float]] | None = None
    channel_tag: str = "0"


@dataclass
class Scenario:
    utterances: list[Utterance] = field(default_factory=list)
    # The operation is done this long after RecognizeFile (unless it never finishes).
    processing_seconds: float = 0.0
    never_finishes: bool = False
    # The first calls of each method answer these codes, in order, before behaving normally.
    recognize_errors: list[grpc.StatusCode] = field(default_factory=list)
    status_errors: list[grpc.StatusCode] = field(default_factory=list)
    result_errors: list[grpc.StatusCode] = field(default_factory=list)
    # GetRecognition breaks after this many messages, `stream_breaks` times (None: never).
    stream_error_after: int | None = None
    stream_error_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    stream_breaks: int = 1_000_000
    empty_result: bool = False
    # Whether `final_refinement` messages follow the finals (SpeechKit sends them when normalisation is on).
    refinements: bool = True
    # The operation ends with this google.rpc.Status (code, message) instead of a result.
    operation_error: tuple[int, str] | None = None


@dataclass
class ReceivedAudio:
    kind: str  # "LINEAR16_PCM" or "OGG_OPUS" (or another container name)
    sample_rate: int
    channels: int
    size: int
    duration_seconds: float


@dataclass
class _Operation:
    id: str
    created: float
    done_at: float | None


class FakeSpeechKit(stt_service_pb2_grpc.AsyncRecognizerServicer, operation_service_pb2_grpc.OperationServiceServicer):
    def __init__(
        self,
        *,
        api_key: str | None = None,
        iam_token: str | None = None,
        folder_id: str = "",
        model: str = "general",
        scenario: Scenario | None = None,
    ):
        self.expected_authorization = f"Api-Key {api_key}" if api_key else f"Bearer {iam_token}"
        self.expected_folder_id = folder_id
        self.expected_model = model
        self.scenario = scenario or Scenario()
        self._ids = itertools.count(1)
        self._operations: dict[str, _Operation] = {}
        self._server: grpc.aio.Server | None = None
        self.address = ""
        # What was received.
        self.problems: list[str] = []
        self.recognize_calls = 0
        self.requests: list[stt_pb2.RecognizeFileRequest] = []
        self.audio: list[ReceivedAudio] = []
        self.metadata: list[dict[str, str]] = []
        self.status_check_times: list[float] = []
        self.result_calls = 0
        self.deleted: list[str] = []

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> str:
        self._server = grpc.aio.server(options=[("grpc.max_receive_message_length", 128 * 1024 * 1024)])
        stt_service_pb2_grpc.add_AsyncRecognizerServicer_to_server(self, self._server)
        operation_service_pb2_grpc.add_OperationServiceServicer_to_server(self, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)

    def operation_ids(self) -> set[str]:
        """The recognitions held here now (not yet deleted)."""
        return set(self._operations)

    def leave_a_finished_recognition(self) -> str:
        """A recognition already held here, as one left by a worker that died before storing it."""
        operation_id = f"e03fake{next(self._ids):013d}"
        now = time.monotonic()
        self._operations[operation_id] = _Operation(operation_id, now, now)
        return operation_id

    # -- AsyncRecognizer --------------------------------------------------------------------------

    async def RecognizeFile(  # noqa: N802
        self, request: stt_pb2.RecognizeFileRequest, context
    ) -> operation_pb2.Operation:
        self.recognize_calls += 1
        await self._check_credentials(context)
        if self.scenario.recognize_errors:
            await context.abort(self.scenario.recognize_errors.pop(0), "scripted RecognizeFile failure")
        await self._check_request(request, context)
        self.requests.append(request)
        operation_id = f"e03fake{next(self._ids):013d}"
        now = time.monotonic()
        done_at = None if self.scenario.never_finishes else now + self.scenario.processing_seconds
        self._operations[operation_id] = _Operation(operation_id, now, done_at)
        return self._operation_message(self._operations[operation_id])

    async def GetRecognition(  # noqa: N802
        self, request: stt_service_pb2.GetRecognitionRequest, context
    ) -> AsyncIterator[stt_pb2.StreamingResponse]:
        self.result_calls += 1
        await self._check_credentials(context)
        operation = self._operations.get(request.operation_id)
        if operation is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"operation {request.operation_id} not found")
        if not self._is_done(operation):
            # A client should ask only after the Operation service said `done`.
            await self._refuse(context, grpc.StatusCode.FAILED_PRECONDITION, "operation is not finished yet")
        if self.scenario.result_errors:
            await context.abort(self.scenario.result_errors.pop(0), "scripted GetRecognition failure")
        if self.scenario.empty_result:
            return
        responses = list(self.responses())
        breaks_now = self.scenario.stream_error_after is not None and self.scenario.stream_breaks > 0
        for sent, response in enumerate(responses):
            if breaks_now and sent == self.scenario.stream_error_after:
                self.scenario.stream_breaks -= 1
                await context.abort(self.scenario.stream_error_code, "scripted failure in the middle of the stream")
            yield response

    async def DeleteRecognition(  # noqa: N802
        self, request: stt_pb2.DeleteRecognitionRequest, context
    ) -> empty_pb2.Empty:
        await self._check_credentials(context)
        if self._operations.pop(request.operation_id, None) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"operation {request.operation_id} not found")
        self.deleted.append(request.operation_id)
        return empty_pb2.Empty()

    # -- OperationService -------------------------------------------------------------------------

    async def Get(  # noqa: N802
        self, request: operation_service_pb2.GetOperationRequest, context
    ) -> operation_pb2.Operation:
        self.status_check_times.append(time.monotonic())
        await self._check_credentials(context)
        if self.scenario.status_errors:
            await context.abort(self.scenario.status_errors.pop(0), "scripted status check failure")
        operation = self._operations.get(request.operation_id)
        if operation is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"operation {request.operation_id} not found")
        return self._operation_message(operation)

    async def Cancel(self, request, context):  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not used by the client")

    # -- answers ----------------------------------------------------------------------------------

    def responses(self) -> list[stt_pb2.StreamingResponse]:
        """The result stream as SpeechKit writes it: per utterance a final, its refinement, an end of utterance."""
        messages = []
        for index, utterance in enumerate(self.scenario.utterances):
            end_ms = _ms(max(end for _, _, end in utterance.words))
            cursors = stt_pb2.AudioCursors(final_index=index, final_time_ms=end_ms, received_data_ms=end_ms)
            final = _alternative(utterance.words, utterance)
            messages.append(
                stt_pb2.StreamingResponse(
                    audio_cursors=cursors,
                    final=stt_pb2.AlternativeUpdate(alternatives=[final], channel_tag=utterance.channel_tag),
                    channel_tag=utterance.channel_tag,
                )
            )
            refined = _alternative(utterance.normalized_words or utterance.words, utterance, with_languages=False)
            if self.scenario.refinements:
                messages.append(
                    stt_pb2.StreamingResponse(
                        audio_cursors=cursors,
                        final_refinement=stt_pb2.FinalRefinement(
                            final_index=index,
                            normalized_text=stt_pb2.AlternativeUpdate(
                                alternatives=[refined], channel_tag=utterance.channel_tag
                            ),
                        ),
                        channel_tag=utterance.channel_tag,
                    )
                )
            messages.append(
                stt_pb2.StreamingResponse(
                    audio_cursors=cursors,
                    eou_update=stt_pb2.EouUpdate(time_ms=end_ms),
                    channel_tag=utterance.channel_tag,
                )
            )
        return messages

    def _is_done(self, operation: _Operation) -> bool:
        return operation.done_at is not None and time.monotonic() >= operation.done_at

    def _operation_message(self, operation: _Operation) -> operation_pb2.Operation:
        message = operation_pb2.Operation(
            id=operation.id, description="STT v3 async recognition", created_by="fake-service-account"
        )
        if self._is_done(operation):
            message.done = True
            if self.scenario.operation_error is not None:
                code, text = self.scenario.operation_error
                message.error.CopyFrom(status_pb2.Status(code=code, message=text))
            else:
                message.response.Pack(empty_pb2.Empty())
        return message

    # -- checks -----------------------------------------------------------------------------------

    async def _refuse(self, context, code: grpc.StatusCode, problem: str) -> None:
        self.problems.append(problem)
        await context.abort(code, problem)

    async def _check_credentials(self, context) -> None:
        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        self.metadata.append(metadata)
        authorization = metadata.get("authorization")
        if authorization != self.expected_authorization:
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, f"unknown credentials: {authorization!r}")
        if self.expected_folder_id and metadata.get("x-folder-id") != self.expected_folder_id:
            await self._refuse(
                context, grpc.StatusCode.PERMISSION_DENIED, f"no access to folder {metadata.get('x-folder-id')!r}"
            )

    async def _check_request(self, request: stt_pb2.RecognizeFileRequest, context) -> None:
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        if request.WhichOneof("AudioSource") != "content":
            await self._refuse(context, invalid, "expected inline content (a uri must point to Object Storage)")
        if len(request.content) > MAX_CONTENT_BYTES:
            await self._refuse(context, invalid, f"content of {len(request.content)} bytes is over 60 MB")
        model = request.recognition_model
        if model.model != self.expected_model:
            await self._refuse(context, invalid, f"model {model.model!r}, expected {self.expected_model!r}")
        restriction = model.language_restriction
        if restriction.restriction_type != stt_pb2.LanguageRestrictionOptions.WHITELIST:
            await self._refuse(context, invalid, "expected a WHITELIST language restriction")
        if not restriction.language_code or not set(restriction.language_code) <= KNOWN_LANGUAGES:
            await self._refuse(context, invalid, f"bad language codes {list(restriction.language_code)}")
        audio = await self._check_audio(request, context)
        self.audio.append(audio)

    async def _check_audio(self, request: stt_pb2.RecognizeFileRequest, context) -> ReceivedAudio:
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        audio_format = request.recognition_model.audio_format
        content = request.content
        kind = audio_format.WhichOneof("AudioFormat")
        if kind == "raw_audio":
            raw = audio_format.raw_audio
            channels = raw.audio_channel_count or 1
            if raw.audio_encoding != stt_pb2.RawAudio.LINEAR16_PCM:
                await self._refuse(context, invalid, "raw audio must be LINEAR16_PCM")
            if raw.sample_rate_hertz not in PCM_SAMPLE_RATES:
                await self._refuse(context, invalid, f"unsupported sample rate {raw.sample_rate_hertz}")
            if not content or len(content) % (2 * channels):
                await self._refuse(context, invalid, f"{len(content)} bytes are not whole 16-bit frames")
            duration = len(content) / (2 * channels * raw.sample_rate_hertz)
            return ReceivedAudio("LINEAR16_PCM", raw.sample_rate_hertz, channels, len(content), duration)
        if kind == "container_audio":
            container = audio_format.container_audio.container_audio_type
            if container != stt_pb2.ContainerAudio.OGG_OPUS:
                await self._refuse(context, invalid, f"the client only sends OGG_OPUS containers, got {container}")
            duration = _ogg_opus_duration(content)
            if duration is None:
                await self._refuse(context, invalid, "content is not Ogg Opus (no OggS page with an OpusHead)")
            return ReceivedAudio("OGG_OPUS", OPUS_GRANULE_RATE, 1, len(content), duration)
        await self._refuse(context, invalid, "no audio format given")
        raise AssertionError("unreachable")


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _alternative(
    words: list[tuple[str, float, float]], utterance: Utterance, with_languages: bool = True
) -> stt_pb2.Alternative:
    return stt_pb2.Alternative(
        words=[stt_pb2.Word(text=text, start_time_ms=_ms(start), end_time_ms=_ms(end)) for text, start, end in words],
        text=" ".join(text for text, _, _ in words),
        start_time_ms=_ms(words[0][1]),
        end_time_ms=_ms(words[-1][2]),
        confidence=utterance.confidence,
        languages=(
            [stt_pb2.LanguageEstimation(language_code=code, probability=p) for code, p in utterance.languages]
            if with_languages
            else []
        ),
    )


def _ogg_opus_duration(content: bytes) -> float | None:
    """Seconds of an Ogg Opus stream from its last page's granule position, or None if it is not one."""
    if not content.startswith(b"OggS") or b"OpusHead" not in content[:200]:
        return None
    last_page = content.rfind(b"OggS")
    (granule,) = struct.unpack_from("<q", content, last_page + 6)
    # OpusHead: magic(8) version(1) channels(1) pre-skip(2, little-endian)
    head = content.find(b"OpusHead")
    (pre_skip,) = struct.unpack_from("<H", content, head + 10)
    return max(0, granule - pre_skip) / OPUS_GRANULE_RATE
