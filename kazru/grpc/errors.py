"""The one mapping between domain errors and gRPC status.

Servers decorate their handlers with `@grpc_errors.translate`; a KazruError
becomes a canonical status code with `google.rpc.Status` details holding an
`ErrorInfo` (reason = the error's code). Clients call `from_rpc_error` to get
the same domain error back, so the gateway can answer HTTP with the code the
internal service chose.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from kazru.adapters import outages
from kazru.domain import errors
from kazru.domain.errors import KazruError, Kind

log = logging.getLogger(__name__)

ERROR_DOMAIN = "kazru.stt"

GRPC_CODE: dict[Kind, grpc.StatusCode] = {
    Kind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Kind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Kind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Kind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Kind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    # AIP-193 has no "gone": the resource existed and is now permanently absent.
    Kind.GONE: grpc.StatusCode.NOT_FOUND,
    Kind.TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    Kind.UNSUPPORTED_MEDIA: grpc.StatusCode.INVALID_ARGUMENT,
    Kind.UNPROCESSABLE: grpc.StatusCode.INVALID_ARGUMENT,
    Kind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Kind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Kind.INTERNAL: grpc.StatusCode.INTERNAL,
}

# ErrorInfo metadata key that carries the Kind, so kinds sharing a gRPC code
# (GONE vs NOT_FOUND, TOO_LARGE vs INVALID_ARGUMENT) survive a round trip.
_KIND_KEY = "kind"


def to_status(error: KazruError) -> grpc.Status:
    code = GRPC_CODE[error.kind]
    info = error_details_pb2.ErrorInfo(
        reason=error.code, domain=ERROR_DOMAIN, metadata={**error.details, _KIND_KEY: error.kind.value}
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    details = [detail]
    if errors.RETRY_AFTER_DETAIL in error.details:
        # AIP-193: a client that honours RetryInfo waits this long before trying again.
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay={"seconds": int(error.details[errors.RETRY_AFTER_DETAIL])}))
        details.append(retry)
    status = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    return rpc_status.to_status(status)


def from_rpc_error(error: grpc.RpcError) -> KazruError:
    """Rebuild the domain error from a failed call's rich status."""
    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                metadata = dict(info.metadata)
                kind = Kind(metadata.pop(_KIND_KEY, Kind.INTERNAL.value))
                return errors.BY_KIND[kind](status.message, code=info.reason, details=metadata)
    code = error.code() if hasattr(error, "code") else None
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return errors.Unavailable("an internal service is unavailable, try again shortly", code="SERVICE_UNAVAILABLE")
    return errors.Internal("internal error")


async def abort(context: grpc.aio.ServicerContext, error: Exception) -> None:
    """End the call with the status that stands for `error` (the one error mapping)."""
    if not isinstance(error, KazruError):
        error = outages.from_infrastructure(error) or error
    if isinstance(error, KazruError):
        log.info("request refused", extra={"error_code": error.code, "kind": error.kind.value})
        await context.abort_with_status(to_status(error))
    log.exception("unhandled error in gRPC handler")
    await context.abort_with_status(to_status(errors.Internal("internal error")))


def translate(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a grpc.aio servicer method so domain errors become rich statuses."""

    if inspect.isasyncgenfunction(handler):

        @functools.wraps(handler)
        async def stream_wrapper(self, request, context):
            try:
                async for item in handler(self, request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as error:  # noqa: BLE001 - mapped, never swallowed
                await abort(context, error)

        return stream_wrapper

    @functools.wraps(handler)
    async def unary_wrapper(self, request, context):
        try:
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:  # noqa: BLE001 - mapped, never swallowed
            await abort(context, error)

    return unary_wrapper
