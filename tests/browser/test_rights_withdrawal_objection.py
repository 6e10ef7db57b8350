"""Withdrawal of consent and objection end to end, in real Chromium against a real ``gardien
serve`` on SQLite, each on a person seeded through the server's own endpoints (a contact form
given on consent, a cookie-panel decision, an audience-measurement hit with that consent; the
server's connection log records each request): the person asks on the portal with their
e-mail address and consent id and confirms with the code the sender wrote. The legal effect is
then observed in what each domain does next, not in a flag:

- withdrawal (Art. 7(3)), carried out at once on confirmation: the consent chain ends with a
  ``withdraw`` record, the contact form given on consent is marked withdrawn, and a hit still
  carrying the person's consent cookie is answered but not stored (another visitor's is);
- objection (Art. 21): the DPO, signed in, upholds it for audience measurement on the case's
  restriction page; from then on the person's hits are not stored (another visitor's are),
  while before the decision they were.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from gardien.analytics.blocks import REFRESH
from tests.browser.test_admin_xss import sign_in_and_enrol
from tests.browser.test_rights_journeys import (
    Journey,
    _ask_and_confirm,
    _mail,
    _rows,
    _seed,
    consented_hit,
    seeded_journey,
)

pytestmark = pytest.mark.browser

DPO = "dpo@example.org"
OBJECTOR = "radu.objects@clinica.example.ro"


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    with seeded_journey(tmp_path_factory.mktemp("rights-withdraw-object"), DPO, "dpo") as seeded:
        yield seeded


def _hits(database: Path) -> int:
    return int(str(_rows(database, "SELECT count(*) FROM analytics_hit")[0][0]))


def _stored_after(journey: Journey, consent_id: str, decided_at: int) -> int:
    """How many hits are stored after one with ``consent_id``'s cookie (its decision made
    at ``decided_at``), followed by one from another visitor who just consented: the other
    visitor's hit is waited for (the writer stores hits in arrival order), then the count is
    read. Each server re-reads its block list every ``REFRESH`` seconds: that is waited first."""
    time.sleep(REFRESH + 0.5)
    before = _hits(journey.database)
    consented_hit(journey.server.url, consent_id, decide=False, decided_at=decided_at)
    consented_hit(journey.server.url, secrets.token_hex(16))
    deadline = time.monotonic() + 30
    while _hits(journey.database) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # the writer's next batch, had the person's hit been queued after it
    return _hits(journey.database) - before


def test_withdrawal_of_consent_through_the_portal_takes_effect_in_each_domain(
    browser: Browser, journey: Journey
) -> None:
    database = journey.database
    assert _rows(database, "SELECT status FROM form_submission") != []
    decided = int(time.time())  # the cookie the person's browser keeps
    assert _stored_after(journey, journey.consent_id, decided) == 2  # before: measured
    context = browser.new_context(locale="en-GB")
    person = context.new_page()
    reference = _ask_and_confirm(person, journey, "withdraw_consent")
    assert person.locator("#withdrawn").is_visible()  # the status page, on confirmation
    told = " ".join(_mail(journey.root, reference, "withdrawn").split())
    assert re.search(r"every consent you gave us is withdrawn \(\d+\)", told), told
    # consent records: the chain ends with the withdrawal
    [(action, layer)] = _rows(
        database, "SELECT action, layer FROM consent_record ORDER BY seq DESC LIMIT 1"
    )
    assert (action, layer) == ("withdraw", "api")
    # contact forms: the message given on consent is marked withdrawn
    statuses = [s for (s,) in _rows(database, "SELECT status FROM form_submission")]
    assert statuses.count("withdrawn") == 1, statuses
    # audience measurement: the person's cookie no longer leads to a stored hit
    assert _stored_after(journey, journey.consent_id, decided) == 1
    context.close()


def test_an_upheld_objection_stops_audience_measurement_for_the_person(
    browser: Browser, page: Page, journey: Journey
) -> None:
    url = journey.server.url
    consent_id = secrets.token_hex(16)
    _seed(url, consent_id, email=OBJECTOR)
    decided = int(time.time())
    assert _stored_after(journey, consent_id, decided) == 2  # measured, like anyone consenting
    context = browser.new_context(locale="en-GB")
    person = context.new_page()
    reference = _ask_and_confirm(person, journey, "objection", OBJECTOR, consent_id)
    context.close()
    sign_in_and_enrol(page, url, DPO)
    page.goto(f"{url}/admin/rights/{reference}/restriction")
    page.select_option("#objection-activity", "audience_measurement")
    page.fill("#objection-grounds", "Measurement is not needed for this person's care.")
    page.locator("#objection-upheld").click()
    page.wait_for_url(f"**/admin/rights/{reference}/restriction")
    assert "audience_measurement" in page.locator("#objections").inner_text()
    page.goto(f"{url}/admin/rights/{reference}")
    assert "objection_decided" in page.locator("#timeline td.step").all_inner_texts()
    # the processing stops for this person only (the other visitor's hit is stored)
    assert _stored_after(journey, consent_id, decided) == 1
