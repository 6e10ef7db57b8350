"""An agent's journey through a rights case in real Chromium, against a real ``gardien serve``:
sign in with a TOTP second factor, record a request that came by post with its scanned letter,
verify it on a recorded basis, build the access package (a real download), close the case; the
timeline shows every step and the queue lists the case without any identifier; axe-core finds
no violation on the queue, the intake form or the case page."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.browser.staff import serving_with_user
from tests.browser.test_admin_xss import sign_in_and_enrol
from tests.browser.test_contact_form import violations
from tests.support import Server

pytestmark = pytest.mark.browser

AGENT = "agent@example.org"
PERSON = "ioana.letter@example.org"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64


@pytest.fixture(scope="module")
def agent_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving_with_user(tmp_path_factory.mktemp("rights-admin"), AGENT, "agent") as server:
        yield server


def test_an_agent_records_a_letter_verifies_exports_and_closes(
    page: Page, agent_server: Server
) -> None:
    url = agent_server.url
    sign_in_and_enrol(page, url, AGENT)
    page.get_by_role("link", name="Rights requests").click()
    page.wait_for_url("**/admin/rights")
    assert violations(page) == []
    page.get_by_role("link", name="Record a request received by e-mail or post").click()
    page.wait_for_url("**/admin/rights/new")
    assert violations(page) == []
    page.select_option("#channel", "post")
    page.get_by_label("access").check()
    page.fill("#email", PERSON)
    page.select_option("#language", "ro")
    page.set_input_files("#scan", {"name": "letter.png", "mimeType": "image/png", "buffer": PNG})
    page.get_by_role("button", name="Record", exact=True).click()
    page.wait_for_url("**/admin/rights/GR-*")
    reference = page.url.rsplit("/", 1)[1]
    assert violations(page) == []
    assert PERSON in page.locator("#h-identifiers + p + dl").inner_text()
    assert page.locator("#verified").inner_text() == "not verified yet"

    page.fill("#basis", "letter signed, address matches")
    page.get_by_role("button", name="Mark as verified").click()
    page.wait_for_load_state()
    assert "letter signed, address matches" in page.locator("#verified").inner_text()

    with page.expect_download() as downloading:
        page.get_by_role("button", name="Build the package (ZIP)").click()
    download = downloading.value
    assert download.suggested_filename == f"{reference}.zip"
    content = Path(download.path()).read_bytes()
    assert {"index.html", "data.json"} <= set(zipfile.ZipFile(io.BytesIO(content)).namelist())

    page.goto(f"{url}/admin/rights/{reference}")
    page.select_option("#outcome", "fulfilled")
    page.get_by_role("button", name="Close the case", exact=True).click()
    page.wait_for_load_state()
    assert page.locator("#status").inner_text() == "closed (fulfilled)"
    steps = page.locator("#timeline td.step").all_inner_texts()
    for step in (
        "opened",
        "attached",
        "verified",
        "package_built",
        "package_downloaded",
        "answered",
        "closed",
    ):
        assert step in steps, (step, steps)
    assert steps.index("attached") < steps.index("verified") < steps.index("package_built")

    page.goto(f"{url}/admin/rights?status=closed")
    queue = page.locator("main").inner_text()
    assert reference in queue and PERSON not in queue
