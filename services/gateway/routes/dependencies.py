"""What a route may ask for, and the browser session it may start.

`create_app` puts the gateway's core, its settings and its authenticator on `app.state`; routes name
what they need with the Annotated types below (FastAPI's dependencies), so a router is a plain module
and a test can build the app with any of the three.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.middleware.base import RequestResponseEndpoint

from kazru.domain import errors
from kazru.settings import AnonymousAccess, Settings
from services.gateway import csrf
from services.gateway.auth import SESSION_COOKIE, Authenticator, Principal
from services.gateway.core import Gateway

SESSION_MAX_AGE_SECONDS = 30 * 24 * 3600
BodyModel = TypeVar("BodyModel", bound=BaseModel)


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _authenticator(request: Request) -> Authenticator:
    return request.app.state.auth


GatewayDep = Annotated[Gateway, Depends(_gateway)]
SettingsDep = Annotated[Settings, Depends(_settings)]
AuthenticatorDep = Annotated[Authenticator, Depends(_authenticator)]


def browser_session(request: Request) -> str | None:
    """The session cookie this request acts as, where browsers get sessions."""
    if request.app.state.settings.anonymous_access is not AnonymousAccess.COOKIE:
        return None
    return request.cookies.get(SESSION_COOKIE)


async def _caller(request: Request, auth: AuthenticatorDep) -> Principal:
    """An API key, or the browser's session (whose writes must pass the CSRF rules), or a new session."""
    authorization = request.headers.get("authorization")
    if not authorization and request.method not in csrf.SAFE_METHODS:
        csrf.check_browser_write(request.headers, browser_session(request), request.headers.get("host", ""))
    found = await auth.authenticate(authorization, request.cookies.get(SESSION_COOKIE), browser=True)
    if found.new_session_token:
        request.state.new_session_token = found.new_session_token
    return found


Caller = Annotated[Principal, Depends(_caller)]


def body_too_large(limit: int) -> errors.KazruError:
    return errors.UploadTooLarge(
        f"the request body is larger than {limit} bytes", code="BODY_TOO_LARGE", details={"max_bytes": limit}
    )


async def read_capped_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to pass `limit`: from Content-Length before a
    byte is read, else (chunked) by counting as it streams in. What is left unread the server discards."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise body_too_large(limit)
    return bytes(body)


def json_body(model: type[BodyModel]) -> Any:
    """A route's JSON body as `model`, as a dependency of the caller: FastAPI reads a declared body before
    any dependency, so a body it read would be taken in whole before a wrong key is refused. Read here, it
    comes after authentication and within KAZRU_MAX_JSON_BODY_BYTES. Routes describe it in the OpenAPI
    document with openapi_docs.json_request_body."""

    async def read(request: Request, caller: Caller, settings: SettingsDep) -> BodyModel:
        raw = await read_capped_body(request, settings.max_json_body_bytes)
        try:
            data = json.loads(raw.decode("utf-8"))  # RFC 8259: JSON between systems is UTF-8
        except ValueError:  # UnicodeDecodeError included
            raise errors.InvalidArgument("the body is not valid JSON", code="INVALID_REQUEST") from None
        try:
            return model.model_validate(data)
        except ValidationError as error:
            # As FastAPI reports a declared body's errors: located under "body".
            located = [{**problem, "loc": ("body", *problem["loc"])} for problem in error.errors(include_url=False)]
            raise RequestValidationError(located) from None

    return Depends(read)


async def session_cookies(request: Request, call_next: RequestResponseEndpoint) -> Response:
    """Middleware: set the cookie of a session `_caller` started, and the session's CSRF cookie where the
    browser lacks it or holds a stale one."""
    response = await call_next(request)
    token = getattr(request.state, "new_session_token", None)
    secure = request.url.scheme == "https"
    if token:
        response.set_cookie(
            SESSION_COOKIE, token, max_age=SESSION_MAX_AGE_SECONDS, httponly=True, samesite="lax", secure=secure,
            path="/",
        )  # fmt: skip
    session = token or browser_session(request)
    if session and request.cookies.get(csrf.CSRF_COOKIE) != csrf.token_for(session):
        # Not HttpOnly: the page's script reads it and sends it back as X-CSRF-Token.
        response.set_cookie(
            csrf.CSRF_COOKIE, csrf.token_for(session), max_age=SESSION_MAX_AGE_SECONDS, httponly=False,
            samesite="strict", secure=secure, path="/",
        )  # fmt: skip
    return response
