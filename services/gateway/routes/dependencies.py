"""What a route may ask for, and the browser session it may start.

`create_app` puts the gateway's core, its settings and its authenticator on `app.state`; routes name
what they need with the Annotated types below (FastAPI's dependencies), so a router is a plain module
and a test can build the app with any of the three.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response
from starlette.middleware.base import RequestResponseEndpoint

from kazru.settings import AnonymousAccess, Settings
from services.gateway import csrf
from services.gateway.auth import SESSION_COOKIE, Authenticator, Principal
from services.gateway.core import Gateway

SESSION_MAX_AGE_SECONDS = 30 * 24 * 3600


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
