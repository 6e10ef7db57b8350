"""Real headless Chromium (Debian's, driven by Playwright) against a real ``gardien serve``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

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
