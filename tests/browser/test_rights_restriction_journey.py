"""Restriction of processing (Art. 18) end to end, in real Chromium against a real ``gardien
serve`` on SQLite, on a person seeded through the server's own endpoints (a contact form, a
cookie-panel decision, an audience-measurement hit; the connection log records each request).

The person asks on the portal with their e-mail address and consent id and confirms with the
code they were sent; the DPO restricts on the case's restriction page. The legal effect is
then observed in what each domain does, not in a flag: a new contact message from the person is
stored but its e-mail is held and the submission marked restricted; the person's audience-
measurement hits are no longer stored (another visitor's are). Lifting is refused until the
person was told (Art. 18(3)); once told and lifted, their hits are stored again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.browser.test_admin_xss import sign_in_and_enrol
from tests.browser.test_rights_journeys import (
    BROWSER_LIKE,
    PERSON,
    Journey,
    _ask_and_confirm,
    _mail,
    _rows,
    seeded_journey,
)
from tests.browser.test_rights_withdrawal_objection import _stored_after
from tests.forms.test_submit import GOOD

pytestmark = pytest.mark.browser

DPO = "dpo.restrict@example.org"


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    with seeded_journey(tmp_path_factory.mktemp("rights-restrict-journey"), DPO, "dpo") as seeded:
        yield seeded


def _contact(url: str, email: str, message: str) -> None:
    with httpx.Client(base_url=url, timeout=30, headers=BROWSER_LIKE) as client:
        definition = client.get("/api/forms/contact?lang=ro").json()
        time.sleep(3.2)  # the form's min_fill_seconds, on the server's real clock
        sent = client.post(
            "/api/forms/contact",
            json={
                **GOOD,
                "email": email,
                "message": message,
                "shown_at": definition["shown_at"],
                "lang": "ro",
            },
        )
        assert sent.status_code in (200, 201), sent.text


def _latest_submission(journey: Journey) -> tuple[object, list[object]]:
    """The newest submission's ``restricted`` flag and the statuses of its messages, once the
    sender has looked at them (none still pending)."""
    deadline = time.monotonic() + 30
    while True:
        [(submission_id, restricted)] = _rows(
            journey.database, "SELECT id, restricted FROM form_submission ORDER BY id DESC LIMIT 1"
        )
        query = f"SELECT status FROM outbox_message WHERE submission_id = {int(str(submission_id))}"
        statuses = [status for (status,) in _rows(journey.database, query)]
        if (statuses and "pending" not in statuses) or time.monotonic() > deadline:
            return restricted, statuses
        time.sleep(0.2)


def test_a_restriction_asked_on_the_portal_holds_in_each_domain_until_lifted(
    browser: Browser, page: Page, journey: Journey
) -> None:
    url = journey.server.url
    decided = int(time.time())
    assert _stored_after(journey, journey.consent_id, decided) == 2  # before: measured
    _contact(url, PERSON, "A question before I ask for a restriction.")
    restricted, statuses = _latest_submission(journey)
    assert not restricted and "held" not in statuses, statuses  # before: e-mailed as usual

    context = browser.new_context(locale="en-GB")
    person = context.new_page()
    reference = _ask_and_confirm(person, journey, "restriction")
    context.close()

    sign_in_and_enrol(page, url, DPO)
    page.goto(f"{url}/admin/rights/{reference}/restriction")
    page.locator("#restrict").click()
    page.wait_for_url(f"**/admin/rights/{reference}/restriction")
    assert page.locator("#restriction-state").inner_text().startswith("Processing is restricted")

    # contact forms: stored (Art. 18(2) allows storage) but not e-mailed, and marked
    _contact(url, PERSON, "A question while processing is restricted.")
    restricted, statuses = _latest_submission(journey)
    assert restricted and statuses and set(statuses) == {"held"}, (restricted, statuses)
    # audience measurement: the person's hit is answered but not stored; the other's is
    assert _stored_after(journey, journey.consent_id, decided) == 1

    # lifting only after the person was told, and then processing resumes
    csrf = page.locator('input[name="csrf"]').first.get_attribute("value") or ""
    refused = page.request.post(
        f"{url}/admin/rights/{reference}/restriction/lift", form={"csrf": csrf}, max_redirects=0
    )
    assert refused.status == 409
    page.fill("#lift-message", "Your restriction will be lifted tomorrow.")
    page.locator("#announce-lift").click()
    page.wait_for_url(f"**/admin/rights/{reference}/restriction")
    assert "will be lifted tomorrow" in _mail(journey.root, reference, "lifted tomorrow")
    page.locator("#lift").click()
    page.wait_for_url(f"**/admin/rights/{reference}/restriction")
    assert page.locator("#restriction-state").inner_text() == "Processing is not restricted."
    assert _stored_after(journey, journey.consent_id, decided) == 2

    page.goto(f"{url}/admin/rights/{reference}")
    steps = page.locator("#timeline td.step").all_inner_texts()
    for step in ("restricted", "lift_announced", "restriction_lifted"):
        assert step in steps, (step, steps)
