"""The person-facing rights pages in real Chromium, with the keyboard alone: a person Gardien
knows only by a phone number asks, receives the code by text message (the file ``serve``'s
sender writes in ``DATA_DIR/sms/``), confirms and sees the status page; a download link that
is not valid is refused with a clear message. axe-core finds no violation on these pages."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext

from tests.browser.consent import Site, running
from tests.browser.test_contact_form import first_visit, tab_to, violations
from tests.browser.test_rights_portal import send

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def person_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running(tmp_path_factory.mktemp("rights-person")) as site:
        yield site


def texted_code(site: Site, reference: str, timeout: float = 30.0) -> tuple[str, str]:
    """The code of ``reference``'s text message and its recipient, once the sender wrote it."""
    folder = site.database.parent / "data" / "sms"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(folder.glob("*.sms")) if folder.is_dir() else []:
            text = path.read_text()
            if reference in text:
                codes = [c for c in re.findall(r"\b\d{8}\b", text) if c != reference[-8:]]
                recipient = re.match(r"To: (\+\d+)\n", text)
                assert len(codes) == 1 and recipient, text
                return codes[0], recipient.group(1)
        time.sleep(0.5)
    raise AssertionError("the code's text message was not written")


def test_a_person_known_by_phone_only_confirms_with_a_texted_code(
    visitor: BrowserContext, person_site: Site
) -> None:
    page = first_visit(visitor, f"{person_site.url}/rights?lang=fr")
    tab_to(page, "#field-rights-erasure")
    page.keyboard.press("Space")
    tab_to(page, "#field-phone")
    page.keyboard.type("0721 234 567")
    send(page)
    assert page.locator("h1").inner_text() == "Consultez votre téléphone"
    assert violations(page) == []
    found = re.search(r"GR-\d{4}-[0-9A-F]{8}", page.locator("main").inner_text())
    assert found
    reference = found.group(0)
    code, recipient = texted_code(person_site, reference)
    assert recipient == "+40721234567"
    tab_to(page, f'a[href^="/rights/verify/{reference}"]')
    with page.expect_navigation():
        page.keyboard.press("Enter")
    tab_to(page, "#field-code")
    page.keyboard.type(code)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("h1").inner_text() == f"Votre demande {reference}"
    assert "721" not in page.locator("main").inner_text()  # the number is never shown back
    assert violations(page) == []


def test_a_download_link_that_is_not_valid_is_refused_clearly(
    visitor: BrowserContext, person_site: Site
) -> None:
    page = first_visit(
        visitor, f"{person_site.url}/rights/download/GR-2026-00000000?token=nope&lang=ro"
    )
    assert page.get_attribute("html", "lang") == "ro"
    assert violations(page) == []
    tab_to(page, "form button[type=submit]")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    alert = page.locator("[role=alert]")
    assert alert.inner_text() == "Acest link de descărcare nu este valabil."
    assert violations(page) == []
