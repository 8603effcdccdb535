"""CSRF protection of cookie-authenticated writes and settable CORS, over real HTTP against the gateway
process (KAZRU_ANONYMOUS_ACCESS=cookie, the default outside `make run`)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import API_KEY, start_stack, stop_stack
from tests.helpers import wav_header

AUTH = {"Authorization": f"Bearer {API_KEY}"}
ALLOWED_ORIGIN = "https://app.example.org"
# One second of 16 kHz mono silence: enough for ingest to accept the upload.
WAV = wav_header(32000) + bytes(32000)


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    started = start_stack(
        infra, tmp_path_factory.mktemp("csrf"), services=("ingest", "gateway"),
        anonymous_access="cookie", cors_origins=(ALLOWED_ORIGIN,),
    )  # fmt: skip
    yield started
    stop_stack(started)


def upload(client: httpx.Client, **headers: str) -> httpx.Response:
    return client.post("/api/v1/upload", files={"file": ("quiet.wav", WAV, "audio/wav")}, headers=headers)


def test_cookie_writes_need_the_csrf_token_from_our_own_origin(stack):
    with httpx.Client(base_url=stack.http, timeout=30) as browser:
        first = browser.get("/api/v1/jobs")
        assert first.json()["jobs"] == []
        cookies = {line.split("=", 1)[0]: line for line in first.headers.get_list("set-cookie")}
        assert "HttpOnly" in cookies["kazru_session"]
        # The page's script must read the token, so that cookie alone is readable; and never sent cross-site.
        assert "HttpOnly" not in cookies["kazru_csrf"] and "SameSite=strict" in cookies["kazru_csrf"]
        token = browser.cookies["kazru_csrf"]
        assert token != browser.cookies["kazru_session"]

        refused = {
            "no token": upload(browser),
            "wrong token": upload(browser, **{"X-CSRF-Token": "0" * 64}),
            "another origin": upload(browser, **{"X-CSRF-Token": token, "Origin": "https://evil.example"}),
            "another site": upload(browser, **{"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"}),
            # CORS lets that origin's pages call the API with a key, not write with a visitor's cookie.
            "a CORS origin": upload(browser, **{"X-CSRF-Token": token, "Origin": ALLOWED_ORIGIN}),
        }
        answers = {case: (r.status_code, r.json()["error"]["code"]) for case, r in refused.items()}
        assert answers == {
            "no token": (403, "CSRF_TOKEN_MISSING"),
            "wrong token": (403, "CSRF_TOKEN_INVALID"),
            "another origin": (403, "CSRF_ORIGIN_REFUSED"),
            "another site": (403, "CSRF_ORIGIN_REFUSED"),
            "a CORS origin": (403, "CSRF_ORIGIN_REFUSED"),
        }
        assert browser.get("/api/v1/jobs").json()["jobs"] == []  # none of them created a job

        page_headers = {"X-CSRF-Token": token, "Origin": stack.http, "Sec-Fetch-Site": "same-origin"}
        accepted = upload(browser, **page_headers)
        assert accepted.status_code == 202, accepted.text
        job_path = f"/api/v1/jobs/{accepted.json()['job_id']}"
        assert browser.delete(job_path).json()["error"]["code"] == "CSRF_TOKEN_MISSING"
        assert browser.get(job_path).json()["state"] != "DELETED"
        deleted = browser.delete(job_path, headers=page_headers)
        assert deleted.status_code == 200 and deleted.json()["state"] == "DELETED"


def test_api_key_writes_need_no_csrf_token(stack):
    with httpx.Client(base_url=stack.http, timeout=30) as client:
        client.get("/api/v1/jobs")  # a session cookie too: the key, not the cookie, decides
        assert "kazru_session" in client.cookies
        accepted = upload(client, **AUTH, Origin=ALLOWED_ORIGIN)
        assert accepted.status_code == 202, accepted.text
        assert client.delete(f"/api/v1/jobs/{accepted.json()['job_id']}", headers=AUTH).status_code == 200
    # An empty Authorization header is no API key: the write is judged as a cookie write.
    with httpx.Client(base_url=stack.http, timeout=30) as browser:
        browser.get("/api/v1/jobs")
        assert upload(browser, Authorization="").status_code == 403


def test_cors_preflight_allows_the_configured_origin_only(stack):
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{stack.http}/api/v1/upload",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization, idempotency-key"},
        )  # fmt: skip

    allowed = preflight(ALLOWED_ORIGIN)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers

    refused = preflight("https://evil.example")
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers

    listing = httpx.get(f"{stack.http}/api/v1/jobs", headers={**AUTH, "Origin": ALLOWED_ORIGIN})
    assert listing.status_code == 200 and listing.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    other = httpx.get(f"{stack.http}/api/v1/jobs", headers={**AUTH, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
