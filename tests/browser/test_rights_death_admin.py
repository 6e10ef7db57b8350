"""An agent settles a death in real Chromium, against a real ``gardien serve``, through the
case page's own forms (no direct POST): record the deceased's request and an heir's, record the
death on the heir's case (the deceased's reference, who asks, the certificate uploaded), then
apply the heirs' limited rights. Each step is flashed; the timeline shows death recorded,
frozen, directive applied, freeze lifted, in that order; axe-core finds no violation on the case
page before, between and after the two steps. (The freeze's effects are observed in
tests/rights/test_death_freeze.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import FilePayload, Page

from tests.browser.staff import serving_with_user
from tests.browser.test_admin_xss import sign_in_and_enrol
from tests.browser.test_contact_form import violations
from tests.support import Server

pytestmark = pytest.mark.browser

AGENT = "agent@example.org"
DECEASED = "andrei.deceased@example.org"
HEIR = "elena.heir@example.org"


@pytest.fixture(scope="module")
def agent_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving_with_user(tmp_path_factory.mktemp("rights-death"), AGENT, "agent") as server:
        yield server


def _post_mortem_case(page: Page, url: str, email: str) -> str:
    """A post-mortem request by e-mail, recorded through the intake form; its reference."""
    page.goto(f"{url}/admin/rights/new")
    page.select_option("#channel", "email")
    page.get_by_label("post_mortem").check()
    page.fill("#email", email)
    page.get_by_role("button", name="Record", exact=True).click()
    page.wait_for_url("**/admin/rights/GR-*")
    return page.url.rsplit("/", 1)[1]


def test_an_agent_records_the_death_then_applies_the_directive_from_the_case_page(
    page: Page, agent_server: Server
) -> None:
    url = agent_server.url
    sign_in_and_enrol(page, url, AGENT)
    deceased = _post_mortem_case(page, url, DECEASED)
    heir = _post_mortem_case(page, url, HEIR)
    assert page.locator("#apply-directive").count() == 0  # not before the death is recorded
    assert violations(page) == []

    page.fill("#death-deceased", deceased)
    page.get_by_label("an heir (no directive, or none designating someone)").check()
    page.set_input_files(
        "#death-certificate",
        files=FilePayload(name="death.pdf", mimeType="application/pdf", buffer=b"%PDF-1.4 cert"),
    )
    page.locator("#record-death").click()
    page.wait_for_url(f"**/admin/rights/{heir}")
    assert page.get_by_role("status").first.inner_text().startswith("The death is recorded")
    assert page.locator("#post-mortem-state").inner_text().startswith("The death is recorded")
    assert page.locator("#record-death").count() == 0  # recorded once
    assert violations(page) == []

    page.fill("#directive-deceased", deceased)
    page.get_by_label("an heir (no directive, or none designating someone)").check()
    page.get_by_label("close_account").check()
    page.get_by_label("object", exact=True).check()
    page.locator("#apply-directive").click()
    page.wait_for_url(f"**/admin/rights/{heir}")
    flashed = page.get_by_role("status").first.inner_text()
    assert flashed == "The directive was applied and the freeze lifted."
    assert page.locator("#post-mortem-state").inner_text().startswith("The directive")
    assert page.locator("#apply-directive").count() == 0
    assert violations(page) == []

    steps = page.locator("#timeline td.step").all_inner_texts()
    order = [steps.index(s) for s in ("death_recorded", "frozen", "directive_applied")]
    assert order == sorted(order), steps
    assert steps.index("directive_applied") < steps.index("freeze_lifted"), steps
    details = page.locator("#timeline").inner_text()
    assert "close_account" in details and "object" in details
