"""A decision over time, in real Chromium: asked again after six months (R5) and when the
banner's content changes (R6), withdrawn as easily as given (R8), proven by one server record
per decision (R9), and Global Privacy Control honoured (R10)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Request

from gardien.consent.records import CHAINED
from tests.browser.consent import (
    GPC_SCRIPT,
    SEED_REGISTER,
    Site,
    banner,
    consent_cookie,
    decide,
    open_page,
    panel,
    running,
    set_consent_cookie,
)

pytestmark = pytest.mark.browser

RECORD_FIELDS = set(CHAINED)  # every field the record's hash covers
MONTH = 31 * 86400


def demo(consent_site: Site) -> str:
    return f"{consent_site.url}/?lang=en"


def ran_measurement(page: Page) -> bool:
    return bool(page.evaluate("window.gardienDemoMeasured === true"))


def banner_button(page: Page, banner_config: dict[str, Any], name: str) -> Locator:
    return banner(page, banner_config).get_by_role("button", name=banner_config["texts"][name])


def accept_all(page: Page, banner_config: dict[str, Any]) -> dict[str, Any]:
    return decide(page, banner_button(page, banner_config, "accept").click)


@pytest.mark.parametrize(("months_ago", "asked_again"), [(5, False), (7, True)])
def test_a_decision_is_asked_again_after_six_months(
    visitor: BrowserContext,
    consent_site: Site,
    banner_config: dict[str, Any],
    months_ago: int,
    asked_again: bool,
) -> None:
    """R5: the stored decided-at is moved back (no waiting); past six months the banner asks
    again, the measurement no longer runs, and the new answer is a renewal under the same id."""
    page = open_page(visitor, demo(consent_site))
    accept_all(page, banner_config)
    stored = consent_cookie(visitor)
    assert stored is not None
    backdated = stored.decided_at - months_ago * MONTH
    set_consent_cookie(
        visitor,
        consent_site.url,
        f"1:{stored.consent_id}:{stored.revision}:{backdated}:audience_measurement=1",
    )
    page.reload()
    page.wait_for_selector(".gc-banner:not([hidden]), .gc-manage:not([hidden])")
    assert banner(page, banner_config).is_visible() == asked_again
    assert ran_measurement(page) != asked_again
    if asked_again:
        assert page.evaluate("Gardien.consent.get()") is None
        decide(page, banner_button(page, banner_config, "reject").click)
        first, renewal = consent_site.history(stored.consent_id)
        assert (first["action"], renewal["action"]) == ("accept_all", "renewal")
        assert renewal["choices"]["categories"]["audience_measurement"] is False


def test_an_unreadable_cookie_is_no_consent(
    visitor: BrowserContext, consent_site: Site, banner_config: dict[str, Any]
) -> None:
    """Corrupt cookies never count as consent (docs/consent.md)."""
    for value in ("1:zz:1:1:audience_measurement=1", "garbage", "1:" + "a" * 32 + ":1:x:y"):
        set_consent_cookie(visitor, consent_site.url, value)
        page = open_page(visitor, demo(consent_site))
        assert banner(page, banner_config).is_visible()
        assert not ran_measurement(page)
        page.close()


def test_a_changed_banner_asks_again_and_says_what_changed(
    browser: Browser, tmp_path: Path
) -> None:
    """R6: the same database served with a register whose category description changed gets
    a new revision; a visitor who had accepted is asked again, with the change message."""
    register = tmp_path / "register.yaml"
    seed = SEED_REGISTER.read_text(encoding="utf-8")
    old = "Allows Matomo cookies that recognise your browser between visits"
    assert old in seed
    register.write_text(
        seed.replace(old, "Allows Matomo cookies that recognise your browser from visit to visit"),
        encoding="utf-8",
    )
    shutil.copy(SEED_REGISTER.parent / "checklist.yaml", tmp_path / "checklist.yaml")
    visitor = browser.new_context(locale="en-GB")
    with running(tmp_path) as before:
        first = before.config("en")
        page = open_page(visitor, demo(before))
        accept_all(page, first)
        page.reload()
        page.wait_for_selector("html[data-demo-measured=yes]", state="attached")
        page.close()
    with running(tmp_path, register) as after:
        changed = after.config("en")
        assert changed["revision"] == first["revision"] + 1
        assert changed["changes"]
        page = open_page(visitor, demo(after))
        dialog = banner(page, changed)
        assert dialog.is_visible()
        assert dialog.get_by_text(changed["texts"]["changed"]).is_visible()
        assert changed["changes"] in dialog.inner_text()
        assert not ran_measurement(page)
        answer = accept_all(page, changed)
        assert answer["revision"] == changed["revision"]
        stored = consent_cookie(visitor)
        assert stored is not None and stored.revision == changed["revision"]
    visitor.close()


def test_withdrawing_is_as_easy_as_consenting(
    visitor: BrowserContext, consent_site: Site, banner_config: dict[str, Any]
) -> None:
    """R8: a way back on every page; switching a category off deletes its cookies at once,
    and its scripts no longer run from the next page view."""
    texts = banner_config["texts"]
    page = open_page(visitor, demo(consent_site))
    accept_all(page, banner_config)
    page.wait_for_selector("html[data-demo-measured=yes]", state="attached")
    assert {"_pk_id.1.abcd", "_pk_ses.1.abcd"} <= {c["name"] for c in visitor.cookies()}
    for path in ("/privacy?lang=en", "/cookies?lang=en", "/?lang=en"):
        page.goto(consent_site.url + path)
        manage = page.locator(".gc-manage")
        manage.wait_for(state="visible")
        assert manage.get_attribute("aria-label") == texts["manage"]
    # The footer control opens the panel, showing the current choices.
    page.locator("main [data-gardien-consent=show]").click()
    dialog = panel(page, banner_config)
    switch = dialog.get_by_role("switch", name=banner_config["categories"][1]["title"])
    assert switch.is_checked()
    switch.uncheck()
    decide(page, dialog.get_by_role("button", name=texts["save"]).click)
    assert not [c for c in visitor.cookies() if c["name"].startswith("_pk_")]
    stored = consent_cookie(visitor)
    assert stored is not None
    records = consent_site.history(stored.consent_id)
    assert [r["action"] for r in records] == ["accept_all", "withdraw"]
    assert (records[1]["layer"], records[1]["control"]) == ("panel", "save")
    requested: list[Request] = []
    page.on("request", lambda request: requested.append(request))
    page.reload()
    page.wait_for_selector(".gc-manage:not([hidden])")
    assert not ran_measurement(page)
    assert "/demo/measure.js" not in {urlparse(r.url).path for r in requested}
    assert page.locator("iframe").get_attribute("src") is None


def test_every_decision_leaves_exactly_one_complete_record(
    visitor: BrowserContext, consent_site: Site, banner_config: dict[str, Any]
) -> None:
    """R9: accept, customise, withdraw, close: one durable record each, with every field of
    the proof; get() and the gardien:consent event say the same as the cookie."""
    texts = banner_config["texts"]
    page = open_page(visitor, demo(consent_site))
    count = consent_site.record_count()
    client_before = time.time()

    def panel_button(name: str) -> Locator:
        page.locator(".gc-manage").click()
        return panel(page, banner_config).get_by_role("button", name=texts[name])

    def customise() -> None:
        page.locator(".gc-manage").click()
        panel(page, banner_config).get_by_role("switch").nth(1).check()
        panel(page, banner_config).get_by_role("button", name=texts["save"]).click()

    steps: list[tuple[str, str, str, bool, Callable[[], None]]] = [
        (
            "accept_all",
            "banner",
            "accept",
            True,
            banner_button(page, banner_config, "accept").click,
        ),
        ("withdraw", "panel", "reject", False, lambda: panel_button("reject").click()),
        ("custom_save", "panel", "save", True, customise),
        ("accept_all", "panel", "accept", True, lambda: panel_button("accept").click()),
    ]
    answers = []
    for _action, _layer, _control, _granted, act in steps:
        answers.append(decide(page, act))
        count += 1
        assert consent_site.record_count() == count
    stored = consent_cookie(visitor)
    assert stored is not None
    records = consent_site.history(stored.consent_id)
    assert len(records) == len(steps)
    for record, answer, (action, layer, control, granted, _act) in zip(
        records, answers, steps, strict=True
    ):
        assert set(record) >= RECORD_FIELDS
        missing = sorted(name for name in RECORD_FIELDS if record[name] is None)
        assert missing == []
        assert (record["action"], record["layer"], record["control"]) == (action, layer, control)
        assert record["event_id"] == answer["event_id"]
        assert record["consent_id"] == stored.consent_id == answer["consent_id"]
        assert record["choices"]["categories"] == {
            "strictly_necessary": True,
            "audience_measurement": granted,
        }
        assert record["revision"] == banner_config["revision"]
        assert record["content_hash"] == banner_config["hash"]
        assert (record["language"], record["page"]) == ("en", "/")
        assert record["gpc"] is False and record["dnt"] is False
        assert record["expires_at"] == answer["expires_at"]
        assert record["client_time"] >= time.strftime("%Y-%m-%d", time.gmtime(client_before))
    detail = {
        "consentId": stored.consent_id,
        "revision": stored.revision,
        "decidedAt": stored.decided_at,
        "choices": stored.choices,
    }
    assert page.evaluate("Gardien.consent.get()") == detail
    events = page.evaluate("window.__consentEvents")
    assert len(events) == len(steps) and events[-1] == detail
    page.reload()
    page.wait_for_selector(".gc-manage:not([hidden])")
    assert page.evaluate("window.__consentEvents") == [detail]  # once at start-up
    assert consent_site.record_count() == count  # reading a decision records nothing


@pytest.mark.parametrize(
    ("header", "navigator"), [(True, True), (True, False), (False, True)], ids=str
)
def test_global_privacy_control_refuses_without_asking(
    browser: Browser,
    consent_site: Site,
    banner_config: dict[str, Any],
    header: bool,
    navigator: bool,
) -> None:
    """R10: with GPC (the Sec-GPC header the config echoes, or the navigator property), every
    consent category is refused and recorded as gpc_auto_reject; the panel says why, and an
    explicit choice afterwards overrides it."""
    headers = {"Sec-GPC": "1"} if header else {}
    visitor = browser.new_context(locale="en-GB", extra_http_headers=headers)
    if navigator:
        visitor.add_init_script(GPC_SCRIPT)
    page = visitor.new_page()
    with page.expect_response(lambda r: r.url.endswith("/api/consent/records")) as info:
        page.goto(demo(consent_site))
    assert info.value.status == 201
    page.wait_for_selector(".gc-manage:not([hidden])")
    assert not banner(page, banner_config).is_visible()
    assert not ran_measurement(page)
    stored = consent_cookie(visitor)
    assert stored is not None and stored.choices == {"audience_measurement": False}
    (record,) = consent_site.history(stored.consent_id)
    assert (record["action"], record["layer"], record["control"]) == (
        "gpc_auto_reject",
        "api",
        "gpc",
    )
    assert record["gpc"] is True
    page.reload()
    page.wait_for_selector(".gc-manage:not([hidden])")
    assert len(consent_site.history(stored.consent_id)) == 1  # decided once, not at every page
    page.locator(".gc-manage").click()
    dialog = panel(page, banner_config)
    assert dialog.get_by_text(banner_config["texts"]["gpc"]).is_visible()
    decide(page, dialog.get_by_role("button", name=banner_config["texts"]["accept"]).click)
    page.reload()
    page.wait_for_selector("html[data-demo-measured=yes]", state="attached")
    assert ran_measurement(page)
    actions = [r["action"] for r in consent_site.history(stored.consent_id)]
    assert actions == ["gpc_auto_reject", "accept_all"]
    visitor.close()
