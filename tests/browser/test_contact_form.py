"""The contact form in real Chromium, with the keyboard alone: a visitor fills it in French or
Romanian and lands on the thank-you page with the submission stored; a visitor who forgets a
required field gets an error summary whose link takes the focus to that field, corrects it and
sends. axe-core finds no violation on the form, with or without errors."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import pytest
import yaml
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser.consent import SEED_REGISTER, Site, running

pytestmark = pytest.mark.browser

FIELDS = ["first_name", "last_name", "email", "phone", "specialisation", "company", "country"]
SELECTS = {"specialisation", "country"}
SEND = "form.contact button[type=submit]"


def min_fill_seconds() -> int:
    """The register's minimum fill time: sending sooner is refused as a robot's."""
    register = yaml.safe_load(SEED_REGISTER.read_text(encoding="utf-8"))
    form = next(f for f in register["forms"] if f["id"] == "contact")
    return int(form["min_fill_seconds"])


@dataclass(frozen=True)
class Journey:
    """What a visitor types in one language, and what the pages answer in it."""

    lang: str
    typed: dict[str, str]
    """Text typed into each field; for a list, the first letters of the option's name."""
    chosen: dict[str, str] = field(default_factory=dict)
    """The value each list must hold once its letters are typed."""
    message: str = ""
    thanks: str = ""
    summary: str = ""
    send: str = ""


FRENCH = Journey(
    lang="fr",
    typed={
        "first_name": "Élodie",
        "last_name": "Durand-Lefèvre",
        "email": "elodie.durand@pharmacie-exemple.fr",
        "phone": "01 23 45 67 89",
        "specialisation": "Pharm",
        "company": "Pharmacie du Centre",
        "country": "France",
    },
    chosen={"specialisation": "pharmacist", "country": "FR"},
    message="Bonjour,\nJe souhaite une démonstration du logiciel.",
    thanks="Merci : votre message a bien été envoyé",
    summary="Certains champs sont à corriger",
    send="Envoyer",
)
ROMANIAN = Journey(
    lang="ro",
    typed={
        "first_name": "Ștefan",
        "last_name": "Țăranu",
        "email": "stefan.taranu@clinica-exemplu.ro",
        "phone": "021 123 4567",
        "specialisation": "Medic de f",
        "company": "Clinica Sănătatea",
        "country": "Rom",
    },
    chosen={"specialisation": "general_practitioner", "country": "RO"},
    message="Bună ziua,\nAș dori o demonstrație.",
    thanks="Vă mulțumim: mesajul dumneavoastră a fost trimis",
    summary="Unele câmpuri trebuie corectate",
    send="Trimiteți",
)


@pytest.fixture(scope="module")
def contact_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A Gardien on the seed register whose SQLite file the tests read."""
    with running(tmp_path_factory.mktemp("contact")) as site:
        yield site


@pytest.fixture
def visitor(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(locale="en-GB")
    yield context
    context.close()


def stored(site: Site, lang: str) -> int:
    """Submissions of the contact form in ``lang`` that carry their consent proof and both
    queued e-mails (the notification and the acknowledgement)."""
    with sqlite3.connect(site.database) as connection:
        (count,) = connection.execute(
            "SELECT count(*) FROM form_submission s WHERE s.form_id = 'contact'"
            " AND s.language = ? AND s.legal_basis = 'consent'"
            " AND s.consent_text_hash IS NOT NULL AND s.policy_version IS NOT NULL"
            " AND (SELECT count(*) FROM outbox_message o WHERE o.submission_id = s.id) = 2",
            (lang,),
        ).fetchone()
    return int(count)


def first_visit(context: BrowserContext, url: str) -> Page:
    """A first-time visitor answers the consent banner (it takes the focus) with Escape, a
    refusal, then finds the form with nothing in the way."""
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector(".gc-banner:not([hidden])")
    page.keyboard.press("Escape")
    page.wait_for_selector(".gc-manage:not([hidden])")
    page.reload()
    page.wait_for_selector(".gc-manage:not([hidden])")
    return page


def focus_matches(page: Page, selector: str) -> bool:
    return bool(page.evaluate(f"document.activeElement.matches({selector!r})"))


def tab_to(page: Page, selector: str, limit: int = 60) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if focus_matches(page, selector):
            return
    raise AssertionError(f"{selector} cannot be reached with Tab")


def violations(page: Page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']}: {[n['target'] for n in v['nodes']]}" for v in results.response["violations"]
    ]


def type_fields(page: Page, journey: Journey, leave_out: frozenset[str] = frozenset()) -> None:
    """Tab through the form in its order and type each value (lists answer to the first
    letters of an option, as they do for any keyboard user)."""
    for name in FIELDS:
        if name in leave_out:
            continue
        tab_to(page, f"#field-{name}")
        page.keyboard.type(journey.typed[name])
        if name in SELECTS:
            assert page.locator(f"#field-{name}").input_value() == journey.chosen[name]
    tab_to(page, "#field-message")
    page.keyboard.type(journey.message)  # Enter in the text area is a new line, not a send
    assert page.locator("#field-message").input_value() == journey.message


def tick_consent(page: Page) -> None:
    tab_to(page, "#field-consent")
    assert not page.locator("#field-consent").is_checked()  # never ticked in advance
    page.keyboard.press("Space")
    assert page.locator("#field-consent").is_checked()


def send(page: Page, journey: Journey) -> None:
    """Tab to the send button and press Enter, once the form has been on screen for the
    register's minimum fill time (sent sooner, it is taken for a robot's)."""
    stamp = page.locator("input[name=shown_at]").get_attribute("value")
    assert stamp is not None
    shown = int(stamp.partition(".")[0])
    # Only what is left of it after the typing (wait_for_function would need eval, which the
    # page's CSP rightly forbids); the browser and the server share this machine's clock.
    page.wait_for_timeout(max(0.0, shown + min_fill_seconds() - time.time()) * 1000)
    tab_to(page, SEND)
    assert page.evaluate("document.activeElement.textContent.trim()") == journey.send
    with page.expect_navigation():
        page.keyboard.press("Enter")


@pytest.mark.parametrize("journey", [FRENCH, ROMANIAN], ids=lambda j: j.lang)
def test_a_keyboard_user_sends_the_form_and_is_thanked(
    visitor: BrowserContext, contact_site: Site, journey: Journey
) -> None:
    before = stored(contact_site, journey.lang)
    page = first_visit(visitor, f"{contact_site.url}/contact?lang={journey.lang}")
    assert page.get_attribute("html", "lang") == journey.lang
    assert violations(page) == []
    type_fields(page, journey)
    tick_consent(page)
    send(page, journey)
    assert page.url == f"{contact_site.url}/contact/sent?lang={journey.lang}"
    assert page.locator("h1").inner_text() == journey.thanks
    assert violations(page) == []
    assert stored(contact_site, journey.lang) == before + 1


def test_a_missing_field_is_named_in_a_summary_that_leads_to_it(
    visitor: BrowserContext, contact_site: Site
) -> None:
    # Another person than the French journey's: an identical message would be a duplicate.
    journey = replace(FRENCH, typed={**FRENCH.typed, "email": "camille.martin@cabinet.example"})
    before = stored(contact_site, journey.lang)
    page = first_visit(visitor, f"{contact_site.url}/contact?lang={journey.lang}")
    type_fields(page, journey, leave_out=frozenset({"last_name"}))
    tick_consent(page)
    send(page, journey)

    summary = page.locator("#error-summary")
    assert summary.is_visible()
    assert summary.get_attribute("role") == "alert"
    assert page.locator("#error-summary-title").inner_text() == journey.summary
    links = summary.get_by_role("link")
    assert links.count() == 1  # only the field left out
    assert links.first.get_attribute("href") == "#field-last_name"
    assert links.first.inner_text() == "Nom: Ce champ est obligatoire."
    assert page.locator("#field-last_name").get_attribute("aria-invalid") == "true"
    assert page.locator("#field-first_name").input_value() == journey.typed["first_name"]
    assert violations(page) == []
    assert stored(contact_site, journey.lang) == before  # nothing stored from a refusal

    # From the top of the page, the summary's link is reached with Tab and leads to the field.
    page.evaluate("document.activeElement.blur()")
    tab_to(page, "#error-summary a")
    page.keyboard.press("Enter")
    assert focus_matches(page, "#field-last_name")
    page.keyboard.type(journey.typed["last_name"])
    tick_consent(page)  # the consent is asked again: a refused form keeps no ticked box
    send(page, journey)
    assert page.locator("h1").inner_text() == journey.thanks
    assert stored(contact_site, journey.lang) == before + 1
