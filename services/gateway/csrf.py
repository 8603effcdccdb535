"""CSRF protection for the writes a browser makes on the strength of its session cookie.

A write (POST, PUT, PATCH, DELETE) without an Authorization header must
1. come from our own page: a browser sends `Origin` with every cross-origin write (forms included) and
   `Sec-Fetch-Site` too; either naming another site refuses the write. curl and scripts send neither.
2. when it carries the session cookie (KAZRU_ANONYMOUS_ACCESS=cookie), carry `X-CSRF-Token` equal to the
   token of that session. The page reads the token from the `kazru_csrf` cookie, which is readable by
   script but only by the gateway's own origin. The token is derived from the session (a signed double
   submit), so a cookie planted by a sibling host cannot pair with the victim's session.
Requests with an API key are exempt: a browser never attaches an Authorization header on its own.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import urlsplit

from kazru.domain import errors

CSRF_COOKIE = "kazru_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values of requests that did not come from another site's page.
OWN_SITE_FETCHES = frozenset({"same-origin", "none"})


def token_for(session_token: str) -> str:
    """The CSRF token of a session; it reveals nothing of the session token (which stays HttpOnly)."""
    return hashlib.sha256(b"kazru-csrf\0" + session_token.encode()).hexdigest()


def check_browser_write(headers: Mapping[str, str], session_cookie: str | None, own_host: str) -> None:
    """Raise PermissionDenied unless this credential-less write comes from our own page.

    `session_cookie`: the session the write would act as (None when the cookie is absent or not used);
    `own_host`: the Host the request was sent to. Only hosts are compared: behind a TLS proxy the
    gateway sees http while the browser's Origin says https.
    """
    origin = headers.get("origin")
    if origin is not None and urlsplit(origin).netloc.lower() != own_host.lower():
        raise errors.PermissionDenied(
            "cross-origin writes are refused; call the API with an API key", code="CSRF_ORIGIN_REFUSED"
        )
    if headers.get("sec-fetch-site", "same-origin") not in OWN_SITE_FETCHES:
        raise errors.PermissionDenied(
            "cross-site writes are refused; call the API with an API key", code="CSRF_ORIGIN_REFUSED"
        )
    if session_cookie is None:
        return
    sent = headers.get(CSRF_HEADER)
    if not sent:
        raise errors.PermissionDenied(
            f"send the {CSRF_COOKIE} cookie's value as the X-CSRF-Token header", code="CSRF_TOKEN_MISSING"
        )
    if not hmac.compare_digest(sent.encode(), token_for(session_cookie).encode()):
        raise errors.PermissionDenied("the X-CSRF-Token header does not match the session", code="CSRF_TOKEN_INVALID")
