"""The banner and the panel for a keyboard and screen-reader user (R11): dialog roles and
names, focus moved in, trapped in the modal panel and given back, visible focus, nothing
hidden under the banner, and no axe-core violation on either layer."""

from __future__ import annotations

from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import BrowserContext, Page

from tests.browser.consent import Site, banner, consent_cookie, open_page, panel

pytestmark = pytest.mark.browser


def focused(page: Page) -> str:
    """What the visitor's focus is on, as a screen reader would name it."""
    return str(
        page.evaluate(
            "(() => { const e = document.activeElement;"
            " return e.getAttribute('aria-label') || e.textContent.trim() ||"
            " (e.labels && e.labels[0] && e.labels[0].textContent) || e.tagName; })()"
        )
    )


def focus_inside(page: Page, selector: str) -> bool:
    return bool(page.evaluate(f"!!document.activeElement.closest({selector!r})"))


def tab_to(page: Page, name: str, limit: int = 40) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if focused(page) == name:
            return
    raise AssertionError(f"{name!r} cannot be reached with Tab")


def violations(page: Page) -> list[str]:
    results = Axe().run(page, context=".gc")
    return [
        f"{v['id']}: {[n['target'] for n in v['nodes']]}" for v in results.response["violations"]
    ]


@pytest.mark.parametrize("width", [1280, 360])  # a desktop, a small phone
def test_banner_and_panel_are_labelled_dialogs_without_axe_violations(
    visitor: BrowserContext, consent_site: Site, banner_config: dict[str, Any], width: int
) -> None:
    page = visitor.new_page()
    page.set_viewport_size({"width": width, "height": 740})
    page.goto(f"{consent_site.url}/?lang=en")
    page.wait_for_selector(".gc-banner:not([hidden])")
    dialog = banner(page, banner_config)
    assert dialog.get_attribute("role") == "dialog"
    assert dialog.get_attribute("aria-modal") is None  # non-modal: the page stays usable
    described_by = dialog.get_attribute("aria-describedby")
    assert page.locator(f"#{described_by}").inner_text() == banner_config["texts"]["body"]
    assert violations(page) == []
    dialog.get_by_role("button", name=banner_config["texts"]["customise"]).click()
    modal = panel(page, banner_config)
    assert modal.get_attribute("aria-modal") == "true"
    assert violations(page) == []
    for switch in modal.get_by_role("switch").all():
        assert switch.evaluate("s => s.type") == "checkbox"
        assert switch.evaluate("s => s.labels.length") == 1


def test_keyboard_alone_can_choose_review_and_leave(
    visitor: BrowserContext, consent_site: Site, banner_config: dict[str, Any]
) -> None:
    texts = banner_config["texts"]
    page = open_page(visitor, f"{consent_site.url}/?lang=en")
    # The banner takes the focus when it appears, so the first Tab lands on its controls.
    assert focus_inside(page, ".gc-banner")
    tab_to(page, texts["customise"])
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    width = page.evaluate("parseFloat(getComputedStyle(document.activeElement).outlineWidth)")
    assert outline != "none" and width >= 2  # visible focus
    page.keyboard.press("Enter")
    modal = panel(page, banner_config)
    assert modal.is_visible() and focus_inside(page, ".gc-panel")
    # Trapped: forwards and backwards, focus never leaves the panel.
    for key in ["Tab"] * 25 + ["Shift+Tab"] * 25:
        page.keyboard.press(key)
        assert focus_inside(page, ".gc-panel"), key
    tab_to(page, banner_config["categories"][1]["title"])
    page.keyboard.press("Space")
    assert modal.get_by_role("switch", name=banner_config["categories"][1]["title"]).is_checked()
    tab_to(page, texts["save"])
    with page.expect_response(lambda r: r.url.endswith("/api/consent/records")):
        page.keyboard.press("Enter")
    stored = consent_cookie(visitor)
    assert stored is not None and stored.choices == {"audience_measurement": True}
    assert not modal.is_visible() and not banner(page, banner_config).is_visible()
    # Nothing was focused before the banner: focus goes to the way back in.
    assert focus_inside(page, ".gc-manage")
    page.keyboard.press("Enter")
    assert panel(page, banner_config).is_visible()
    page.keyboard.press("Escape")  # a decision exists: Escape closes and changes nothing
    assert not panel(page, banner_config).is_visible()
    assert focus_inside(page, ".gc-manage")
    # Opened from the page's own control, the panel gives the focus back to it.
    footer = page.locator("main [data-gardien-consent=show]")
    footer.focus()
    page.keyboard.press("Enter")
    assert panel(page, banner_config).is_visible()
    page.keyboard.press("Escape")
    assert footer.evaluate("b => b === document.activeElement")
    after = consent_cookie(visitor)
    assert after == stored


def test_escape_in_the_panel_before_any_choice_is_a_refusal(
    visitor: BrowserContext, consent_site: Site, banner_config: dict[str, Any]
) -> None:
    page = open_page(visitor, f"{consent_site.url}/?lang=en")
    banner(page, banner_config).get_by_role(
        "button", name=banner_config["texts"]["customise"]
    ).click()
    with page.expect_response(lambda r: r.url.endswith("/api/consent/records")) as info:
        page.keyboard.press("Escape")
    assert info.value.status == 201
    stored = consent_cookie(visitor)
    assert stored is not None and stored.choices == {"audience_measurement": False}
    (record,) = consent_site.history(stored.consent_id)
    assert (record["action"], record["layer"], record["control"]) == (
        "close_dismiss",
        "panel",
        "escape",
    )


def test_the_banner_never_hides_what_has_the_focus(
    visitor: BrowserContext, consent_site: Site, banner_config: dict[str, Any]
) -> None:
    """WCAG 2.4.11: a page link focused while the banner shows is scrolled clear of it."""
    page = open_page(visitor, f"{consent_site.url}/?lang=en")
    band = banner(page, banner_config).bounding_box()
    assert band is not None
    links = page.locator("main a, main button")
    assert links.count() >= 2
    for index in range(links.count()):
        element = links.nth(index)
        element.focus()
        box = element.bounding_box()
        assert box is not None
        assert box["y"] + box["height"] <= band["y"], element.inner_text()
