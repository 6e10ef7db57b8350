"""The access and erasure journeys end to end, in real Chromium against a real ``gardien
serve`` on SQLite: a person known to the contact form, the consent records, audience
measurement and the connection log (seeded through the server's own endpoints) asks on the
portal with their e-mail address and consent id, confirms with the code the sender wrote; an
agent signed in to the admin sends the package or erases; the person downloads the ZIP
through the one-time link, or receives the erasure receipt. After the erasure a byte scan of
the database file and its write-ahead log (checkpointed) finds none of the person's blind
indexes or ciphertexts."""

from __future__ import annotations

import io
import json
import re
import secrets
import sqlite3
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.browser.staff import serving_with_user
from tests.browser.test_admin_xss import sign_in_and_enrol
from tests.forms.test_submit import GOOD
from tests.support import Server

pytestmark = pytest.mark.browser

AGENT = "agent@example.org"
PERSON = "ana.journey@clinica.example.ro"
REFERENCE = re.compile(r"GR-\d{4}-[0-9A-F]{8}")


@dataclass(frozen=True)
class Journey:
    server: Server
    root: Path
    consent_id: str

    @property
    def database(self) -> Path:
        return self.root / "gardien.db"


BROWSER_LIKE = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36"
}


def _seed(url: str, consent_id: str, email: str = PERSON) -> None:
    """The person through the server's own endpoints: a contact form, a consent decision
    (whose cookie the client keeps), an audience-measurement hit with that consent."""
    with httpx.Client(base_url=url, timeout=30, headers=BROWSER_LIKE) as client:
        definition = client.get("/api/forms/contact?lang=ro").json()
        time.sleep(3.2)  # the form's min_fill_seconds, on the server's real clock
        sent = client.post(
            "/api/forms/contact",
            json={**GOOD, "email": email, "shown_at": definition["shown_at"], "lang": "ro"},
        )
        assert sent.status_code in (200, 201), sent.text
    consented_hit(url, consent_id)


def consented_hit(
    url: str, consent_id: str, *, decide: bool = True, decided_at: int | None = None
) -> None:
    """An audience-measurement hit sent with the consent cookie of ``consent_id`` (accepting
    everything), after that consent decision is recorded through the consent API if
    ``decide`` (else the cookie of a decision made earlier, at ``decided_at``, is sent as the
    browser kept it)."""
    with httpx.Client(base_url=url, timeout=30, headers=BROWSER_LIKE) as client:
        config = client.get("/consent/config.json?lang=ro").json()
        optional = [c["id"] for c in config["categories"] if not c["required"]]
        if decide:
            decided = client.post(
                "/api/consent/records",
                json={
                    "consent_id": consent_id,
                    "action": "accept_all",
                    "layer": "banner",
                    "control": "accept",
                    "revision": config["revision"],
                    "hash": config["hash"],
                    "choices": dict.fromkeys(optional, True),
                    "language": "ro",
                    "page": "/",
                },
            )
            assert decided.status_code == 201, decided.text
        # the cookie the banner writes after that decision: "1:id:revision:time:choices"
        choices = "&".join(f"{c}=1" for c in optional)
        client.cookies.set(
            "gardien_consent",
            f"1:{consent_id}:{config['revision']}:{decided_at or int(time.time())}:{choices}",
        )
        hit = client.get(
            "/matomo.php",
            params={"idsite": "1", "rec": "1", "url": f"{url}/tarife", "action_name": "Tarife"},
        )
        assert hit.status_code in (200, 204), hit.text


@contextmanager
def seeded_journey(root: Path, user: str, role: str) -> Iterator[Journey]:
    """A server with one staff account and the person seeded through its endpoints."""
    with serving_with_user(root, user, role) as server:
        consent_id = secrets.token_hex(16)
        _seed(server.url, consent_id)
        yield Journey(server, root, consent_id)


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    with seeded_journey(tmp_path_factory.mktemp("rights-journeys"), AGENT, "agent") as seeded:
        yield seeded


def _rows(database: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(database) as raw:
        return list(raw.execute(sql))


def _on_disk(database: Path) -> bytes:
    """The database file and its write-ahead log, after a checkpoint copied the log in."""
    with sqlite3.connect(database) as raw:
        raw.execute("PRAGMA wal_checkpoint(PASSIVE)")
    wal = Path(f"{database}-wal")
    return database.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def _mail(root: Path, reference: str, needle: str, timeout: float = 30.0) -> str:
    """The body of the e-mail about ``reference`` holding ``needle``, once the sender wrote it."""
    outbox = root / "data" / "outbox"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(outbox.glob("*.eml")) if outbox.is_dir() else []:
            message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
            assert isinstance(message, EmailMessage)
            if reference not in str(message["Subject"]):
                continue
            part = message.get_body(("plain",))
            assert part is not None
            text = str(part.get_content())
            if needle in text:
                return text
        time.sleep(0.5)
    raise AssertionError(f"no e-mail about {reference} saying {needle!r}")


def _ask_and_confirm(
    person: Page, journey: Journey, right: str, email: str = PERSON, consent_id: str = ""
) -> str:
    url = journey.server.url
    person.goto(f"{url}/rights?lang=en")
    person.check(f"#field-rights-{right}")
    person.fill("#field-email", email)
    person.fill("#field-consent_id", consent_id or journey.consent_id)
    with person.expect_navigation():
        person.click("form.rights button[type=submit]")
    found = REFERENCE.search(person.locator("main").inner_text())
    assert found, person.locator("main").inner_text()
    reference = found.group(0)
    # The reference's own eight hex digits may all be figures: they are not the code.
    text = _mail(journey.root, reference, "code")
    codes = [c for c in re.findall(r"\b\d{8}\b", text) if c != reference[-8:]]
    assert codes, text
    person.goto(f"{url}/rights/verify/{reference}?lang=en")
    person.fill("#field-code", codes[0])
    with person.expect_navigation():
        person.keyboard.press("Enter")
    assert "Confirmed" in person.locator("main").inner_text()
    return reference


def test_access_then_erasure_through_the_portal(
    browser: Browser, page: Page, journey: Journey
) -> None:
    url = journey.server.url
    stores = {
        str(name): int(str(count))
        for name, count in _rows(
            journey.database,
            "SELECT 'form', count(*) FROM form_submission UNION ALL "
            "SELECT 'consent', count(*) FROM consent_record UNION ALL "
            "SELECT 'analytics', count(*) FROM analytics_hit UNION ALL "
            "SELECT 'connlog', count(*) FROM connection_log",
        )
    }
    assert all(stores[k] != 0 for k in ("form", "consent", "analytics", "connlog")), stores
    person_context = browser.new_context(accept_downloads=True)
    person = person_context.new_page()
    sign_in_and_enrol(page, url, AGENT)

    # -- access: asked, confirmed, sent by the agent, downloaded once by the person
    reference = _ask_and_confirm(person, journey, "access")
    page.goto(f"{url}/admin/rights/{reference}")
    page.get_by_role("button", name="Send the package to the person and close the case").click()
    page.wait_for_load_state()
    assert page.locator("#status").inner_text() == "closed (fulfilled)"
    mail = _mail(journey.root, reference, "/rights/download/")
    link = re.search(r"(/rights/download/\S+)", mail)
    assert link, mail
    person.goto(url + link.group(1))
    with person.expect_download() as downloading:
        person.click("form button[type=submit]")
    archive = zipfile.ZipFile(io.BytesIO(Path(downloading.value.path()).read_bytes()))
    data = json.loads(archive.read("data.json"))
    text = json.dumps(data).lower()
    assert PERSON in text and journey.consent_id in text
    for store in ("contact_forms", "consent_records", "audience_measurement"):
        records = data["stores"][store]["records"]
        assert any(rows for rows in records.values()), store  # the person's rows are there
    person.goto(url + link.group(1))
    with person.expect_navigation():
        person.click("form button[type=submit]")
    assert "already used" in person.locator("[role=alert]").inner_text()

    # -- erasure: the person's values as stored, before
    values = [
        v
        for sql in (
            "SELECT email_index, fields FROM form_submission",
            "SELECT consent_id_index, consent_id FROM consent_record",
            "SELECT consent_id_index, consent_id FROM analytics_hit",
        )
        for row in _rows(journey.database, sql)
        for v in row
    ]
    needles = {v if isinstance(v, bytes) else str(v).encode() for v in values if v}
    assert needles
    assert all(n in _on_disk(journey.database) for n in needles)  # the scan can see them
    reference = _ask_and_confirm(person, journey, "erasure")
    page.goto(f"{url}/admin/rights/{reference}")
    page.fill("#confirm", reference)
    page.get_by_role("button", name="Erase", exact=True).click()
    page.wait_for_load_state()
    receipt = json.loads(page.locator("#h-receipt + pre").inner_text())
    assert receipt["nothing_left"] is True and receipt["complete"] is True
    assert "erased" in _mail(journey.root, reference, "receipt")
    left = [n for n in needles if n in _on_disk(journey.database)]
    assert left == [], "an erased blind index or ciphertext is still on disk"
    person_context.close()
