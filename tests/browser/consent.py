"""Helpers for the consent-banner browser tests: a Gardien whose database the test can read,
the banner's own texts (so tests find buttons by the names a visitor hears), decisions that
wait for the server's 201, and the register's cookie inventory."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from playwright.sync_api import BrowserContext, Locator, Page

from gardien.register.durations import parse_period
from tests.support import Server, gardien_env, serving

SEED_REGISTER = Path(__file__).resolve().parents[2] / "examples" / "seed-site" / "register.yaml"
COOKIE = "gardien_consent"
COOKIE_VALUE = re.compile(r"^1:([0-9a-f]{32}):(\d+):(\d+):((?:[a-z_]+=[01])(?:&[a-z_]+=[01])*)$")
# One page view is enough for either: the banner asks, or the floating button offers a way back.
READY = ".gc-banner:not([hidden]), .gc-manage:not([hidden])"
GPC_SCRIPT = (
    "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true});"
)
# Every gardien:consent event the page receives, for tests to read back.
EVENTS_SCRIPT = (
    "window.__consentEvents = [];"
    "document.addEventListener('gardien:consent', e => window.__consentEvents.push(e.detail));"
)


@dataclass
class Site:
    """A running ``gardien serve`` and the SQLite file it writes to."""

    server: Server
    database: Path

    @property
    def url(self) -> str:
        return self.server.url

    def config(self, lang: str = "en", **headers: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/consent/config.json?lang={lang}", headers=headers)
        assert answer.status_code == 200
        body: dict[str, Any] = answer.json()
        return body

    def record_count(self) -> int:
        with sqlite3.connect(self.database) as connection:
            (count,) = connection.execute("SELECT count(*) FROM consent_record").fetchone()
        return int(count)

    def history(self, consent_id: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/consent/history/{consent_id}")
        assert answer.status_code == 200
        records: list[dict[str, Any]] = answer.json()["records"]
        return records


@contextmanager
def running(root: Path, register: Path = SEED_REGISTER) -> Iterator[Site]:
    database = root / "gardien.db"
    env = gardien_env(root / "data", f"sqlite:///{database}", register)
    with serving(env) as server:
        yield Site(server, database)


def open_page(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector(READY, state="visible")
    return page


def banner(page: Page, config: dict[str, Any]) -> Locator:
    return page.get_by_role("dialog", name=config["texts"]["title"])


def panel(page: Page, config: dict[str, Any]) -> Locator:
    return page.get_by_role("dialog", name=config["texts"]["panel"])


def decide(page: Page, act: Callable[[], None]) -> dict[str, Any]:
    """Do what makes a decision; return the server's answer once the record is durable."""
    with page.expect_response(
        lambda response: (
            response.url.endswith("/api/consent/records") and response.request.method == "POST"
        )
    ) as info:
        act()
    response = info.value
    assert response.status == 201, response.text()
    answer: dict[str, Any] = response.json()
    return answer


@dataclass(frozen=True)
class StoredDecision:
    consent_id: str
    revision: int
    decided_at: int
    choices: dict[str, bool]
    expires: float


def consent_cookie(context: BrowserContext) -> StoredDecision | None:
    found = [cookie for cookie in context.cookies() if cookie["name"] == COOKIE]
    if not found:
        return None
    (cookie,) = found
    assert cookie["path"] == "/" and cookie["sameSite"] == "Lax" and not cookie["httpOnly"]
    match = COOKIE_VALUE.match(cookie["value"])
    assert match, cookie["value"]
    choices = {
        name: flag == "1" for name, flag in (item.split("=") for item in match[4].split("&"))
    }
    return StoredDecision(match[1], int(match[2]), int(match[3]), choices, cookie["expires"])


def set_consent_cookie(context: BrowserContext, url: str, value: str) -> None:
    context.add_cookies([{"name": COOKIE, "value": value, "url": url, "sameSite": "Lax"}])


def six_months_after(moment: int) -> float:
    start = dt.datetime.fromtimestamp(moment, dt.UTC)
    return parse_period("P6M").after(start).timestamp()


@dataclass(frozen=True)
class DeclaredCookie:
    name: str
    pattern: bool
    duration: str

    def matches(self, name: str) -> bool:
        if not self.pattern:
            return name == self.name
        regex = ".*".join(re.escape(part) for part in self.name.split("*"))
        return re.fullmatch(regex, name) is not None

    def latest_expiry(self, set_at: float) -> float | None:
        """When a cookie set at ``set_at`` must be gone at the latest; None for a session
        cookie (it must not outlive the browser session)."""
        if self.duration == "session":
            return None
        start = dt.datetime.fromtimestamp(set_at, dt.UTC)
        return parse_period(self.duration).after(start).timestamp()


def declared_cookies(register: Path = SEED_REGISTER) -> list[DeclaredCookie]:
    document = yaml.safe_load(register.read_text(encoding="utf-8"))
    return [
        DeclaredCookie(str(c["name"]), bool(c.get("pattern", False)), str(c["duration"]))
        for c in document["cookies"]
    ]
