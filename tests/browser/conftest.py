"""A real browser against the hub: Debian's Chromium driven by Playwright, the hub's
WSGI app served by a live-server thread exactly as gunicorn would run it (static files
through WhiteNoise, no test static handler), tasks run in-process by ``drain``.

A missing Chromium fails the run, never skips it (CI installs it: see .ci/run).
Screenshots go to var/browser/ on every run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("HUB_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "browser"


@pytest.fixture(scope="module")
def chromium():
    """The browser, for this module only. Playwright's sync API runs an event loop in
    this thread; Django's ORM calls in the tests (fixtures, drain) stay synchronous,
    one at a time, so async safety is lifted while the browser lives — and only then:
    the variable must not leak into later tests or the processes they start."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (the browser tests never skip)")
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-extensions", "--no-first-run",
        ])
        yield browser
        browser.close()


@pytest.fixture
def hub_url(transactional_db):
    """The hub's WSGI application on a free port, without Django's test static handler."""
    from django.test.testcases import LiveServerThread

    thread = LiveServerThread("127.0.0.1", static_handler=lambda handler: handler)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield f"http://127.0.0.1:{thread.port}"
    thread.terminate()


@pytest.fixture
def browse(chromium, hub_url):
    """``browse(username)``: a logged-in page for that user (password "pw"), which
    fails the test on any stylesheet or script that did not load."""
    contexts = []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def open_as(username: str):
        context = chromium.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.failed_assets = []
        page.on("response", lambda r: r.request.resource_type in ("stylesheet", "script") and r.status != 200
                and page.failed_assets.append((r.url, r.status)))
        page.on("requestfailed", lambda r: page.failed_assets.append((r.url, r.failure)))
        page.goto(f"{hub_url}/admin/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", "pw")
        page.click("input[type=submit]")
        page.wait_for_url(f"{hub_url}/admin/")
        page.hub = hub_url
        return page

    yield open_as
    for context in contexts:
        context.close()


def screenshot(page, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
