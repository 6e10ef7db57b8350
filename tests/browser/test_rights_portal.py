"""The rights portal in real Chromium, with the keyboard alone: a person picks a right, gives
their e-mail address, sends, then enters the one-time code the sender job wrote as an ``.eml``
file and lands on the status page. A request without a right gets an error summary whose link
leads to the choices. axe-core finds no violation on any of these pages."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.browser.consent import Site, running
from tests.browser.test_contact_form import first_visit, focus_matches, tab_to, violations

pytestmark = pytest.mark.browser

SEND = "form.rights button[type=submit]"


@pytest.fixture(scope="module")
def rights_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running(tmp_path_factory.mktemp("rights")) as site:
        yield site


def code_for(site: Site, reference: str, timeout: float = 30.0) -> str:
    """The code of ``reference``'s e-mail, once ``serve``'s sender job has written it."""
    outbox = site.database.parent / "data" / "outbox"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(outbox.glob("*.eml")) if outbox.is_dir() else []:
            message = BytesParser(policy=policy.default).parsebytes(Path(path).read_bytes())
            assert isinstance(message, EmailMessage)
            if reference not in str(message["Subject"]):
                continue
            body = message.get_body(("plain",))
            assert body is not None
            # The reference's own eight hex digits may all be figures: they are not the code.
            text = str(body.get_content())
            codes: list[str] = re.findall(r"\b\d{8}\b", text)
            codes = [c for c in codes if c != reference[-8:]]
            assert codes, text
            return codes[0]
        time.sleep(0.5)
    raise AssertionError("the code's e-mail was not written")


def send(page: Page) -> None:
    tab_to(page, SEND)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_a_keyboard_user_asks_confirms_and_sees_the_status(
    visitor: BrowserContext, rights_site: Site
) -> None:
    page = first_visit(visitor, f"{rights_site.url}/rights?lang=ro")
    assert page.get_attribute("html", "lang") == "ro"
    assert violations(page) == []
    tab_to(page, "#field-rights-access")
    page.keyboard.press("Space")
    assert page.locator("#field-rights-access").is_checked()
    tab_to(page, "#field-email")
    page.keyboard.type("ioana.ionescu@exemplu.ro")
    send(page)
    assert page.locator("h1").inner_text() == "Verificați-vă căsuța de e-mail"
    assert violations(page) == []
    found = re.search(r"GR-\d{4}-[0-9A-F]{8}", page.locator("main").inner_text())
    assert found
    reference = found.group(0)
    code = code_for(rights_site, reference)

    tab_to(page, f'a[href^="/rights/verify/{reference}"]')
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert violations(page) == []
    tab_to(page, "#field-code")
    page.keyboard.type(code)
    with page.expect_navigation():
        page.keyboard.press("Enter")  # Enter in the field sends its form
    assert page.locator("h1").inner_text() == f"Cererea dumneavoastră {reference}"
    assert "Confirmată" in page.locator("main").inner_text()
    assert "ioana.ionescu" not in page.content()
    assert violations(page) == []


def test_a_request_without_a_right_leads_back_to_the_choices(
    visitor: BrowserContext, rights_site: Site
) -> None:
    page = first_visit(visitor, f"{rights_site.url}/rights?lang=fr")
    tab_to(page, "#field-email")
    page.keyboard.type("camille.martin@cabinet.example")
    send(page)
    summary = page.locator("#error-summary")
    assert summary.is_visible() and summary.get_attribute("role") == "alert"
    assert page.locator("#error-summary-title").inner_text() == "Certains champs sont à corriger"
    assert page.locator("#field-email").input_value() == "camille.martin@cabinet.example"
    assert violations(page) == []
    page.evaluate("document.activeElement.blur()")
    tab_to(page, "#error-summary a")
    page.keyboard.press("Enter")
    assert focus_matches(page, "#field-rights-access")
    page.keyboard.press("Space")
    send(page)
    assert page.locator("h1").inner_text() == "Consultez votre messagerie"
