"""The CSRF rule for credential-less writes (services/gateway/csrf.py); over HTTP in tests/e2e/test_csrf_cors.py."""

from __future__ import annotations

import pytest

from kazru.domain import errors
from services.gateway.csrf import check_browser_write, token_for

SESSION = "s" * 43
HOST = "127.0.0.1:8080"


def refusal(headers: dict[str, str], session: str | None = SESSION) -> str | None:
    try:
        check_browser_write(headers, session, HOST)
    except errors.PermissionDenied as refused:
        return refused.code
    return None


def test_the_page_with_its_token_is_let_through():
    own = {"origin": "http://127.0.0.1:8080", "sec-fetch-site": "same-origin", "x-csrf-token": token_for(SESSION)}
    assert refusal(own) is None
    # Behind a TLS proxy the browser says https while the gateway sees http: the host decides.
    assert refusal({**own, "origin": "https://127.0.0.1:8080"}) is None


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"origin": "https://evil.example"}, "CSRF_ORIGIN_REFUSED"),
        ({"origin": "null"}, "CSRF_ORIGIN_REFUSED"),  # sandboxed frames and some redirects
        ({"origin": "http://127.0.0.1:8081"}, "CSRF_ORIGIN_REFUSED"),
        ({"sec-fetch-site": "cross-site"}, "CSRF_ORIGIN_REFUSED"),
        ({"sec-fetch-site": "same-site"}, "CSRF_ORIGIN_REFUSED"),  # a sibling host is another origin
        ({}, "CSRF_TOKEN_MISSING"),
        ({"x-csrf-token": token_for("another session")}, "CSRF_TOKEN_INVALID"),
        ({"x-csrf-token": SESSION}, "CSRF_TOKEN_INVALID"),  # the session itself is not its token
    ],
)  # fmt: skip
def test_cross_origin_writes_and_writes_without_the_sessions_token_are_refused(headers, code):
    assert refusal(headers) == code


def test_without_a_session_cookie_only_the_origin_is_checked():
    # curl and scripts: no Origin, no cookie (shared local owner, or a new anonymous session).
    assert refusal({}, session=None) is None
    assert refusal({"origin": "https://evil.example"}, session=None) == "CSRF_ORIGIN_REFUSED"


def test_the_token_is_fixed_per_session_and_reveals_nothing_of_it():
    assert token_for(SESSION) == token_for(SESSION) != token_for(SESSION + "x")
    assert SESSION not in token_for(SESSION)
