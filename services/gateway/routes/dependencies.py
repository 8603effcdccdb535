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
from services.gateway.auth import KEY_COOKIE, SESSION_COOKIE, Authenticator, Principal
from services.gateway.core import Gateway

SESSION_MAX_AGE_SECONDS = 30 * 24 * 3600
# A browser signed in with an API key stays so for a day (the life of what it uploads), then asks again.
KEY_COOKIE_MAX_AGE_SECONDS = 24 * 3600
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


def browser_credential(request: Request) -> str | None:
    """The cookie a browser's request acts as: the API key it was signed in with, else its session."""
    return request.cookies.get(KEY_COOKIE) or browser_session(request)


def check_browser_write(request: Request) -> None:
    """A write made on the strength of the browser's cookie must pass the CSRF rules (csrf.py)."""
    csrf.check_browser_write(request.headers, browser_credential(request), request.headers.get("host", ""))


def sign_in_browser(request: Request, api_key: str | None) -> None:
    """Have `session_cookies` keep `api_key` in the browser's key cookie (None: remove the cookie)."""
    request.state.signed_in_key = api_key or ""


async def identify_caller(request: Request, auth: AuthenticatorDep) -> Principal:
    """An API key, or the browser's key or session cookie (whose writes must pass the CSRF rules), or a new
    session."""
    authorization = request.headers.get("authorization")
    if not authorization and request.method not in csrf.SAFE_METHODS:
        check_browser_write(request)
    key_cookie = request.cookies.get(KEY_COOKIE)
    try:
        found = await auth.authenticate(authorization, request.cookies.get(SESSION_COOKIE), True, key_cookie)
    except errors.Unauthenticated:
        if key_cookie and not authorization:
            sign_in_browser(request, None)  # a revoked key: the page asks again (or goes on anonymously)
        raise
    if found.new_session_token:
        request.state.new_session_token = found.new_session_token
    return found


Caller = Annotated[Principal, Depends(identify_caller)]


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
        return await read_json(request, settings.max_json_body_bytes, model)

    return Depends(read)


async def read_json(request: Request, limit: int, model: type[BodyModel]) -> BodyModel:
    """The body as `model`, within `limit` bytes; errors as FastAPI reports a declared body's."""
    raw = await read_capped_body(request, limit)
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


async def session_cookies(request: Request, call_next: RequestResponseEndpoint) -> Response:
    """Middleware: set the cookie of a session `identify_caller` started, set or remove the key cookie a sign-in or
    sign-out asked for, and give the CSRF cookie of the credential the browser now acts as where it lacks
    it or holds a stale one."""
    response = await call_next(request)
    token = getattr(request.state, "new_session_token", None)
    signed_in_key = getattr(request.state, "signed_in_key", None)  # None: unchanged; "": signed out
    secure = request.url.scheme == "https"
    if token:
        response.set_cookie(
            SESSION_COOKIE, token, max_age=SESSION_MAX_AGE_SECONDS, httponly=True, samesite="lax", secure=secure,
            path="/",
        )  # fmt: skip
    if signed_in_key:
        # Strict: no other site's page or link ever makes the browser send it.
        response.set_cookie(
            KEY_COOKIE, signed_in_key, max_age=KEY_COOKIE_MAX_AGE_SECONDS, httponly=True, samesite="strict",
            secure=secure, path="/",
        )  # fmt: skip
    elif signed_in_key == "" and KEY_COOKIE in request.cookies:
        response.delete_cookie(KEY_COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
    key = request.cookies.get(KEY_COOKIE) if signed_in_key is None else signed_in_key
    credential = key or token or browser_session(request)
    if credential and request.cookies.get(csrf.CSRF_COOKIE) != csrf.token_for(credential):
        # Not HttpOnly: the page's script reads it and sends it back as X-CSRF-Token.
        response.set_cookie(
            csrf.CSRF_COOKIE, csrf.token_for(credential), max_age=SESSION_MAX_AGE_SECONDS, httponly=False,
            samesite="strict", secure=secure, path="/",
        )  # fmt: skip
    elif not credential and csrf.CSRF_COOKIE in request.cookies:
        response.delete_cookie(csrf.CSRF_COOKIE, path="/", secure=secure, samesite="strict")
    return response
