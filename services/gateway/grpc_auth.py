"""Authentication of the public gRPC API, once for every method: an interceptor that checks
the `authorization` metadata before the method runs and hands the caller to it.

The same Authenticator as the HTTP API (API keys; no browser sessions over gRPC). A refused
caller gets UNAUTHENTICATED with the same error details as everywhere else (kazru.grpc.errors).
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable

import grpc

from kazru.grpc.errors import abort
from kazru.grpc.interceptors import wrap_behaviour
from services.gateway.auth import Authenticator, Principal

_caller: contextvars.ContextVar[Principal] = contextvars.ContextVar("kazru_grpc_caller")


def current_caller() -> Principal:
    """The authenticated caller of the gRPC method running now."""
    return _caller.get()


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call to the services named (health checks and reflection stay open)."""

    def __init__(self, auth: Authenticator, service_names: list[str]):
        self._auth = auth
        self._prefixes = tuple(f"/{name}/" for name in service_names)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(self._prefixes):
            return handler
        authorization = dict(handler_call_details.invocation_metadata or ()).get("authorization")

        async def authenticate(context) -> None:
            # grpc.aio runs each call in a task of its own, so the caller set here is this call's alone.
            try:
                _caller.set(await self._auth.authenticate(authorization, None, browser=False))
            except Exception as error:  # noqa: BLE001 - mapped to a status by the one error mapping
                await abort(context, error)

        def unary_response(behavior: Callable) -> Callable:
            async def checked(request, context):
                await authenticate(context)
                return await behavior(request, context)

            return checked

        def streamed_response(behavior: Callable) -> Callable:
            if not inspect.isasyncgenfunction(behavior):
                return unary_response(behavior)

            async def checked(request, context):
                await authenticate(context)
                async for response in behavior(request, context):
                    yield response

            return checked

        return wrap_behaviour(handler, unary_response, streamed_response)
