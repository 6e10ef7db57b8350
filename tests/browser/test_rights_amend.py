"""Rectification and post-mortem directives in real Chromium: a person asks, confirms with the
code the sender job wrote, then, from the status page, proposes corrections or records (with
the directive's own checkbox) and revokes directives. axe-core finds no violation."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.browser.consent import Site, running
from tests.browser.test_contact_form import (
    FRENCH,
    first_visit,
    send,
    tick_consent,
    type_fields,
    violations,
)
from tests.browser.test_rights_portal import code_for

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def amend_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running(tmp_path_factory.mktemp("amend")) as site:
        yield site


def confirmed(visitor: BrowserContext, site: Site, right: str, email: str) -> tuple[Page, str]:
    """Ask for ``right`` and confirm; the page and the status page's URL (with its token)."""
    page = first_visit(visitor, f"{site.url}/rights?lang=en")
    page.check(f"#field-rights-{right}")
    page.fill("#field-email", email)
    with page.expect_navigation():
        page.click("form.rights button[type=submit]")
    found = re.search(r"GR-\d{4}-[0-9A-F]{8}", page.locator("main").inner_text())
    assert found
    reference = found.group(0)
    status = page.get_attribute('a[href^="/rights/status/"]', "href")
    assert status
    with page.expect_navigation():
        page.click(f'a[href^="/rights/verify/{reference}"]')
    page.fill("#field-code", code_for(site, reference))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "Confirmed" in page.locator("main").inner_text()
    page.goto(f"{site.url}{status}")
    return page, reference


def test_a_person_proposes_corrections_from_the_status_page(
    visitor: BrowserContext, amend_site: Site
) -> None:
    page, _ = confirmed(visitor, amend_site, "rectification", FRENCH.typed["email"])
    # Only the fields of activities holding the person's data are offered: they wrote to us.
    contact = visitor.new_page()
    contact.goto(f"{amend_site.url}/contact?lang=fr")
    type_fields(contact, FRENCH)
    tick_consent(contact)
    send(contact, FRENCH)
    contact.close()
    with page.expect_navigation():
        page.click("#rectify-link")
    assert page.locator("h1").inner_text() == "Correct your data"
    assert violations(page) == []
    page.fill("#field-email", "not an address")
    with page.expect_navigation():
        page.click("#send-corrections")
    assert page.locator("#error-summary").is_visible()
    assert "email: the new value is not valid" in page.locator("#rectify-error").inner_text()
    assert page.locator("#field-email").input_value() == "not an address"
    assert violations(page) == []
    page.fill("#field-email", "maria.popescu@example.org")
    page.fill("#field-description", "My family name changed.")
    with page.expect_navigation():
        page.click("#send-corrections")
    assert page.locator("#rectify-done").is_visible()
    assert violations(page) == []


def test_a_person_records_then_revokes_post_mortem_directives(
    visitor: BrowserContext, amend_site: Site
) -> None:
    page, _ = confirmed(visitor, amend_site, "post_mortem", "ion.pop@example.org")
    with page.expect_navigation():
        page.click("#directive-link")
    assert page.locator("#directive-state").inner_text() == "You have no directives in force."
    assert violations(page) == []
    page.select_option("#instruction-all", "erase")
    page.fill("#designee-name", "Ana Pop")
    page.fill("#designee-contact", "ana.pop@example.org")
    with page.expect_navigation():
        page.click("#record-directive")  # without the directive's own checkbox
    assert "own explicit consent" in page.locator("#directive-error").inner_text()
    assert page.locator("#directive-state").inner_text() == "You have no directives in force."
    page.select_option("#instruction-all", "erase")
    page.fill("#designee-name", "Ana Pop")
    page.fill("#designee-contact", "ana.pop@example.org")
    page.check("#directive-consent")
    with page.expect_navigation():
        page.click("#record-directive")
    assert page.locator("#directive-message").inner_text() == "Your directives are recorded."
    assert page.locator("#instruction-all").input_value() == "erase"
    assert violations(page) == []
    with page.expect_navigation():
        page.click("#revoke-directive")
    assert "revoked" in page.locator("#directive-message").inner_text()
    assert page.locator("#directive-state").inner_text() == "You have no directives in force."
    assert page.locator("#designee-name").input_value() == ""
