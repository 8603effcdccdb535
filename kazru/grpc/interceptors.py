"""gRPC interceptors: request metrics and trace context for every grpc.aio server and channel.

(OpenTelemetry's gRPC instrumentation exists only as pre-releases, so this is done by hand:
the W3C `traceparent` travels in the call's metadata.)
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable

import grpc
from google.protobuf.message import DecodeError

from kazru.domain import errors
from kazru.grpc import errors as grpc_errors
from kazru.observability import metrics, tracing

# Health checks and reflection are counted but not traced: probes would bury the real traces.
_UNTRACED_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def _status_name(context: grpc.aio.ServicerContext, fallback: grpc.StatusCode) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return fallback.name if code is None else str(code)


class ServerTelemetry(grpc.aio.ServerInterceptor):
    """Counts and times every call by method and status, and runs it in a server span whose
    parent is the caller's `traceparent` (when tracing is on)."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        traced = tracing.enabled() and not method.startswith(_UNTRACED_PREFIXES)

        def span(context: grpc.aio.ServicerContext):
            if not traced:
                return contextlib.nullcontext()
            parent = tracing.extract(dict(context.invocation_metadata() or ()))
            return tracing.span(method.lstrip("/"), parent=parent, kind=tracing.trace.SpanKind.SERVER)

        def finish(started: float, context, error: BaseException | None) -> None:
            if error is None:
                code = _status_name(context, grpc.StatusCode.OK)
            elif isinstance(error, grpc.aio.AbortError):
                code = _status_name(context, grpc.StatusCode.UNKNOWN)
            else:  # an exception the handler did not map, or the call cancelled (CancelledError)
                code = (grpc.StatusCode.UNKNOWN if isinstance(error, Exception) else grpc.StatusCode.CANCELLED).name
            metrics.observe_request("grpc", method, code, started)

        def unary_response(behavior: Callable) -> Callable:
            async def observed(request, context):
                started = time.perf_counter()
                with span(context):
                    try:
                        response = await behavior(request, context)
                    except BaseException as error:
                        finish(started, context, error)
                        raise
                finish(started, context, None)
                return response

            return observed

        def streamed_response(behavior: Callable) -> Callable:
            if not inspect.isasyncgenfunction(behavior):
                return unary_response(behavior)  # writes with context.write(), returns None

            async def observed(request, context):
                started = time.perf_counter()
                with span(context):
                    try:
                        async for response in behavior(request, context):
                            yield response
                    except BaseException as error:
                        finish(started, context, error)
                        raise
                finish(started, context, None)

            return observed

        return wrap_behaviour(handler, unary_response, streamed_response)


class _Undecodable:
    """What a request deserializer returns for bytes that are not the message (instead of raising, which
    grpc.aio reports to the client as UNKNOWN with the exception's class and text)."""


UNDECODABLE = _Undecodable()


class RefuseUndecodableRequests(grpc.aio.ServerInterceptor):
    """A request that does not parse (a string field that is not UTF-8, truncated bytes) is refused with
    INVALID_ARGUMENT through the one error mapping, never answered with protobuf's own exception text."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer

        def tolerant_parse(data: bytes):
            try:
                return parse(data)
            except DecodeError:
                return UNDECODABLE

        async def refuse(context) -> None:
            await grpc_errors.abort(
                context, errors.InvalidArgument("the request is not a valid message (text must be UTF-8)",
                                                code="MALFORMED_REQUEST"),
            )  # fmt: skip

        async def checked_stream(requests, context):
            async for request in requests:
                if request is UNDECODABLE:
                    await refuse(context)
                yield request

        def unary_response(behavior: Callable) -> Callable:
            async def checked(request, context):
                if request is UNDECODABLE:
                    await refuse(context)
                if hasattr(request, "__aiter__"):
                    request = checked_stream(request, context)
                return await behavior(request, context)

            return checked

        def streamed_response(behavior: Callable) -> Callable:
            async def checked(request, context):
                if request is UNDECODABLE:
                    await refuse(context)
                if hasattr(request, "__aiter__"):
                    request = checked_stream(request, context)
                async for response in behavior(request, context):
                    yield response

            return checked

        return wrap_behaviour(handler._replace(request_deserializer=tolerant_parse), unary_response, streamed_response)


def wrap_behaviour(
    handler: grpc.RpcMethodHandler, unary_response: Callable, streamed_response: Callable
) -> grpc.RpcMethodHandler:
    """The handler with its behaviour wrapped, for a server interceptor: `unary_response(behaviour)`
    for methods that answer once, `streamed_response(behaviour)` for those that stream answers."""
    if handler.unary_unary:
        return handler._replace(unary_unary=unary_response(handler.unary_unary))
    if handler.stream_unary:
        return handler._replace(stream_unary=unary_response(handler.stream_unary))
    if handler.unary_stream:
        return handler._replace(unary_stream=streamed_response(handler.unary_stream))
    return handler._replace(stream_stream=streamed_response(handler.stream_stream))


def _with_trace_context(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    carrier = tracing.inject({})
    if not carrier:
        return details
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    for key, value in carrier.items():
        metadata[key] = value
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(_with_trace_context(client_call_details), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(_with_trace_context(client_call_details), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(_with_trace_context(client_call_details), request_iterator)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(_with_trace_context(client_call_details), request_iterator)


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that put the current trace context into every call's metadata; none when
    tracing is off (channels are created after `configure_tracing`)."""
    if not tracing.enabled():
        return []
    return [_UnaryUnary(), _UnaryStream(), _StreamUnary(), _StreamStream()]
