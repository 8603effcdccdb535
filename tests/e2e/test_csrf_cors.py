"""CSRF protection of cookie-authenticated writes and settable CORS, over real HTTP against the gateway
process (KAZRU_ANONYMOUS_ACCESS=cookie, the default outside `make run`)."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import API_KEY, start_stack, stop_stack
from tests.e2e.test_browser import CHROMIUM_ARGS, browser, chromium_path, playwright_api  # noqa: F401 - a fixture
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
    with httpx.Client(base_url=stack.http, timeout=30) as cookie_client:
        first = cookie_client.get("/api/v1/jobs")
        assert first.json()["jobs"] == []
        cookies = {line.split("=", 1)[0]: line for line in first.headers.get_list("set-cookie")}
        assert "HttpOnly" in cookies["kazru_session"]
        # The page's script must read the token, so that cookie alone is readable; and never sent cross-site.
        assert "HttpOnly" not in cookies["kazru_csrf"] and "SameSite=strict" in cookies["kazru_csrf"]
        token = cookie_client.cookies["kazru_csrf"]
        assert token != cookie_client.cookies["kazru_session"]

        refused = {
            "no token": upload(cookie_client),
            "wrong token": upload(cookie_client, **{"X-CSRF-Token": "0" * 64}),
            "another origin": upload(cookie_client, **{"X-CSRF-Token": token, "Origin": "https://evil.example"}),
            "another site": upload(cookie_client, **{"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"}),
            # CORS lets that origin's pages call the API with a key, not write with a visitor's cookie.
            "a CORS origin": upload(cookie_client, **{"X-CSRF-Token": token, "Origin": ALLOWED_ORIGIN}),
        }
        answers = {case: (r.status_code, r.json()["error"]["code"]) for case, r in refused.items()}
        assert answers == {
            "no token": (403, "CSRF_TOKEN_MISSING"),
            "wrong token": (403, "CSRF_TOKEN_INVALID"),
            "another origin": (403, "CSRF_ORIGIN_REFUSED"),
            "another site": (403, "CSRF_ORIGIN_REFUSED"),
            "a CORS origin": (403, "CSRF_ORIGIN_REFUSED"),
        }
        assert cookie_client.get("/api/v1/jobs").json()["jobs"] == []  # none of them created a job

        page_headers = {"X-CSRF-Token": token, "Origin": stack.http, "Sec-Fetch-Site": "same-origin"}
        accepted = upload(cookie_client, **page_headers)
        assert accepted.status_code == 202, accepted.text
        job_path = f"/api/v1/jobs/{accepted.json()['job_id']}"
        assert cookie_client.delete(job_path).json()["error"]["code"] == "CSRF_TOKEN_MISSING"
        assert cookie_client.get(job_path).json()["state"] != "DELETED"
        deleted = cookie_client.delete(job_path, headers=page_headers)
        assert deleted.status_code == 200 and deleted.json()["state"] == "DELETED"


def test_api_key_writes_need_no_csrf_token(stack):
    with httpx.Client(base_url=stack.http, timeout=30) as client:
        client.get("/api/v1/jobs")  # a session cookie too: the key, not the cookie, decides
        assert "kazru_session" in client.cookies
        accepted = upload(client, **AUTH, Origin=ALLOWED_ORIGIN)
        assert accepted.status_code == 202, accepted.text
        assert client.delete(f"/api/v1/jobs/{accepted.json()['job_id']}", headers=AUTH).status_code == 200
    # An empty Authorization header is no API key: the write is judged as a cookie write.
    with httpx.Client(base_url=stack.http, timeout=30) as cookie_client:
        cookie_client.get("/api/v1/jobs")
        assert upload(cookie_client, Authorization="").status_code == 403


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


# `make run`'s mode: credential-less callers act as one shared local owner, whom no other site may drive.
@pytest.fixture(scope="module")
def local_stack(infra, tmp_path_factory):
    started = start_stack(
        infra, tmp_path_factory.mktemp("csrf-local"), services=("ingest", "gateway"), anonymous_access="shared"
    )
    yield started
    stop_stack(started)


@pytest.fixture(scope="module")
async def playwright_driver():
    async with playwright_api.async_playwright() as driver:
        yield driver


@contextlib.contextmanager
def attacker_site() -> Iterator[str]:
    """Another origin on this machine (another port): a server whose page the browser loads from loopback,
    as a page of a site the user visits would reach a local run."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>another site</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def local_job_count(stack) -> int:
    return len(httpx.get(f"{stack.http}/api/v1/jobs", params={"page_size": 100}).json()["jobs"])


def test_another_origins_form_post_to_the_openai_route_is_refused(local_stack):
    """What a page on another origin sends when it posts a form to the local run (a browser adds Origin and
    Sec-Fetch-Site itself); it must not create a job for the local owner."""
    before = local_job_count(local_stack)
    target = f"{local_stack.http}/v1/audio/transcriptions"
    for headers in ({"Origin": "http://127.0.0.1:9", "Sec-Fetch-Site": "same-site"},
                    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}):  # fmt: skip
        refused = httpx.post(target, files={"file": ("quiet.wav", WAV, "audio/wav")}, data={"model": "whisper-1"},
                             headers=headers, timeout=10)  # fmt: skip
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "CSRF_ORIGIN_REFUSED"), headers
    assert local_job_count(local_stack) == before, "no job was created"


async def test_a_page_on_another_origin_cannot_post_a_file_to_the_openai_route(local_stack, browser):  # noqa: F811 - the fixture
    before = local_job_count(local_stack)
    target = f"{local_stack.http}/v1/audio/transcriptions"
    context = await browser.new_context()
    page = await context.new_page()
    with attacker_site() as attacker:
        await page.goto(attacker, wait_until="commit")
    async with page.expect_response(target) as answered:
        # A form post is a "simple" request: no preflight, the browser sends it with Origin and Sec-Fetch-Site.
        await page.evaluate(
            """async ([url, bytes]) => {
                const form = new FormData();
                form.append("model", "whisper-1");
                form.append("file", new Blob([new Uint8Array(bytes)], {type: "audio/wav"}), "quiet.wav");
                // The answer is not the page's to read either way.
                await fetch(url, {method: "POST", body: form, mode: "no-cors"}).catch(() => null);
            }""",
            [target, list(WAV)],
        )
    assert (await answered.value).status == 403
    await context.close()
    assert local_job_count(local_stack) == before, "no job was created"


async def test_a_rebound_host_name_is_refused_before_routing(local_stack, playwright_driver):
    port = local_stack.settings.http_port
    # DNS rebinding, as a browser sees it: the attacker's name resolves to the local run's address.
    rebinding = await playwright_driver.chromium.launch(
        executable_path=chromium_path(), headless=True,
        args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.attacker.example 127.0.0.1"],
    )  # fmt: skip
    try:
        page = await rebinding.new_page()
        answer = await page.goto(f"http://rebind.attacker.example:{port}/")
        assert answer.status == 421 and (await answer.json())["error"]["code"] == "HOST_NOT_ALLOWED"
    finally:
        await rebinding.close()
    before = local_job_count(local_stack)
    for path in ("/api/v1/health", "/api/v1/upload", "/v1/audio/transcriptions"):
        refused = httpx.post(f"{local_stack.http}{path}", files={"file": ("quiet.wav", WAV, "audio/wav")},
                             headers={"Host": "rebind.attacker.example:8080"})  # fmt: skip
        assert refused.status_code == 421, (path, refused.text)
    assert local_job_count(local_stack) == before
    # The names of the local run itself are served.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
        # (the health answers 503 here: this stack has no transcriber)
        assert httpx.get(f"{local_stack.http}/api/v1/health", headers={"Host": host}).status_code != 421, host
