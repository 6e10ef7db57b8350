"""An agent restricts processing for a person in real Chromium, against a real ``gardien
serve``: record the request, verify it, open the case's restriction page from the case page,
restrict; lifting is refused until the person was told, then the notice is sent and the
restriction lifted; the timeline shows each step, and axe-core finds no violation on the
restriction page. (What a restriction does in each domain is observed in
tests/rights/test_restriction.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from tests.browser.staff import serving_with_user
from tests.browser.test_admin_xss import sign_in_and_enrol
from tests.browser.test_contact_form import violations
from tests.support import Server

pytestmark = pytest.mark.browser

AGENT = "agent@example.org"
PERSON = "radu.restrict@example.org"


@pytest.fixture(scope="module")
def agent_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving_with_user(tmp_path_factory.mktemp("rights-restrict"), AGENT, "agent") as server:
        yield server


def test_an_agent_restricts_then_tells_the_person_then_lifts(
    page: Page, agent_server: Server
) -> None:
    url = agent_server.url
    sign_in_and_enrol(page, url, AGENT)
    page.goto(f"{url}/admin/rights/new")
    page.select_option("#channel", "email")
    page.get_by_label("access").check()
    page.fill("#email", PERSON)
    page.get_by_role("button", name="Record", exact=True).click()
    page.wait_for_url("**/admin/rights/GR-*")
    reference = page.url.rsplit("/", 1)[1]
    page.fill("#basis", "e-mail from the address on file")
    page.get_by_role("button", name="Mark as verified").click()
    page.wait_for_load_state()

    page.locator("#restriction-link").click()
    page.wait_for_url(f"**/admin/rights/{reference}/restriction")
    assert violations(page) == []
    assert page.locator("#restriction-state").inner_text() == "Processing is not restricted."
    page.locator("#restrict").click()
    page.wait_for_url(f"**/admin/rights/{reference}/restriction")
    assert page.locator("#restriction-state").inner_text().startswith("Processing is restricted")
    assert violations(page) == []

    refused = page.request.post(
        f"{url}/admin/rights/{reference}/restriction/lift",
        form={"csrf": page.locator('input[name="csrf"]').first.get_attribute("value") or ""},
        max_redirects=0,
    )
    assert refused.status == 409
    page.reload()
    assert page.locator("#restriction-state").inner_text().startswith("Processing is restricted")

    page.fill("#lift-message", "Your restriction will be lifted on 1 April.")
    page.locator("#announce-lift").click()
    page.wait_for_url(f"**/admin/rights/{reference}/restriction")
    page.locator("#lift").click()
    page.wait_for_url(f"**/admin/rights/{reference}/restriction")
    assert page.locator("#restriction-state").inner_text() == "Processing is not restricted."

    page.goto(f"{url}/admin/rights/{reference}")
    steps = page.locator("#timeline td.step").all_inner_texts()
    for step in ("verified", "restricted", "lift_announced", "restriction_lifted"):
        assert step in steps, (step, steps)
    assert steps.index("restricted") < steps.index("lift_announced")
    assert steps.index("lift_announced") < steps.index("restriction_lifted")
    evidence = page.request.get(f"{url}/admin/rights/{reference}/evidence")
    assert evidence.status == 403  # the DPO's
