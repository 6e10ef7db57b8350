"""The audience-measurement opt-out in real Chromium: a keyboard user opts out and back in on
``/analytics/opt-out``, the control embedded in ``/privacy`` works inside its frame, the page
may be framed by a site of the register and by no other, and axe-core finds no violation."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Frame, Page

from tests.browser.test_contact_form import first_visit, tab_to, violations
from tests.support import Server

pytestmark = pytest.mark.browser

BUTTON = "form button[type=submit]"
STATUS = "#optout-state"
TITLE = "Audience measurement: your choice"


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(locale="en-GB", reduced_motion="reduce")
    yield context
    context.close()


def console_problems(context: BrowserContext) -> list[str]:
    """Errors and warnings of every page and frame of ``context`` (a CSP refusal is one)."""
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(message.text)

    context.on("console", on_console)
    return problems


def optout_cookie(context: BrowserContext) -> dict[str, object] | None:
    for cookie in context.cookies():
        if cookie.get("name") == "gardien_optout":
            return dict(cookie)
    return None


def test_keyboard_only_opt_out_and_back_in(context: BrowserContext, live_server: Server) -> None:
    problems = console_problems(context)
    page = first_visit(context, f"{live_server.url}/analytics/opt-out?lang=en")
    assert page.get_attribute("html", "lang") == "en"
    assert page.locator("h1").count() == 1
    status = page.get_by_role("status")
    assert "measured, without cookies" in status.inner_text()
    assert violations(page) == []

    tab_to(page, BUTTON)
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    assert page.evaluate("document.activeElement.textContent.trim()") == (
        "Opt out of audience measurement"
    )
    before = dt.datetime.now(dt.UTC)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert urlparse(page.url).path == "/analytics/opt-out"
    assert "You have opted out" in page.get_by_role("status").inner_text()
    cookie = optout_cookie(context)
    assert cookie is not None
    assert cookie["value"] == "1" and cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    expires = dt.datetime.fromtimestamp(float(str(cookie["expires"])), dt.UTC)
    # 13 months, the register's duration: between 393 and 397 days whatever the month.
    assert 393 <= (expires - before).days <= 397
    assert violations(page) == []

    tab_to(page, BUTTON)
    assert page.evaluate("document.activeElement.textContent.trim()") == "Measure my visits again"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "measured, without cookies" in page.get_by_role("status").inner_text()
    assert optout_cookie(context) is None
    assert problems == []


def opt_out_frame(page: Page) -> Frame:
    element = page.locator(".optout-control iframe")
    element.scroll_into_view_if_needed()
    frame = element.element_handle().content_frame()
    assert frame is not None
    frame.wait_for_selector(STATUS)
    return frame


def test_the_control_embedded_in_the_privacy_policy_works(
    context: BrowserContext, live_server: Server
) -> None:
    problems = console_problems(context)
    page = first_visit(context, f"{live_server.url}/privacy?lang=fr")
    frame = opt_out_frame(page)
    assert page.locator(".optout-control iframe").get_attribute("title") == (
        "Mesure d’audience : votre choix"
    )
    assert frame.get_attribute("html", "lang") == "fr"
    assert "mesurées, sans cookies" in frame.locator(STATUS).inner_text()
    assert frame.locator("footer").count() == 0  # the minimal version, without the layout

    with frame.expect_navigation():
        frame.locator(BUTTON).press("Enter")
    frame = opt_out_frame(page)
    assert "Vous vous êtes opposé" in frame.locator(STATUS).inner_text()
    assert urlparse(page.url).path == "/privacy"  # the policy itself stayed where it was
    assert optout_cookie(context) is not None
    assert violations(page) == []

    # The same state on the page itself, and back in from there.
    own = context.new_page()
    own.goto(f"{live_server.url}/analytics/opt-out?lang=fr")
    assert "Vous vous êtes opposé" in own.locator(STATUS).inner_text()
    with frame.expect_navigation():
        frame.locator(BUTTON).click()
    frame = opt_out_frame(page)
    assert "mesurées, sans cookies" in frame.locator(STATUS).inner_text()
    assert optout_cookie(context) is None
    assert problems == []


@contextmanager
def site_page(address: str, body: str) -> Iterator[int]:
    """A page of another web site, served for real on ``address`` (a real server, not an
    interception: Chromium refuses frames of a loopback address inside a page it takes for
    public, which an intercepted response is)."""
    payload = body.encode()

    class SitePage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((address, 0), SitePage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("address", "host", "framed"),
    [
        ("127.0.0.1", "localhost", True),  # a hostname of the register's site
        ("127.0.0.2", "127.0.0.2", False),  # any other site
    ],
)
def test_only_the_registers_sites_may_frame_the_page(
    context: BrowserContext, live_server: Server, address: str, host: str, framed: bool
) -> None:
    embed = f"{live_server.url}/analytics/opt-out?embed=1&lang=ro"
    body = (
        '<!doctype html><html lang="ro"><title>Site</title>'
        f'<iframe src="{embed}" title="{TITLE}"></iframe></html>'
    )
    with site_page(address, body) as port:
        page = context.new_page()
        refused: list[str] = []
        page.on("console", lambda message: refused.append(message.text))
        page.goto(f"http://{host}:{port}/confidentialitate")
        frame = page.frames[1]
        if framed:
            frame.wait_for_selector(STATUS)
            assert "măsurate, fără cookie-uri" in frame.locator(STATUS).inner_text()
            assert refused == []
        else:
            page.wait_for_timeout(500)
            assert frame.locator(STATUS).count() == 0
            assert any("frame-ancestors" in text for text in refused)
