"""Stored XSS in the admin, in real Chromium: script-shaped values saved in accounts and API
tokens render as text on every admin page; no script runs, no dialog opens, and the strict CSP
never has to block anything (so the escaping, not the CSP, is what stopped them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pyotp
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, expect

from tests.browser.staff import PASSWORD as PASSWORD  # re-exported: other tests sign in with it
from tests.browser.staff import serving_with_user
from tests.support import Server

pytestmark = pytest.mark.browser

ADMIN = "admin@example.org"
EMAILS = [
    "<img src=x onerror=alert(1)>@example.org",
    '"><svg onload=window.__xss=1>@example.org',
    "<script>window.__xss=1</script>@example.org",
]
TOKEN_NAMES = ["<script>alert(1)</script>", "<img src=x onerror=window.__xss=1>"]
WATCH = """
window.__xss = 0;
window.__csp = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__csp.push(event.violatedDirective + " " + event.blockedURI);
});
"""
"""Runs before every document (outside the page's CSP): a payload that ran would set
``__xss``; anything the CSP had to block lands in ``__csp``."""


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving_with_user(tmp_path_factory.mktemp("admin-xss"), ADMIN, "admin") as server:
        yield server


@dataclass
class Watched:
    page: Page
    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def clean(self) -> None:
        """Nothing ran and nothing had to be blocked on the page as it stands."""
        assert self.dialogs == []
        assert self.page.evaluate("window.__xss") == 0
        assert self.page.evaluate("window.__csp") == []
        # the refused e-mail addresses answered 400 on purpose; anything else is a finding
        expected = "the server responded with a status of 400"
        assert [m for m in self.console if expected not in m] == []


def watch(page: Page) -> Watched:
    watched = Watched(page)

    def on_dialog(dialog: Dialog) -> None:
        watched.dialogs.append(dialog.message)
        dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            watched.console.append(message.text)

    page.add_init_script(WATCH)
    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.console.append(str(error)))
    return watched


def without_browser_validation(page: Page) -> None:
    """An attacker posts what they like; the browser's own type=email check is not a defence."""
    page.evaluate("for (const form of document.forms) form.noValidate = true")


def sign_in_and_enrol(page: Page, url: str, email: str) -> None:
    page.goto(f"{url}/admin/login")
    without_browser_validation(page)
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin/mfa/enrol")
    secret = page.locator("p", has_text="Or enter this key by hand:").locator("code").inner_text()
    page.fill("#code", str(pyotp.TOTP(secret).now()))  # the served process uses the real clock
    page.get_by_role("button", name="Turn on").click()
    # A click returns once the next page is committed, not parsed: count() would not wait.
    expect(page.locator("ul.codes li")).to_have_count(10)
    page.get_by_role("link", name="Continue to the dashboard").click()
    page.wait_for_url("**/admin")


def test_script_shaped_accounts_and_tokens_stay_text(
    browser: Browser, page: Page, admin_server: Server
) -> None:
    watched = watch(page)
    url = admin_server.url
    sign_in_and_enrol(page, url, ADMIN)
    for email in EMAILS:
        page.goto(f"{url}/admin/users")
        without_browser_validation(page)
        page.fill("#email", email)
        page.select_option("#role", "admin")
        page.fill("#password", PASSWORD)
        page.get_by_role("button", name="Create account").click()
        # markup is not an e-mail address: refused, and the refusal page runs nothing either
        assert page.get_by_role("alert").first.inner_text() == "not an e-mail address"
    for name in TOKEN_NAMES:
        page.goto(f"{url}/admin/tokens")
        page.fill("#name", name)
        page.select_option("#role", "auditor")
        page.get_by_role("button", name="Create token").click()
        expect(page.locator("code.hash")).to_have_count(1)  # the token, shown once

    page.goto(f"{url}/admin/users")
    for email in EMAILS:
        assert page.get_by_role("rowheader", name=email, exact=True).count() == 0
    page.goto(f"{url}/admin/tokens")
    for name in TOKEN_NAMES:
        assert page.get_by_role("rowheader", name=name, exact=True).is_visible()
    for path in ("/admin/users", "/admin/tokens", "/admin/audit", "/admin"):
        page.goto(f"{url}{path}")
        assert page.locator("main img, main svg, main script").count() == 0, path
        watched.clean()
