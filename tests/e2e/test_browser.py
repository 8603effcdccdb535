"""The web page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright) against the whole
stack: upload through the file input, watch the job finish, rename a speaker, correct a segment,
download SRT, play from a turn, switch the interface to Kazakh, read it at phone width, delete; several
files dropped at once; search, word highlighting, shortcuts, speed, copy and language correction in a
transcript; a 429 followed by the upload going by itself; merge and undo; the header in every language;
60 jobs, every one reachable through "Show more", with rows that tell two uploads of one file apart.

Throughout: no console error, and no request leaves the gateway's origin. A screenshot of the
finished transcript is saved to tests/artifacts/ (ignored by git) and its path printed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import update

from kazru.db.models import Job
from kazru.domain import notices
from services.gateway.auth import SESSION_COOKIE, Authenticator
from tests import export_checks
from tests.conftest import FIXTURES, REAL_SPEECH_CLIP, SPEECH_CLIP
from tests.helpers import aiter_of, encoded
from tests.transcripts import WordSpec, insert_transcript, segment_of_words

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="BROWSER TESTS NOT RUN: the 'playwright' package is not installed"
)
expect = playwright_api.expect
# Generous: the whole suite shares two cores with the services and the speech model.
expect.set_options(timeout=15_000)

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
FINISH_TIMEOUT_S = 240
NEW_NAME = "Айгерім"
NEW_TEXT = "Сәлем, әлем"
PHONE_WIDTH = 360


def chromium_path() -> str:
    found = shutil.which("chromium") or (os.path.exists("/usr/bin/chromium") and "/usr/bin/chromium")
    if found:
        return found
    if os.geteuid() == 0:
        pytest.fail("chromium is missing although the tests run as root: install it (apt-get install -y chromium)")
    pytest.skip("BROWSER TESTS NOT RUN: /usr/bin/chromium is missing and only root can install it")


@pytest.fixture(scope="module")
async def browser():
    executable = chromium_path()
    async with playwright_api.async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield launched
        await launched.close()


class Watched:
    """What a page did: console errors, uncaught exceptions and every URL it requested."""

    def __init__(self, page, origin: str):
        self.origin = origin
        self.errors: list[str] = []
        self.urls: list[str] = []
        # (method, path, X-CSRF-Token sent) of every write
        self.writes: list[tuple[str, str, str | None]] = []
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("request", self._record)

    def _record(self, request) -> None:
        self.urls.append(request.url)
        if request.method not in ("GET", "HEAD"):
            self.writes.append((request.method, urlsplit(request.url).path, request.headers.get("x-csrf-token")))

    def assert_clean(self) -> None:
        assert not self.errors, f"console errors: {self.errors}"
        foreign = [url for url in self.urls if not url.startswith(("data:", "blob:")) and origin_of(url) != self.origin]
        assert not foreign, f"requests left the gateway's origin: {foreign}"
        assert self.urls, "no request was recorded"


async def wait_until(page, predicate: str, arg=None, timeout: float = 30.0) -> None:
    """Poll `predicate` (a JS function) with page.evaluate. Playwright's wait_for_function evaluates its
    predicate from a string inside the page once the first check fails, which the page's CSP (no
    'unsafe-eval') refuses: it only worked when the condition already held, i.e. on a quiet machine."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await page.evaluate(predicate, arg):
        assert asyncio.get_running_loop().time() < deadline, f"still false after {timeout} s: {predicate}"
        await asyncio.sleep(0.05)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def watch_states(page, job) -> list[str]:
    """The job's state labels as the page shows them, until Done (or a failure)."""
    seen: list[str] = []
    deadline = time.monotonic() + FINISH_TIMEOUT_S
    while time.monotonic() < deadline:
        label = (await job.locator(".state").text_content() or "").strip()
        if label and (not seen or seen[-1] != label):
            seen.append(label)
        if label in ("Done", "Failed"):
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"the job did not finish in {FINISH_TIMEOUT_S}s; states seen: {seen}")


async def test_upload_watch_edit_download_play_and_switch_language(stack, browser, tmp_path):
    started = time.monotonic()
    context = await browser.new_context(accept_downloads=True, locale="en-US", viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    watched = Watched(page, stack.http)
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))

    await page.goto(stack.http + "/")
    await expect(page.locator("h2[data-i18n=yourJobs]")).to_have_text("Your jobs")
    # The session (and its CSRF cookie) comes with the page's first API answer, which can land after
    # the heading: picked before it, the upload goes out without a session and so without a token.
    await wait_until(page, "() => document.cookie.includes('kazru_csrf=')")
    # The engine new uploads run on is named beside the upload form (the stack's: Whisper base).
    await expect(page.locator("#configured-engine")).to_have_text("Engine: Whisper (whisper-base)")
    await page.set_input_files("#picker", str(SPEECH_CLIP))
    job = page.locator("#jobs li.job").first
    await expect(job.locator(".job-name")).to_have_text(SPEECH_CLIP.name)
    await expect(job.locator(".expiry")).to_have_text(re.compile(r"^deleted in (23 h \d+|24 h 0) min$"))
    states = await watch_states(page, job)
    assert states[-1] == "Done", states
    assert await job.locator(".job-progress").evaluate("bar => bar.value") == 100

    # A job uploaded on this page opens by itself when it finishes.
    turns = page.locator("#segments li.turn")
    await expect(turns.first).to_be_visible()
    first_turn = turns.first
    await expect(first_turn.locator(".lang")).to_have_text(re.compile(r"^(KK|RU)$"))
    await expect(first_turn.locator(".who")).to_have_text("S1")
    # The transcript says which engine and model wrote it.
    await expect(page.locator("#transcript-engine")).to_have_text("Transcribed by Whisper (whisper-base)")

    # Rename S1: Enter saves; every turn of S1 shows the new name.
    name_input = page.locator('#speakers li[data-speaker="S1"] input')
    await name_input.fill(NEW_NAME)
    await name_input.press("Enter")
    await expect(first_turn.locator(".who")).to_have_text(NEW_NAME)

    # Escape cancels an edit; Enter saves one and marks the turn as edited.
    text = first_turn.locator(".text")
    original = await text.text_content()
    await text.dblclick()
    await page.keyboard.press("Control+A")
    await page.keyboard.type("discarded")
    await page.keyboard.press("Escape")
    await expect(text).to_have_text(original)
    await expect(first_turn.locator(".edited-mark")).to_be_hidden()
    await text.dblclick()
    await page.keyboard.press("Control+A")
    await page.keyboard.type(NEW_TEXT)
    await page.keyboard.press("Enter")
    await expect(first_turn.locator(".edited-mark")).to_be_visible()
    await expect(first_turn.locator(".edited-mark")).to_have_text("edited")

    # The SRT download carries both changes.
    async with page.expect_download() as download_info:
        await page.click("#dl-srt")
    download = await download_info.value
    assert download.suggested_filename.endswith(".srt"), download.suggested_filename
    srt = Path(await download.path()).read_text(encoding="utf-8")
    assert NEW_NAME in srt and NEW_TEXT in srt, srt
    assert original.strip() not in srt

    # Clicking a turn plays from its start, and the turn is highlighted while it plays.
    last_turn = turns.last
    start = float(await last_turn.get_attribute("data-start"))
    await last_turn.locator(".who").click()
    await wait_until(page, "() => !document.getElementById('player').paused")
    await wait_until(page, "start => document.getElementById('player').currentTime > start + 0.2", start, timeout=10)
    # Paused at once (the clip is short): a paused player keeps its turn highlighted.
    await page.evaluate("() => document.getElementById('player').pause()")
    played_at = await page.evaluate("() => document.getElementById('player').currentTime")
    assert played_at > start
    await expect(page.locator("#segments li.turn.playing")).to_have_count(1)
    await expect(last_turn).to_have_class(re.compile(r"\bplaying\b"))

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "transcript.png"
    await page.evaluate("() => { document.getElementById('notice').hidden = true; }")
    await page.locator("#transcript-view").screenshot(path=str(screenshot))
    await page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    print(f"\nscreenshot of the finished transcript: {screenshot} (whole page: {tmp_path / 'page.png'})")

    # The interface switches to Kazakh, and stays Kazakh after a reload.
    await page.select_option("#ui-language", "kk")
    await expect(page.locator("h2[data-i18n=yourJobs]")).to_have_text("Сіздің тапсырмаларыңыз")
    await expect(job.locator(".state")).to_have_text("Дайын")
    await page.reload()
    await expect(page.locator("h2[data-i18n=yourJobs]")).to_have_text("Сіздің тапсырмаларыңыз")
    assert await page.evaluate("() => document.documentElement.lang") == "kk"
    await expect(page.locator("#configured-engine")).to_have_text("Тану жүйесі: Whisper (whisper-base)")

    # Phone width: nothing wider than the screen, the transcript included.
    await page.set_viewport_size({"width": PHONE_WIDTH, "height": 740})
    await page.locator("#jobs li.job .open").first.click()
    await expect(turns.first).to_be_visible()
    await expect(page.locator("#transcript-engine")).to_have_text("Мәтінге айналдырған: Whisper (whisper-base)")
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1] == PHONE_WIDTH, f"horizontal scroll at phone width: {widths}"
    await page.screenshot(path=str(ARTIFACTS / "phone.png"), full_page=True)

    # Delete, confirmed in the dialog: gone from the list and from the server.
    job_id = await page.locator("#jobs li.job").first.get_attribute("data-job-id")
    await page.locator("#jobs li.job .delete").first.click()
    await expect(page.locator("#jobs li.job")).to_have_count(0)
    await expect(page.locator("#transcript-view")).to_be_hidden()
    cookies = {c["name"]: c["value"] for c in await context.cookies()}
    async with httpx.AsyncClient(base_url=stack.http, cookies=cookies) as client:
        gone = await client.get(f"/api/v1/jobs/{job_id}")
    assert gone.json()["state"] == "DELETED"

    # Every write carried the session's CSRF token, where the gateway hands one out.
    assert {method for method, _, _ in watched.writes} == {"POST", "PUT", "PATCH", "DELETE"}, watched.writes
    if "kazru_csrf" in cookies:
        assert {token for _, _, token in watched.writes} == {cookies["kazru_csrf"]}, watched.writes
    watched.assert_clean()
    await context.close()
    print(f"browser flow took {time.monotonic() - started:.1f}s; states seen: {states}")


async def test_api_errors_are_explained_in_the_interface_language(stack, browser):
    context = await browser.new_context(locale="ru-RU", viewport={"width": 1000, "height": 800})
    page = await context.new_page()
    watched = Watched(page, stack.http)
    await page.goto(stack.http + "/")
    # Chosen from the browser's language.
    await expect(page.locator("h2[data-i18n=yourJobs]")).to_have_text("Ваши задания")
    await page.set_input_files(
        "#picker", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not audio at all " * 64}]
    )
    refused = page.locator("#uploads li.upload.error")
    await expect(refused.locator(".upload-message")).to_have_text(re.compile("Это не аудиофайл"))
    await expect(refused.locator(".upload-name")).to_have_text("notes.txt")
    # The file's row stays with its reason until dismissed.
    await refused.locator(".dismiss").click()
    await expect(refused).to_have_count(0)
    # The same through the drop zone.
    await page.evaluate("""() => {
        const dropped = new DataTransfer();
        dropped.items.add(new File(["not audio at all ".repeat(64)], "dropped.txt", {type: "text/plain"}));
        const drop = document.getElementById("drop");
        drop.dispatchEvent(new DragEvent("drop", {dataTransfer: dropped, bubbles: true, cancelable: true}));
    }""")
    await expect(refused.locator(".upload-message")).to_have_text(re.compile("Это не аудиофайл"))
    # The refused uploads' 415s are the only console errors the browser reports.
    assert all("415" in error for error in watched.errors), watched.errors
    watched.errors.clear()

    explained = await page.evaluate("""() => [
        explain(new ApiError(429, "RATE_LIMITED", "too many uploads", {}, "17")),
        explain(new ApiError(413, "UPLOAD_TOO_LARGE", "too large", {max_bytes: "524288000"})),
        explain(new ApiError(410, "JOB_EXPIRED", "the job's audio and transcript have been deleted")),
        explain(new ApiError(503, "DATABASE_UNAVAILABLE", "the database is unavailable; try again")),
        explain(new ApiError(0, "NETWORK", "")),
        explain(new ApiError(409, "JOB_ALREADY_FAILED", "the job has already failed")),
        explain(new ApiError(502, "", "")),
    ]""")
    assert explained == [
        "Слишком много загрузок подряд: повторите через 17 с.",
        "Файл больше допустимых 500 MiB.",
        "Срок задания истёк: запись и расшифровка удалены.",
        "Сервис временно недоступен. Попробуйте через минуту.",
        "Сервер недоступен. Проверьте подключение и попробуйте снова.",
        "the job has already failed",  # a code without a sentence of ours: the server's message
        "Сервис временно недоступен. Попробуйте через минуту.",  # no body at all: the status
    ]
    # The time left comes from the progress seen over time: 50% in 10 s leaves about 10 s.
    left = await page.evaluate("""() => secondsLeft({
        job: {progress: 50, started_at: null}, samples: [[Date.now() - 10000, 0], [Date.now(), 50]]})""")
    assert 9 <= left <= 10.5
    # The time left shown moves steadily: estimates of 12, 21, 30 and 7 s a second apart (progress standing
    # still, then a jump) move it by at most a few seconds at a time.
    shown = await page.evaluate("""() => {
        let state = null; const shown = [];
        [12, 21, 30, 7].forEach((estimate, i) => { state = steadyEstimate(state, estimate, 1000 * i); shown.push(state.value); });
        return shown;
    }""")
    steps = [abs(b - a) for a, b in zip(shown, shown[1:], strict=False)]
    assert shown[0] == 12 and max(steps) <= 4, shown
    # An expiry reads as a time left, never as a time of day.
    assert await page.evaluate("() => hoursMinutes(23 * 3600 + 57 * 60)") == "23 ч 57 мин"
    assert await page.evaluate("() => hoursMinutes(125)") == "3 мин"
    watched.assert_clean()
    await context.close()


async def test_two_speakers_in_their_colours_merged_and_an_edit_undone(stack, browser, database, store):
    """A finished two-speaker transcript (written as the transcriber writes it) for this browser's owner."""
    context = await browser.new_context(locale="en-GB", viewport={"width": 1100, "height": 900})
    page = await context.new_page()
    watched = Watched(page, stack.http)
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto(stack.http + "/")
    # The session comes with the page's first API answer, which can land after the load event;
    # the readable CSRF cookie arrives with it.
    await wait_until(page, "() => document.cookie.includes('kazru_csrf=')")
    session = next(c["value"] for c in await context.cookies() if c["name"] == SESSION_COOKIE)
    job_id = await insert_transcript(database, [
        segment_of_words("S1", [WordSpec(0.5, 0.9, "Сәлем"), WordSpec(1.0, 1.4, "қалайсыз?")], "kk"),
        segment_of_words("S2", [WordSpec(2.0, 2.4, "Привет,"), WordSpec(2.5, 2.9, "хорошо.")], "ru"),
        segment_of_words("S1", [WordSpec(3.5, 3.9, "Жақсы,"), WordSpec(4.0, 4.4, "рахмет!")], "kk"),
    ], owner_id=Authenticator._session_owner(session), filename="dialogue.flac")  # fmt: skip
    # Its recording, which the page's player reads (the durations and the metadata before play).
    audio = SPEECH_CLIP.read_bytes()
    await store.put_stream(f"jobs/{job_id}", aiter_of([audio]))
    async with database.begin() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(size_bytes=len(audio)))
    await page.reload()
    await page.locator("#jobs li.job .open").first.click()
    turns = page.locator("#segments li.turn")
    await expect(turns).to_have_count(3)
    assert [await badge.text_content() for badge in await turns.locator(".lang").all()] == ["KK", "RU", "KK"]
    colours = [await turn.evaluate("turn => getComputedStyle(turn).borderLeftColor") for turn in await turns.all()]
    assert colours[0] == colours[2] != colours[1], colours

    # S2 merged into S1 (confirmed): one speaker, every turn hers, one colour.
    await page.select_option('#speakers li[data-speaker="S2"] select.merge', "S1")
    await expect(page.locator("#speakers li.speaker")).to_have_count(1)
    assert [await who.text_content() for who in await turns.locator(".who").all()] == ["S1", "S1", "S1"]
    colours = {await turn.evaluate("turn => getComputedStyle(turn).borderLeftColor") for turn in await turns.all()}
    assert len(colours) == 1
    # ... and undone from the notice: S2 and her turn are back.
    await page.locator("#notice .notice-action").click()
    await expect(page.locator("#speakers li.speaker")).to_have_count(2)
    assert [await who.text_content() for who in await turns.locator(".who").all()] == ["S1", "S2", "S1"]
    await page.select_option('#speakers li[data-speaker="S2"] select.merge', "S1")  # merged again, for what follows
    await expect(page.locator("#speakers li.speaker")).to_have_count(1)

    # An edit, then undo: the recognised text is back and the turn no longer says "edited".
    # A double-click only edits: its first click does not start playback, then or a moment later.
    text = turns.nth(1).locator(".text")
    await text.dblclick()
    await expect(text).to_have_attribute("contenteditable", "true")
    await asyncio.sleep(0.6)
    player_state = "() => [document.getElementById('player').paused, document.getElementById('player').currentTime]"
    assert await page.evaluate(player_state) == [True, 0]
    await page.keyboard.press("Control+A")
    await page.keyboard.type("Привет, всё хорошо.")
    await page.keyboard.press("Enter")
    await expect(turns.nth(1).locator(".edited-mark")).to_be_visible()
    await turns.nth(1).locator(".revert").click()
    await expect(text).to_have_text("Привет, хорошо.")
    await expect(turns.nth(1).locator(".edited-mark")).to_be_hidden()
    # A single click on a word still plays from it.
    await text.locator(".word").last.click()
    await wait_until(page, "() => !document.getElementById('player').paused")
    assert await page.evaluate("() => document.getElementById('player').currentTime") >= 2.5 - 0.05
    await page.evaluate("() => document.getElementById('player').pause()")
    watched.assert_clean()
    await context.close()


async def test_a_recording_the_browser_cannot_play_is_said_so_and_its_transcript_still_opens(
    stack, browser, database, store, tmp_path
):
    """A phone's AMR recording: transcribed like any other, but no browser plays AMR."""
    context, page, watched = await open_page(browser, stack)
    session = next(c["value"] for c in await context.cookies() if c["name"] == SESSION_COOKIE)
    job_id = await insert_transcript(database, [segment_of_words("S1", [WordSpec(0.5, 0.9, "Алло,"),
        WordSpec(1.0, 1.4, "слушаю.")], "ru")], owner_id=Authenticator._session_owner(session), filename="call.amr")  # fmt: skip
    audio = encoded(SPEECH_CLIP, "amr", tmp_path)
    await store.put_stream(f"jobs/{job_id}", aiter_of([audio]))
    async with database.begin() as session:
        await session.execute(
            update(Job).where(Job.id == job_id).values(size_bytes=len(audio), content_type="audio/amr", container="amr")
        )
    await page.reload()
    await page.locator("#jobs li.job .open").first.click()
    await expect(page.locator("#segments li.turn")).to_have_count(1)
    await expect(page.locator("#notice")).to_contain_text("This browser cannot play this recording's format")
    await expect(page.locator("#dl-txt")).to_have_attribute("href", f"/api/v1/jobs/{job_id}/export/txt")
    watched.assert_clean()
    await context.close()


async def open_page(browser, stack, **context_options):
    context = await browser.new_context(
        **{"locale": "en-US", "viewport": {"width": 1280, "height": 900}, **context_options}
    )
    page = await context.new_page()
    watched = Watched(page, stack.http)
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto(stack.http + "/")
    await wait_until(page, "() => document.cookie.includes('kazru_csrf=')")
    return context, page, watched


async def drop_files(page, paths) -> None:
    """Drop these files on the drop zone at once, as a person drags them from a file manager."""
    files = [{"name": path.name, "data": base64.b64encode(path.read_bytes()).decode()} for path in paths]
    await page.evaluate(
        """(files) => {
        const dropped = new DataTransfer();
        for (const file of files) {
            const bytes = Uint8Array.from(atob(file.data), (c) => c.charCodeAt(0));
            dropped.items.add(new File([bytes], file.name, {type: "audio/flac"}));
        }
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dropped, bubbles: true, cancelable: true}));
    }""",
        files,
    )


async def test_three_files_dropped_at_once_become_three_jobs_and_a_deleted_one_stays_gone(stack, browser):
    context, page, watched = await open_page(browser, stack)
    clips = [REAL_SPEECH_CLIP, SPEECH_CLIP, FIXTURES / "kk_greeting_m3.flac"]
    await drop_files(page, clips)
    jobs = page.locator("#jobs li.job")
    await expect(jobs).to_have_count(3, timeout=60_000)
    assert sorted([await name.text_content() for name in await jobs.locator(".job-name").all()]) == sorted(
        c.name for c in clips
    )
    await expect(page.locator("#uploads li.upload")).to_have_count(0)  # each row gave way to its job
    for job in await jobs.all():
        assert (await watch_states(page, job))[-1] == "Done"
    # Delete one; after a reload the list shows the other two and no "Deleted" row.
    doomed = await jobs.first.get_attribute("data-job-id")
    await jobs.first.locator(".delete").click()
    await expect(jobs).to_have_count(2)
    await page.reload()
    await expect(jobs).to_have_count(2)
    assert doomed not in [await job.get_attribute("data-job-id") for job in await jobs.all()]
    await expect(page.locator("#jobs .state.DELETED")).to_have_count(0)
    watched.assert_clean()
    await context.close()


async def test_search_words_playback_shortcuts_speed_copy_and_a_corrected_language(stack, browser):
    context, page, watched = await open_page(browser, stack)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.http)
    await page.set_input_files("#picker", str(FIXTURES / "conversation_2spk.flac"))
    job = page.locator("#jobs li.job").first
    assert (await watch_states(page, job))[-1] == "Done"
    turns = page.locator("#segments li.turn")
    await expect(turns.first).to_be_visible()
    assert await turns.count() >= 2

    # The recording's length, before anything is played.
    await expect(page.locator("#transcript-duration")).to_have_text(re.compile(r"^Duration 00:\d\d$"))
    await wait_until(page, "() => Number.isFinite(document.getElementById('player').duration)")

    # Search: a word of the second turn is found, highlighted and counted; next/previous step through.
    word = (await turns.nth(1).locator(".word").first.text_content()).strip(" ,.!?").lower()
    await page.fill("#search", word)
    count_text = await page.locator("#search-count").text_content()
    found = int(re.fullmatch(r"1 of (\d+)", count_text).group(1))
    await expect(page.locator("#segments .word.current-match")).not_to_have_count(0)
    assert await page.locator("#segments .word.match").count() >= found
    await page.fill("#search", "а")  # a letter in many words
    many = int(re.fullmatch(r"1 of (\d+)", await page.locator("#search-count").text_content()).group(1))
    assert many >= 2
    await page.press("#search", "Enter")
    await expect(page.locator("#search-count")).to_have_text(f"2 of {many}")
    await page.click("#search-prev")
    await expect(page.locator("#search-count")).to_have_text(f"1 of {many}")
    await page.fill("#search", "жжжжжж")
    await expect(page.locator("#search-count")).to_have_text("no matches")
    await page.fill("#search", "")

    # Speed, then a click on a word plays from it, and the word being spoken is highlighted.
    await page.select_option("#speed", "1.5")
    assert await page.evaluate("() => document.getElementById('player').playbackRate") == 1.5
    spoken = turns.nth(1).locator(".word[data-start]").nth(1)
    start = float(await spoken.get_attribute("data-start"))
    await spoken.click()
    await wait_until(page, "() => !document.getElementById('player').paused")
    await wait_until(page, "() => document.querySelectorAll('#segments .word.speaking').length === 1", timeout=10)
    assert await page.evaluate("() => document.getElementById('player').currentTime") >= start - 0.05

    # Shortcuts (shown on the page): Space pauses and plays, arrows move 5 s and from turn to turn.
    await expect(page.locator("#shortcuts")).to_contain_text("Space")
    await page.locator("#transcript-title").click()  # focus off any control
    await page.keyboard.press("Space")
    await wait_until(page, "() => document.getElementById('player').paused")
    await page.evaluate("() => { document.getElementById('player').currentTime = 6; }")
    await page.keyboard.press("ArrowLeft")
    assert abs(await page.evaluate("() => document.getElementById('player').currentTime") - 1.0) < 0.3
    await page.keyboard.press("ArrowRight")
    assert abs(await page.evaluate("() => document.getElementById('player').currentTime") - 6.0) < 0.3
    first_start = float(await turns.nth(0).get_attribute("data-start"))
    second_start = float(await turns.nth(1).get_attribute("data-start"))
    await page.evaluate("t => { document.getElementById('player').currentTime = t; }", first_start + 0.1)
    await page.keyboard.press("ArrowDown")  # from inside the first turn: the second
    await wait_until(page, "s => Math.abs(document.getElementById('player').currentTime - s) < 0.6", second_start)
    await page.keyboard.press("ArrowUp")  # from inside the second turn: the first
    await wait_until(page, "s => Math.abs(document.getElementById('player').currentTime - s) < 0.6", first_start)
    await page.keyboard.press("Space")  # it was playing since the turn change: pause
    await wait_until(page, "() => document.getElementById('player').paused")

    # Copy the whole transcript.
    await page.click("#copy-text")
    copied = await page.evaluate("() => navigator.clipboard.readText()")
    first_text = (await turns.first.locator(".text").text_content()).strip()
    assert copied.startswith("[00:00] S1: ") and first_text.split()[0] in copied and copied.count("\n\n") >= 1

    # Correct the first turn's language: shown at once, stored, and in every export.
    badge = turns.first.locator(".lang")
    was = (await badge.text_content()).lower()
    other = "kk" if was == "ru" else "ru"
    await badge.click()
    await turns.first.locator(".lang-select").select_option(other)
    await expect(badge).to_have_text(other.upper())
    job_id = await job.get_attribute("data-job-id")
    cookies = {c["name"]: c["value"] for c in await context.cookies()}
    async with httpx.AsyncClient(base_url=stack.http, cookies=cookies) as client:
        exports = {
            fmt: (await client.get(f"/api/v1/jobs/{job_id}/export/{fmt}")).content
            for fmt in ("txt", "srt", "vtt", "json", "docx")
        }
    assert exports["txt"].decode().startswith(f"[00:00:00] S1 ({other}): ")
    assert export_checks.parse_srt(exports["srt"])[0].content.startswith(f"S1 ({other}): ")
    assert f"<v S1><lang {other}>" in exports["vtt"].decode()
    assert export_checks.parse_json(exports["json"])["segments"][0]["language"] == other
    assert export_checks.open_docx(exports["docx"])[-len(await turns.all()) :][0].startswith(
        f"[00:00:00] S1 ({other}): "
    )
    await page.reload()
    await page.locator("#jobs li.job .open").first.click()
    await expect(page.locator("#segments li.turn").first.locator(".lang")).to_have_text(other.upper())
    watched.assert_clean()
    await context.close()


async def test_after_a_429_the_file_goes_up_by_itself_with_a_countdown(stack, browser):
    context, page, watched = await open_page(browser, stack)
    refusals = []

    async def refuse_first(route):
        if not refusals:
            refusals.append(route.request.url)
            body = '{"error": {"code": "RATE_LIMITED", "message": "at most 10 uploads per 60 s; try again in 2 s", "details": {"retry_after_seconds": 2}}}'
            await route.fulfill(status=429, headers={"Retry-After": "2", "Content-Type": "application/json"}, body=body)
        else:
            await route.continue_()

    await page.route("**/api/v1/upload", refuse_first)
    await page.set_input_files("#picker", str(REAL_SPEECH_CLIP))
    row = page.locator("#uploads li.upload")
    await expect(row.locator(".upload-message")).to_have_text(re.compile(r"goes up by itself in [12] s"))
    await expect(page.locator("#jobs li.job")).to_have_count(1, timeout=20_000)  # uploaded by itself
    await expect(row).to_have_count(0)
    assert len(refusals) == 1
    # The 429 the route answered is the only console error.
    assert all("429" in error for error in watched.errors), watched.errors
    watched.errors.clear()
    watched.assert_clean()
    await context.close()


@pytest.mark.parametrize("language", ["en", "ru", "kk"])
async def test_the_header_keeps_its_place_in_every_language(stack, browser, language):
    context, page, watched = await open_page(browser, stack)
    await page.select_option("#ui-language", language)
    for width in (1280, 800, PHONE_WIDTH):
        await page.set_viewport_size({"width": width, "height": 800})
        boxes = await page.evaluate("""() => Object.fromEntries(["ui-language", "drop"].map((id) => {
            const box = (id === "ui-language" ? document.querySelector(".ui-language") : document.getElementById(id)).getBoundingClientRect();
            return [id, {top: box.top, bottom: box.bottom, left: box.left, right: box.right}];
        }).concat([["tagline", document.querySelector(".tagline").getBoundingClientRect().toJSON()],
                   ["title", document.querySelector("h1").getBoundingClientRect().toJSON()]]))""")
        menu, drop, tagline, title = boxes["ui-language"], boxes["drop"], boxes["tagline"], boxes["title"]
        assert menu["bottom"] + 8 <= drop["top"], (language, width, boxes)  # never touching the drop zone
        if width >= 800:  # beside the title, not under the tagline
            assert menu["top"] < title["bottom"] and menu["left"] >= tagline["right"], (language, width, boxes)
        widths = await page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert widths[0] <= widths[1], (language, width, widths)
    watched.assert_clean()
    await context.close()


async def test_sixty_jobs_are_all_reachable_and_rows_tell_two_uploads_of_one_file_apart(
    stack, browser, database, store
):
    """The list comes a page (50) at a time; "Show more" reaches the rest. Each row says when the file was
    uploaded, how long it is and its language(s)."""
    context, page, watched = await open_page(browser, stack)
    cookie = next(c["value"] for c in await context.cookies() if c["name"] == SESSION_COOKIE)
    owner = Authenticator._session_owner(cookie)
    inserted = []  # oldest first
    for number in range(1, 61):
        seconds = 60.0 + number  # each its own length
        filename = "interview.flac" if number in (3, 60) else f"meeting-{number:02d}.flac"
        words = [WordSpec(0.5, 1.0, f"Жиналыс {number}."), WordSpec(seconds - 1, seconds, "Рахмет.")]
        job_id = await insert_transcript(database, [segment_of_words("S1", words)], owner_id=owner, filename=filename)
        inserted.append(job_id)
    # The 58th in the list (newest first) and the newest: one file uploaded twice, told apart by the rows.
    older, newest = inserted[2], inserted[59]
    audio = SPEECH_CLIP.read_bytes()  # what the player reads when the job is opened
    await store.put_stream(f"jobs/{older}", aiter_of([audio]))
    async with database.begin() as session:
        await session.execute(
            update(Job).where(Job.id == older).values(language_shares={"kk": 0.7, "ru": 0.3}, size_bytes=len(audio))
        )
        await session.execute(
            update(Job).where(Job.id == newest).values(language_shares={"ru": 1.0}, detected_language="ru")
        )

    await page.reload()
    rows = page.locator("#jobs li.job")
    await expect(rows).to_have_count(50)
    more = page.locator("#more-jobs")
    await expect(more).to_have_text("Show more")
    await more.click()
    await expect(rows).to_have_count(60)
    await expect(more).to_be_hidden()
    # A refresh reads every page shown, so the older ones stay.
    await page.evaluate("() => refreshJobs()")
    await expect(rows).to_have_count(60)

    row = rows.nth(57)
    assert await row.get_attribute("data-job-id") == str(older)
    cookies = {c["name"]: c["value"] for c in await context.cookies()}
    async with httpx.AsyncClient(base_url=stack.http, cookies=cookies) as client:
        created_at = (await client.get(f"/api/v1/jobs/{older}")).json()["created_at"]
    date = row.locator(".job-date")
    assert await date.get_attribute("datetime") == created_at
    year = created_at[:4]
    await expect(date).to_have_text(re.compile(rf"{year}.*\d{{1,2}}:\d\d"))
    await expect(row.locator(".job-duration")).to_have_text("01:03")
    await expect(row.locator(".job-languages")).to_have_text("KK 70% · RU 30%")
    twin = rows.nth(0)
    assert await twin.get_attribute("data-job-id") == str(newest)
    assert await twin.locator(".job-name").text_content() == await row.locator(".job-name").text_content()
    await expect(twin.locator(".job-duration")).to_have_text("02:00")
    await expect(twin.locator(".job-languages")).to_have_text("RU")

    # Opened from the page: its own transcript.
    await row.locator(".open").click()
    await expect(page.locator("#transcript-title")).to_have_text("interview.flac")
    await expect(page.locator("#segments li.turn .text")).to_have_text("Жиналыс 3. Рахмет.")

    # In Russian the date is written the Russian way, and the labels follow.
    english_date = await date.text_content()
    await page.select_option("#ui-language", "ru")
    await expect(date).not_to_have_text(english_date)
    await expect(date).to_have_attribute("title", re.compile(r"^Загружено "))
    await expect(row.locator(".job-duration")).to_have_attribute("title", "Длительность 01:03")
    # Chromium has no Kazakh month names ("2026 M12 6"): in Kazakh the date is written in digits.
    await page.select_option("#ui-language", "kk")
    await expect(date).to_have_text(re.compile(rf"^\d\d\.\d\d\.{year}, \d\d:\d\d$"))
    await expect(row.locator(".job-languages")).to_have_attribute("title", "Тілдер")
    watched.assert_clean()
    await context.close()


async def test_no_speech_and_a_language_not_chosen_are_said_on_the_page_in_its_language(
    stack, browser, database, store
):
    """A job without speech says so in its row and instead of a transcript; one in a language not chosen names
    the language heard and the ones chosen, in the page's language (here Russian)."""
    context, page, watched = await open_page(browser, stack, locale="ru-RU")
    session = next(c["value"] for c in await context.cookies() if c["name"] == SESSION_COOKIE)
    owner = Authenticator._session_owner(session)
    silent = await insert_transcript(database, [], owner_id=owner, filename="тишина.flac")
    english = await insert_transcript(database, [segment_of_words("S1", [WordSpec(0.5, 0.9, "Привет")], "ru")],
                                      owner_id=owner, filename="meeting.flac")  # fmt: skip
    async with database.begin() as db:
        await db.execute(update(Job).where(Job.id == silent).values(notices=[notices.no_speech().as_json()]))
        heard = notices.unsupported_language("en", ("kk", "ru"), ("kk", "ru", "en"))
        await db.execute(update(Job).where(Job.id == english).values(notices=[heard.as_json()]))
    for job_id in (silent, english):  # the player loads each job's audio
        await store.put_stream(f"jobs/{job_id}", aiter_of([SPEECH_CLIP.read_bytes()]))
    await page.reload()
    silent_row = page.locator(f'#jobs li.job[data-job-id="{silent}"]')
    await expect(silent_row.locator(".job-note")).to_have_text("В этой записи не найдено речи.")
    await silent_row.locator(".open").click()
    await expect(page.locator("#transcript-notices")).to_have_text("В этой записи не найдено речи.")
    await expect(page.locator("#segments li.turn")).to_have_count(0)
    english_row = page.locator(f'#jobs li.job[data-job-id="{english}"]')
    await english_row.locator(".open").click()
    await expect(page.locator("#transcript-notices")).to_contain_text(
        "Большая часть записи звучит как английский, а его нет среди языков, выбранных для неё (казахский, русский)"
    )
    await page.select_option("#ui-language", "en")
    await expect(page.locator("#transcript-notices")).to_contain_text(
        "Most of this recording sounds like English, which is not among the languages chosen for it (Kazakh, Russian)"
    )
    watched.assert_clean()
    await context.close()
