"""A browser signed in with an API key, where anonymous access is denied (every production deployment).

The page cannot send an Authorization header with its status streams, audio or download links, so it asks
a person for a key once and the gateway keeps the key in an HttpOnly, SameSite=Strict cookie for a day.
Over real HTTP against the gateway process (KAZRU_ANONYMOUS_ACCESS=deny), and in headless Chromium."""

from __future__ import annotations

import httpx

from kazru.db.api_keys import create_key, revoke_key
from services.gateway.csrf import token_for
from tests.e2e.conftest import API_KEY, stack_fixture
from tests.e2e.test_browser import Watched, browser, wait_until  # noqa: F401 - a fixture
from tests.helpers import wav_header

AUTH = {"Authorization": f"Bearer {API_KEY}"}
# One second of 16 kHz mono silence: enough for ingest to accept the upload.
WAV = wav_header(32000) + bytes(32000)


# No transcriber: an upload stays PENDING, which is all a sign-in needs to see.
stack = stack_fixture("sign-in", services=("ingest", "gateway"), anonymous_access="deny")


def cookie_lines(response: httpx.Response) -> dict[str, str]:
    return {line.split("=", 1)[0]: line for line in response.headers.get_list("set-cookie")}


def page_headers(client: httpx.Client, stack) -> dict[str, str]:
    """What the page's script sends with a write: the CSRF cookie's value, from its own origin."""
    return {"X-CSRF-Token": client.cookies["kazru_csrf"], "Origin": stack.http, "Sec-Fetch-Site": "same-origin"}


def test_without_a_key_the_service_says_so_and_serves_nothing(stack):
    with httpx.Client(base_url=stack.http, timeout=30) as client:
        assert client.get("/api/v1/session").json() == {"credential": "none"}
        refused = client.get("/api/v1/jobs")
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "API_KEY_REQUIRED")
        assert not client.cookies, "no anonymous session is handed out"
        assert client.get("/api/v1/session", headers=AUTH).json() == {"credential": "api_key"}


def test_a_browser_signed_in_with_a_key_acts_as_its_owner_for_reads_audio_and_checked_writes(stack):
    uploaded = httpx.post(f"{stack.http}/api/v1/upload", headers=AUTH, files={"file": ("quiet.wav", WAV)}, timeout=30)
    assert uploaded.status_code == 202, uploaded.text
    job_id = uploaded.json()["job_id"]
    with httpx.Client(base_url=stack.http, timeout=30) as client:
        wrong = client.post("/api/v1/session", json={"api_key": "kz_not-a-key"})
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "INVALID_API_KEY")
        assert "kazru_key" not in client.cookies

        signed_in = client.post("/api/v1/session", json={"api_key": API_KEY})
        assert signed_in.json() == {"credential": "api_key"}
        cookies = cookie_lines(signed_in)
        for attribute in ("HttpOnly", "SameSite=strict", "Max-Age=86400", "Path=/"):
            assert attribute in cookies["kazru_key"], cookies["kazru_key"]
        assert client.cookies["kazru_csrf"] == token_for(API_KEY) != API_KEY
        assert "HttpOnly" not in cookies["kazru_csrf"]

        # Reads as the key's owner, the audio too (an <audio src> cannot send a header).
        assert job_id in [job["job_id"] for job in client.get("/api/v1/jobs").json()["jobs"]]
        audio = client.get(f"/api/v1/jobs/{job_id}/audio")
        assert audio.status_code == 200 and audio.content == WAV
        assert client.get("/api/v1/session").json() == {"credential": "api_key"}

        # Writes on the strength of the cookie pass the CSRF rules, as a browser session's do.
        refused = {
            "no token": client.delete(f"/api/v1/jobs/{job_id}"),
            "another origin": client.delete(
                f"/api/v1/jobs/{job_id}", headers={**page_headers(client, stack), "Origin": "https://evil.example"}
            ),
        }
        assert {case: r.json()["error"]["code"] for case, r in refused.items()} == {
            "no token": "CSRF_TOKEN_MISSING", "another origin": "CSRF_ORIGIN_REFUSED",
        }  # fmt: skip
        assert client.get(f"/api/v1/jobs/{job_id}").json()["state"] == "PENDING"
        deleted = client.delete(f"/api/v1/jobs/{job_id}", headers=page_headers(client, stack))
        assert (deleted.status_code, deleted.json()["state"]) == (200, "DELETED")

        # Signing out needs the token as well (another site cannot sign a person out), then forgets the key.
        assert client.delete("/api/v1/session").json()["error"]["code"] == "CSRF_TOKEN_MISSING"
        signed_out = client.delete("/api/v1/session", headers=page_headers(client, stack))
        assert signed_out.status_code == 204
        assert "kazru_key" not in client.cookies and "kazru_csrf" not in client.cookies
        assert client.get("/api/v1/session").json() == {"credential": "none"}


def test_a_sign_in_from_another_site_is_refused(stack):
    with httpx.Client(base_url=stack.http, timeout=30) as client:
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            refused = client.post("/api/v1/session", json={"api_key": API_KEY}, headers=headers)
            assert (refused.status_code, refused.json()["error"]["code"]) == (403, "CSRF_ORIGIN_REFUSED")
            assert "kazru_key" not in client.cookies


async def test_a_revoked_key_signs_the_browser_out(stack, database):
    made = await create_key(database, "sign-in test")
    with httpx.Client(base_url=stack.http, timeout=30) as client:
        assert client.post("/api/v1/session", json={"api_key": made.key}).status_code == 200
        assert client.get("/api/v1/jobs").status_code == 200
        await revoke_key(database, str(made.record.id))
        refused = client.get("/api/v1/jobs")
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "INVALID_API_KEY")
        assert "kazru_key" not in client.cookies, "the revoked key is not kept"
        assert client.get("/api/v1/session").json() == {"credential": "none"}


async def test_the_page_asks_for_a_key_then_works_as_its_owner_until_signed_out(stack, browser):  # noqa: F811 - the fixture
    uploaded = httpx.post(
        f"{stack.http}/api/v1/upload", headers=AUTH, files={"file": ("for-page.wav", WAV)}, timeout=30
    )
    assert uploaded.status_code == 202, uploaded.text
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    watched = Watched(page, stack.http)
    await page.goto(stack.http + "/")

    await page.locator("#sign-in").wait_for(state="visible")
    assert await page.locator("#drop").is_hidden() and await page.locator("#jobs-section").is_hidden()
    await page.fill("#api-key", "kz_not-a-key")
    await page.click("#sign-in-form button[type=submit]")
    await wait_until(page, "() => document.querySelector('#sign-in-message').textContent !== ''")
    assert await page.text_content("#sign-in-message") == "This API key is not valid."

    await page.fill("#api-key", API_KEY)
    async with page.expect_navigation():  # the page starts again as the key's owner
        await page.click("#sign-in-form button[type=submit]")
    await page.locator("#jobs li").first.wait_for(state="visible")
    assert await page.locator("#sign-in").is_hidden() and await page.locator("#drop").is_visible()
    assert "for-page.wav" in await page.text_content("#jobs")
    assert await page.evaluate("() => document.cookie.includes('kazru_key')") is False, "the key is HttpOnly"
    keys = [c for c in await context.cookies() if c["name"] == "kazru_key"]
    assert [(c["value"], c["httpOnly"], c["sameSite"]) for c in keys] == [(API_KEY, True, "Strict")]

    async with page.expect_navigation():
        await page.click("#sign-out")
    await page.locator("#sign-in").wait_for(state="visible")
    assert not [c for c in await context.cookies() if c["name"] == "kazru_key"]
    await context.close()

    # The wrong key's 401 is the one error the console may show; every write carried the CSRF token but the
    # sign-ins (made before the browser held any credential).
    assert all("401" in error for error in watched.errors) and len(watched.errors) == 1, watched.errors
    watched.errors.clear()
    watched.assert_clean()
    assert [(method, path) for method, path, token in watched.writes if not token] == [
        ("POST", "/api/v1/session"), ("POST", "/api/v1/session"),
    ]  # fmt: skip


def test_a_sign_in_that_is_not_json_or_too_large_is_refused_before_any_key_is_looked_up(stack):
    limit = stack.settings.max_json_body_bytes
    with httpx.Client(base_url=stack.http, timeout=30) as client:
        answers = {
            "not JSON": client.post("/api/v1/session", content=b"api_key=" + API_KEY.encode()),
            "no key": client.post("/api/v1/session", json={}),
            "too large": client.post("/api/v1/session", json={"api_key": API_KEY, "padding": "x" * limit}),
        }
        assert {case: (r.status_code, r.json()["error"]["code"]) for case, r in answers.items()} == {
            "not JSON": (400, "INVALID_REQUEST"), "no key": (400, "INVALID_REQUEST"), "too large": (413, "BODY_TOO_LARGE"),
        }  # fmt: skip
        assert "kazru_key" not in client.cookies
