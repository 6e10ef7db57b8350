"""Real headless Chromium (Debian's, driven by Playwright) against a real ``gardien serve``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.browser.consent import EVENTS_SCRIPT, Site, running
from tests.support import Server, gardien_env, serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# DESIGN.md: no background traffic of Chromium's own may pollute what a page requests.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module-scoped: Playwright's sync API keeps an event loop running while it is open,
    which would break tests elsewhere in the same worker that call ``asyncio.run``."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it (make browser-deps)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("live")
    register = Path(__file__).resolve().parents[2] / "examples" / "seed-site" / "register.yaml"
    env = gardien_env(root / "data", f"sqlite:///{root / 'gardien.db'}", register)
    with serving(env) as server:
        yield server


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-GB")
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture(scope="module")
def consent_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A Gardien on the seed register whose SQLite file the consent tests read."""
    with running(tmp_path_factory.mktemp("consent")) as site:
        yield site


@pytest.fixture(scope="module")
def banner_config(consent_site: Site) -> dict[str, Any]:
    """The banner's English configuration: tests find controls by the names it gives them."""
    return consent_site.config("en")


@pytest.fixture
def visitor(browser: Browser) -> Iterator[BrowserContext]:
    """A first-time visitor (fresh profile) who prefers reduced motion; every gardien:consent
    event the pages receive is kept in ``window.__consentEvents``."""
    context = browser.new_context(locale="en-GB", reduced_motion="reduce")
    context.add_init_script(EVENTS_SCRIPT)
    yield context
    context.close()
