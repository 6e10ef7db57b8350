"""A visitor downloads and erases the data bound to their browser from the cookie panel, in real
Chromium: consent given in the banner, pages measured with it, the package checked, then the
erasure (rows gone, cookies cleared, receipt shown), by keyboard, with no axe-core violation."""

from __future__ import annotations

import json
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page

from tests.browser.consent import Site, banner, consent_cookie, decide, open_page, panel, running
from tests.browser.test_tracker import DESKTOP_CHROME

pytestmark = pytest.mark.browser


def violations(page: Page) -> list[str]:
    results = Axe().run(page, context=".gc")
    return [
        f"{v['id']}: {[n['target'] for n in v['nodes']]}" for v in results.response["violations"]
    ]


def count(site: Site, sql: str) -> int:
    with sqlite3.connect(site.database) as connection:
        (found,) = connection.execute(sql).fetchone()
    return int(found)


def measured_visit(page: Page) -> None:
    """A page view the demo's Matomo snippet reports, answered once the hit is committed."""
    with page.expect_response(lambda r: "/matomo.php" in r.url) as hit:
        page.reload()
    assert hit.value.status in (200, 204)


def test_download_and_erase_my_data_from_the_cookie_panel(browser: Browser, tmp_path: Path) -> None:
    # A desktop Chrome's name: the robot filter leaves "HeadlessChrome" unmeasured.
    visitor = browser.new_context(locale="en-GB", user_agent=DESKTOP_CHROME, accept_downloads=True)
    with running(tmp_path) as site:
        config: dict[str, Any] = site.config("en")
        texts = config["self_service"]
        page = open_page(visitor, f"{site.url}/?lang=en")
        decide(
            page,
            banner(page, config).get_by_role("button", name=config["texts"]["accept"]).click,
        )
        stored = consent_cookie(visitor)
        assert stored is not None
        measured_visit(page)
        measured_visit(page)
        hits = count(site, "SELECT count(*) FROM analytics_hit WHERE consented = 1")
        assert hits >= 2
        cookieless = count(site, "SELECT count(*) FROM analytics_hit WHERE consented = 0")
        assert any(c["name"].startswith("_pk_id.1.") for c in visitor.cookies())
        records = site.history(stored.consent_id)

        page.get_by_role("button", name=config["texts"]["manage"]).first.click()
        modal = panel(page, config)
        section = modal.get_by_role("region", name=texts["heading"])
        assert texts["cookieless"] in section.inner_text()
        assert violations(page) == []

        download_button = section.get_by_role("button", name=texts["export"])
        download_button.focus()
        with page.expect_download() as info:
            page.keyboard.press("Enter")
        saved = info.value.path()
        with zipfile.ZipFile(saved) as archive:
            document = json.loads(archive.read("data.json"))
            assert "index.html" in archive.namelist()
        stores = document["stores"]
        assert stores["consent_records"]["found"] == {"consent_records": len(records)}
        assert stores["audience_measurement"]["found"] == {"audience_measurement": hits}
        exported = stores["consent_records"]["records"]["consent_records"]
        assert {row["consent_id"] for row in exported} == {stored.consent_id}
        assert info.value.suggested_filename == f"{document['case']}.zip"
        assert section.get_by_role("status").get_by_role("link").is_visible()

        page.once("dialog", lambda dialog: dialog.accept())
        section.get_by_role("button", name=texts["erase"]).focus()
        with page.expect_response(lambda r: "/api/rights/possession/erase?" in r.url) as e:
            page.keyboard.press("Enter")
        assert e.value.status == 200
        receipt = e.value.json()
        status = section.get_by_role("status")
        status.get_by_role("link", name=texts["erased"].replace("%s", receipt["case"])).wait_for()
        assert "consent_records: " in status.inner_text()
        assert count(site, "SELECT count(*) FROM analytics_hit WHERE consented = 1") == 0
        # The visit measured before consent, cookieless, cannot be tied to the browser: kept.
        assert count(site, "SELECT count(*) FROM analytics_hit") == cookieless
        assert count(site, "SELECT count(*) FROM consent_record WHERE purged = 0") == 0
        left = [c["name"] for c in visitor.cookies()]
        assert not [n for n in left if n == "gardien_consent" or n.startswith("_pk_")], left
        assert page.evaluate("Gardien.consent.get()") is None
        assert modal.locator(".gc-id").count() == 0
        assert violations(page) == []

        # Both requests are cases the staff see, verified by possession, answered.
        assert (
            count(
                site,
                "SELECT count(*) FROM rights_case WHERE channel = 'browser' AND status = 'closed'"
                " AND verified_at IS NOT NULL",
            )
            == 2
        )
        # Closing the panel asks again, recording nothing by itself.
        before = count(site, "SELECT count(*) FROM consent_record")
        page.keyboard.press("Escape")
        assert banner(page, config).is_visible()
        assert count(site, "SELECT count(*) FROM consent_record") == before
        page.reload()
        page.wait_for_selector(".gc-banner:not([hidden])")
    visitor.close()
