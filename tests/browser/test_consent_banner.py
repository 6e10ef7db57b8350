"""The consent banner in real Chromium on the demo page: nothing before consent (R1), an equal
"Reject all" (R2), closing is refusing (R3), a refusal remembered as long as a consent (R4),
granular switches off by default (R7), no cookie wall (R12), and only declared cookies, for no
longer than declared, on every journey (reference consent-managers-and-rules.md, 2.9)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request

from tests.browser.consent import (
    Site,
    banner,
    consent_cookie,
    decide,
    declared_cookies,
    open_page,
    panel,
    six_months_after,
)

pytestmark = pytest.mark.browser

STYLES = [
    "fontSize",
    "fontWeight",
    "fontFamily",
    "color",
    "backgroundColor",
    "paddingTop",
    "paddingRight",
    "paddingBottom",
    "paddingLeft",
    "borderTopWidth",
    "borderTopColor",
    "borderRadius",
]
COMPUTED = "(b, names) => names.map(n => getComputedStyle(b)[n])"


def demo(consent_site: Site) -> str:
    return f"{consent_site.url}/?lang=en"


def ran_measurement(page: Page) -> bool:
    return bool(page.evaluate("window.gardienDemoMeasured === true"))


def luminance(css_colour: str) -> float:
    red, green, blue = (
        int(part) / 255 for part in css_colour.split("(")[1].rstrip(")").split(",")[:3]
    )

    def linear(channel: float) -> float:
        return channel / 12.92 if channel <= 0.03928 else ((channel + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def contrast(first: str, second: str) -> float:
    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_nothing_non_essential_happens_before_a_choice(
    visitor: BrowserContext, consent_site: Site, banner_config: dict[str, Any]
) -> None:
    """R1: no cookie, no storage, no blocked script run, no embed loaded, no third party."""
    requests: list[Request] = []
    visitor.on("request", lambda request: requests.append(request))
    page = open_page(visitor, demo(consent_site))
    assert banner(page, banner_config).is_visible()
    page.reload()
    page.wait_for_selector(".gc-banner:not([hidden])")
    assert visitor.cookies() == []
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert not ran_measurement(page)
    assert page.evaluate("window.gardienDemoInline === undefined")
    assert page.locator("iframe").get_attribute("src") is None
    paths = {urlparse(request.url).path for request in requests}
    assert "/demo/measure.js" not in paths and "/demo/embed" not in paths
    assert "/api/consent/records" not in paths
    assert {urlparse(request.url).netloc for request in requests} == {
        urlparse(consent_site.url).netloc
    }
    # The scripts are held back, not lost: the markup is still in the page, inert.
    assert page.locator('script[type="text/plain"][data-gardien-category]').count() == 2


def test_reject_all_is_as_easy_and_as_visible_as_accept_all(
    browser: Browser, consent_site: Site, banner_config: dict[str, Any]
) -> None:
    """R2: the three first-layer buttons share size, font and colours, contrast >= 4.5:1, and
    refusing takes one click, like accepting."""
    texts = banner_config["texts"]
    visitor = browser.new_context(locale="en-GB")
    page = open_page(visitor, demo(consent_site))
    dialog = banner(page, banner_config)
    buttons = [
        dialog.get_by_role("button", name=texts[key], exact=True)
        for key in ("accept", "reject", "customise")
    ]
    boxes = [button.bounding_box() for button in buttons]
    assert all(box is not None for box in boxes)
    sizes = {(round(box["width"], 1), round(box["height"], 1)) for box in boxes if box}
    assert len(sizes) == 1, boxes
    styles = [button.evaluate(COMPUTED, STYLES) for button in buttons]
    assert styles[0] == styles[1] == styles[2]
    style = dict(zip(STYLES, styles[0], strict=True))
    assert contrast(style["color"], style["backgroundColor"]) >= 4.5
    # Both are on the first layer, in view, without scrolling.
    viewport = page.viewport_size
    assert viewport is not None
    for box in boxes:
        assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= viewport["height"]
    answer = decide(page, buttons[1].click)
    assert answer["revision"] == banner_config["revision"]
    assert not dialog.is_visible()
    stored = consent_cookie(visitor)
    assert stored is not None and not any(stored.choices.values())
    visitor.close()

    visitor = browser.new_context(locale="en-GB")
    page = open_page(visitor, demo(consent_site))
    decide(page, banner(page, banner_config).get_by_role("button", name=texts["accept"]).click)
    stored = consent_cookie(visitor)
    assert stored is not None and all(stored.choices.values())
    visitor.close()


@pytest.mark.parametrize("how", ["close", "escape"])
def test_closing_the_banner_is_a_refusal(
    visitor: BrowserContext, consent_site: Site, banner_config: dict[str, Any], how: str
) -> None:
    """R3: the close button and Escape record close_dismiss, store a refusal, load nothing."""
    page = open_page(visitor, demo(consent_site))
    dialog = banner(page, banner_config)

    def close() -> None:
        if how == "close":
            dialog.get_by_role("button", name=banner_config["texts"]["close"]).click()
        else:
            page.keyboard.press("Escape")

    answer = decide(page, close)
    assert not dialog.is_visible()
    stored = consent_cookie(visitor)
    assert stored is not None and stored.choices == {"audience_measurement": False}
    (record,) = consent_site.history(stored.consent_id)
    assert (record["action"], record["layer"], record["control"]) == (
        "close_dismiss",
        "banner",
        how,
    )
    assert record["event_id"] == answer["event_id"]
    page.reload()
    page.wait_for_selector(".gc-manage:not([hidden])")
    assert not ran_measurement(page)
    assert not [c for c in visitor.cookies() if c["name"].startswith("_pk_")]


def test_a_refusal_is_remembered_exactly_as_long_as_a_consent(
    browser: Browser, consent_site: Site, banner_config: dict[str, Any]
) -> None:
    """R4: after refusing, reloading asks nothing; the refusal cookie expires when an
    acceptance's would: the decision plus six calendar months, not a day more."""
    texts = banner_config["texts"]
    lifetimes = {}
    for key in ("reject", "accept"):
        visitor = browser.new_context(locale="en-GB")
        page = open_page(visitor, demo(consent_site))
        decide(page, banner(page, banner_config).get_by_role("button", name=texts[key]).click)
        page.reload()
        page.wait_for_selector(".gc-manage:not([hidden])")
        assert not banner(page, banner_config).is_visible()
        stored = consent_cookie(visitor)
        assert stored is not None
        assert abs(stored.expires - six_months_after(stored.decided_at)) <= 2
        lifetimes[key] = stored.expires - stored.decided_at
        visitor.close()
    assert abs(lifetimes["reject"] - lifetimes["accept"]) <= 2


def test_panel_offers_each_category_switched_off_and_lists_its_cookies(
    visitor: BrowserContext, consent_site: Site, banner_config: dict[str, Any]
) -> None:
    """R7: one switch per category, none pre-ticked; strictly necessary on and locked; each
    category's cookies with provider, purpose and duration."""
    texts = banner_config["texts"]
    page = open_page(visitor, demo(consent_site))
    banner(page, banner_config).get_by_role("button", name=texts["customise"]).click()
    dialog = panel(page, banner_config)
    assert dialog.is_visible()
    for category in banner_config["categories"]:
        switch = dialog.get_by_role("switch", name=category["title"])
        assert switch.count() == 1
        if category["required"]:
            assert switch.is_checked() and switch.is_disabled()
            assert dialog.get_by_text(texts["always_on"]).first.is_visible()
        else:
            assert not switch.is_checked() and switch.is_enabled()
        table = dialog.get_by_role("table", name=category["title"])
        headers = table.get_by_role("columnheader").all_inner_texts()
        assert headers == [texts[k] for k in ("cookie", "provider", "purpose", "duration")]
        rows = table.locator("tbody tr")
        assert rows.count() == len(category["cookies"])
        for index, cookie in enumerate(category["cookies"]):
            cells = rows.nth(index).get_by_role("cell").all_inner_texts()
            expected = [cookie[k] for k in ("name", "provider", "purpose", "duration")]
            assert [cell.strip() for cell in cells] == expected
    # A choice is needed to leave: saving as it is refuses every optional category.
    decide(page, dialog.get_by_role("button", name=texts["save"]).click)
    stored = consent_cookie(visitor)
    assert stored is not None and stored.choices == {"audience_measurement": False}


def test_the_page_stays_usable_while_the_banner_is_shown(
    visitor: BrowserContext, consent_site: Site, banner_config: dict[str, Any]
) -> None:
    """R12: no cookie wall: the page scrolls, its links work, and nothing covers it."""
    page = open_page(visitor, demo(consent_site))
    assert banner(page, banner_config).is_visible()
    assert page.evaluate("getComputedStyle(document.body).overflow") != "hidden"
    assert page.evaluate("document.elementFromPoint(innerWidth / 2, 40).closest('.gc')") is None
    page.mouse.move(200, 40)
    page.mouse.wheel(0, 600)
    for _ in range(100):  # the wheel scroll is applied over the next frames
        if page.evaluate("scrollY") > 0:
            break
        page.wait_for_timeout(20)
    assert page.evaluate("scrollY") > 0
    page.locator("#demo-link").click()
    page.wait_for_url("**/privacy?lang=en")
    # Still no decision: the banner asks again on the next page, and nothing was stored.
    page.wait_for_selector(".gc-banner:not([hidden])")
    assert consent_cookie(visitor) is None


def first_visit(page: Page, banner_config: dict[str, Any]) -> None:
    assert banner(page, banner_config).is_visible()


def accept(page: Page, banner_config: dict[str, Any]) -> None:
    decide(
        page,
        banner(page, banner_config)
        .get_by_role("button", name=banner_config["texts"]["accept"])
        .click,
    )


def reject(page: Page, banner_config: dict[str, Any]) -> None:
    decide(
        page,
        banner(page, banner_config)
        .get_by_role("button", name=banner_config["texts"]["reject"])
        .click,
    )


def customise(page: Page, banner_config: dict[str, Any]) -> None:
    texts = banner_config["texts"]
    banner(page, banner_config).get_by_role("button", name=texts["customise"]).click()
    dialog = panel(page, banner_config)
    dialog.get_by_role("switch", name=banner_config["categories"][1]["title"]).check()
    decide(page, dialog.get_by_role("button", name=texts["save"]).click)


def withdraw(page: Page, banner_config: dict[str, Any]) -> None:
    accept(page, banner_config)
    page.reload()
    page.wait_for_selector("html[data-demo-measured=yes]", state="attached")
    page.locator(".gc-manage").click()
    dialog = panel(page, banner_config)
    dialog.get_by_role("switch", name=banner_config["categories"][1]["title"]).uncheck()
    decide(page, dialog.get_by_role("button", name=banner_config["texts"]["save"]).click)


JOURNEYS: dict[str, Callable[[Page, dict[str, Any]], None]] = {
    "first visit": first_visit,
    "accept": accept,
    "reject": reject,
    "customise": customise,
    "withdraw": withdraw,
}


@pytest.mark.parametrize("name", list(JOURNEYS))
def test_every_journey_leaves_only_declared_cookies_for_their_declared_time(
    visitor: BrowserContext, consent_site: Site, banner_config: dict[str, Any], name: str
) -> None:
    declared = declared_cookies()
    started = time.time()
    page = open_page(visitor, demo(consent_site))
    JOURNEYS[name](page, banner_config)
    page.reload()  # what the decision releases runs on the next page view too
    page.wait_for_selector(".gc-banner:not([hidden]), .gc-manage:not([hidden])")
    page.goto(f"{consent_site.url}/cookies?lang=en")
    page.wait_for_selector(".gc-banner:not([hidden]), .gc-manage:not([hidden])")
    finished = time.time()
    for cookie in visitor.cookies():
        matching = [d for d in declared if d.matches(cookie["name"])]
        assert matching, f"{name}: undeclared cookie {cookie['name']}"
        latest = matching[0].latest_expiry(finished)
        if latest is None:
            assert cookie["expires"] == -1, f"{name}: {cookie['name']} outlives the session"
        else:
            assert 0 < cookie["expires"] <= latest + 5, (
                f"{name}: {cookie['name']} lives longer than {matching[0].duration}"
            )
    storage = page.evaluate("[...Object.keys(localStorage), ...Object.keys(sessionStorage)]")
    assert storage == [], f"{name}: undeclared storage keys {storage}"
    names = {cookie["name"] for cookie in visitor.cookies()}
    measured = any(n.startswith("_pk_") for n in names)
    assert measured == (name in ("accept", "customise")), names
    assert (name == "first visit") == ("gardien_consent" not in names)
    if name != "first visit":
        stored = consent_cookie(visitor)
        assert stored is not None and started - 1 <= stored.decided_at <= finished
