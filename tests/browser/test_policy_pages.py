"""The policy as a visitor's browser renders it: accessible, strict CSP honoured, first-party."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect

from tests.support import Server

pytestmark = pytest.mark.browser


def watch(page: Page) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    hosts: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(message.text)

    def on_request(request: Request) -> None:
        hosts.append(urlparse(request.url).netloc)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", on_request)
    return problems, hosts


@pytest.mark.parametrize(
    ("lang", "heading"),
    [
        ("en", "Who is the data controller?"),
        ("fr", "Qui est le responsable du traitement ?"),
        ("ro", "Cine este operatorul datelor?"),
    ],
)
def test_privacy_page_renders_cleanly_in_each_language(
    page: Page, live_server: Server, lang: str, heading: str
) -> None:
    problems, hosts = watch(page)
    response = page.goto(f"{live_server.url}/privacy?lang={lang}")
    assert response is not None
    assert response.status == 200
    assert page.get_attribute("html", "lang") == lang
    assert page.locator("h1").count() == 1
    assert page.get_by_role("heading", name=heading, level=2).is_visible()
    table = page.get_by_role("table").first
    assert table.locator("caption").count() == 1
    assert table.locator("th[scope=col]").count() == 4
    stylesheet = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert "system-ui" in stylesheet  # the CSS loaded under the strict CSP
    assert problems == []  # no CSP violation, no script error
    assert set(hosts) == {urlparse(live_server.url).netloc}


def test_keyboard_user_can_skip_to_content_and_switch_language(
    page: Page, live_server: Server
) -> None:
    page.goto(f"{live_server.url}/privacy")
    # A returning visitor: on a first visit the consent banner takes the focus (see
    # test_consent_access.py), so answer it once; afterwards the skip link comes first.
    page.wait_for_selector(".gc-banner:not([hidden])")
    page.keyboard.press("Escape")
    page.reload()
    page.wait_for_selector(".gc-manage:not([hidden])")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to content"
    assert page.locator(".skip").bounding_box() is not None
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"
    page.get_by_role("link", name="Français").click()
    page.wait_for_url("**/privacy?lang=fr")
    assert page.get_attribute("html", "lang") == "fr"
    assert page.get_by_role("link", name="Français").get_attribute("aria-current") == "true"


def test_accept_language_picks_the_page_language(browser: Browser, live_server: Server) -> None:
    context = browser.new_context(
        locale="ro-RO", extra_http_headers={"Accept-Language": "ro-RO,ro;q=0.9"}
    )
    page = context.new_page()
    page.goto(f"{live_server.url}/cookies")
    assert page.get_attribute("html", "lang") == "ro"
    rows = page.locator("table tbody tr")
    assert rows.count() == 5  # the register's five cookies
    assert "gardien_consent" in rows.first.inner_text()
    context.close()


def test_version_page_shows_fingerprint_and_first_version(page: Page, live_server: Server) -> None:
    page.goto(f"{live_server.url}/privacy/versions")
    page.get_by_role("link", name="Version 1").click()
    expect(page.get_by_text("This is the first published version.")).to_be_visible()


def test_not_found_page_is_styled(page: Page, live_server: Server) -> None:
    problems, _ = watch(page)
    response = page.goto(f"{live_server.url}/no-such-page")
    assert response is not None
    assert response.status == 404
    assert page.get_by_role("heading", name="Page not found").is_visible()
    assert [p for p in problems if "404" not in p] == []
