"""The API docs (Swagger UI at /api/v1/docs) in headless Chromium: everything comes from the gateway, no
console error (so nothing broke the CSP), and "Try it out" works as the browser's session, CSRF token
included."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import start_stack, stop_stack
from tests.e2e.test_browser import Watched, browser, playwright_api, wait_until  # noqa: F401 - the browser fixture

pytest.importorskip("fastapi_offline", reason="Swagger UI's assets (fastapi-offline) are not installed")
expect = playwright_api.expect


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    started = start_stack(infra, tmp_path_factory.mktemp("docs"), services=("gateway",))
    yield started
    stop_stack(started)


async def test_docs_render_from_the_gateway_and_try_it_out_acts_as_the_session(stack, browser):  # noqa: F811
    context = await browser.new_context()
    page = await context.new_page()
    watched = Watched(page, stack.http)
    await page.goto(stack.http + "/api/v1/docs")
    await expect(page.locator(".opblock-summary-path[data-path='/api/v1/upload']")).to_be_visible()
    assert await page.locator(".opblock").count() >= 12
    watched.assert_clean()

    await page.evaluate("fetch('/api/v1/jobs')")  # the session starts, as on the page
    await wait_until(page, "() => document.cookie.includes('kazru_csrf=')")
    delete = page.locator(".opblock-delete").first
    await delete.locator(".opblock-summary").click()
    await delete.locator(".try-out__btn").click()
    await delete.locator("input[placeholder='job_id']").fill(str(uuid.uuid4()))
    await delete.locator(".execute").click()
    # A write of this session: refused as CSRF_TOKEN_MISSING without the token; with it, simply not found.
    status = delete.locator(".live-responses-table tbody .response-col_status").first
    await expect(status).to_have_text("404")
    await expect(delete.locator(".live-responses-table")).to_contain_text("JOB_NOT_FOUND")
    assert [method for method, _, token in watched.writes if token] == ["DELETE"]
    # Chromium logs the 404 answer itself as an error; nothing else may be there.
    assert len(watched.errors) == 1 and "404" in watched.errors[0], watched.errors
    await context.close()
