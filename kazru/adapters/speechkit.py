"""Yandex SpeechKit v3: the connection (channels, credentials, retries, refusals), forgetting a
recognition, and what SpeechKit bills.

The engine that recognises through SpeechKit is `services/transcriber/engines/speechkit.py`; this part
is what the gateway and the janitor need too (deleting the copy SpeechKit keeps of a job, through
`kazru.adapters.engine_copies`) without importing the transcriber.

What this follows (Yandex Cloud docs, github.com/yandex-cloud/docs, en/speechkit/...):
- concepts/auth.md: `authorization: Api-Key <key>` or `Bearer <IAM token>`; API v3 also takes `x-folder-id`.
- stt-v3/api-ref/grpc/AsyncRecognizer/deleteRecognition.md: results are kept 3 days unless deleted.
- pricing.md: what asynchronous recognition bills (`billed_seconds`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from yandex.cloud.ai.stt.v3 import stt_pb2, stt_service_pb2_grpc
from yandex.cloud.operation import operation_service_pb2_grpc

from kazru.domain import errors
from kazru.settings import SpeechKitSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Big enough for 60 MB of inline content plus the request around it.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 128 * 1024 * 1024),
    ("grpc.max_receive_message_length", 128 * 1024 * 1024),
]

TRANSIENT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}
)


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


class SpeechKitClient:
    """SpeechKit v3 over grpc.aio: channels open on first use. Also the janitor's and the gateway's
    `kazru.domain.external_copies` port (`forget`)."""

    def __init__(self, settings: SpeechKitSettings):
        """`settings` is `Settings.speechkit`."""
        self.settings = settings
        self._recognizer: stt_service_pb2_grpc.AsyncRecognizerStub | None = None
        self._operations: operation_service_pb2_grpc.OperationServiceStub | None = None
        self._channels: list[grpc.aio.Channel] = []

    async def forget(self, external_operation_id: str) -> bool:
        """DeleteRecognition: Yandex keeps results for 3 days unless told otherwise."""
        recognizer, _ = self.stubs()
        request = stt_pb2.DeleteRecognitionRequest(operation_id=external_operation_id)
        metadata = self.metadata()
        try:
            await self.with_retries(
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

    async def with_retries(self, what: str, call: Callable[[float], Awaitable[T]]) -> T:
        """Run `call(timeout)`; retry transient codes with exponential backoff and jitter, map refusals."""
        settings = self.settings
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call(settings.call_timeout_seconds)
            except grpc.aio.AioRpcError as error:
                if denial := self.refusal(error):
                    raise denial from error
                if error.code() not in TRANSIENT_CODES or attempt >= settings.max_attempts:
                    raise
                ceiling = min(settings.retry_max_seconds, settings.retry_initial_seconds * 2 ** (attempt - 1))
                delay = random.uniform(ceiling / 2, ceiling)
                log.warning(
                    "SpeechKit %s failed (%s); retrying in %.2f s", what, error.code().name, delay,
                    extra={"attempt": attempt},
                )  # fmt: skip
                await asyncio.sleep(delay)

    def stubs(
        self,
    ) -> tuple[stt_service_pb2_grpc.AsyncRecognizerStub, operation_service_pb2_grpc.OperationServiceStub]:
        if self._recognizer is None or self._operations is None:
            settings = self.settings
            stt_channel = self._open(settings.endpoint)
            operation_channel = (
                stt_channel
                if settings.operation_endpoint == settings.endpoint
                else self._open(settings.operation_endpoint)
            )
            self._recognizer = stt_service_pb2_grpc.AsyncRecognizerStub(stt_channel)
            self._operations = operation_service_pb2_grpc.OperationServiceStub(operation_channel)
        return self._recognizer, self._operations

    def metadata(self) -> list[tuple[str, str]]:
        settings = self.settings
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

    def refusal(self, error: grpc.aio.AioRpcError) -> errors.KazruError | None:
        """SpeechKit's refusals that no retry can fix, as domain errors naming the cause."""
        credential = "API key" if self.settings.api_key else "IAM token"
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
            return errors.InvalidArgument(
                f"SpeechKit rejected the request: {reason}", code="SPEECHKIT_INVALID_REQUEST"
            )
        return None

    def _open(self, endpoint: str) -> grpc.aio.Channel:
        if self.settings.tls:
            channel = grpc.aio.secure_channel(endpoint, grpc.ssl_channel_credentials(), options=CHANNEL_OPTIONS)
        else:
            channel = grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
        self._channels.append(channel)
        return channel


def describe(error: grpc.aio.AioRpcError) -> str:
    return f"{error.code().name}: {error.details() or 'no details'}"
