"""The banner's committed, minified files (and the tracker's, for staleness): built from today's
sources, within the size budget, speaking only through the config's texts. No Node needed:
``make assets`` writes the sha256 of each source into the first line of its minified file, and
these tests recompute it."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gardien.consent.content import TEXTS

CONSENT = Path(__file__).resolve().parents[2] / "src" / "gardien" / "consent"
SOURCES = {
    "js": CONSENT / "assets" / "gardien-consent.js",
    "css": CONSENT / "assets" / "gardien-consent.css",
}
BUILDS = {
    "js": CONSENT / "static" / "gardien-consent.min.js",
    "css": CONSENT / "static" / "gardien-consent.min.css",
}
# docs/consent.md: JS + CSS, and all a first visit downloads for the banner and the panel.
ASSETS_BUDGET = 6_000
PAGE_BUDGET = 8_000


def gzipped(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


ANALYTICS = CONSENT.parent / "analytics"
# Every file `make assets` builds (tools/assets/build.mjs): source, committed build.
MADE_BY_MAKE_ASSETS = {
    "gardien-consent.js": (SOURCES["js"], BUILDS["js"]),
    "gardien-consent.css": (SOURCES["css"], BUILDS["css"]),
    "gardien.js": (ANALYTICS / "assets" / "gardien.js", ANALYTICS / "static" / "gardien.min.js"),
}


@pytest.mark.parametrize("name", sorted(MADE_BY_MAKE_ASSETS))
def test_committed_build_is_made_from_the_current_source(name: str) -> None:
    source, build = MADE_BY_MAKE_ASSETS[name]
    first_line = build.read_text(encoding="utf-8").split("\n", 1)[0]
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert first_line == f"/*! {name} sha256:{digest} */", (
        f"{build.name} is stale: run `make assets` and commit it"
    )


def test_minified_script_keeps_every_name_the_page_and_the_server_rely_on() -> None:
    source = SOURCES["js"].read_text(encoding="utf-8")
    build = BUILDS["js"].read_text(encoding="utf-8")
    names = set(re.findall(r"data-[a-z-]+", source))
    names |= {f".{key}" for key in re.findall(r"\b(?:T|config)\.([a-z_]+)", source)}
    names |= {"gardien:consent", "gardien_consent", "Gardien", "show", "get", "keepalive"}
    assert {"data-gardien-category", "data-src", "data-gardien-consent"} <= names
    missing = sorted(name for name in names if name not in build)
    assert missing == []


def test_every_text_the_script_shows_comes_from_the_config() -> None:
    source = SOURCES["js"].read_text(encoding="utf-8")
    used = set(re.findall(r"\b(?:T|config\.texts)\.([a-z_]+)", source))
    assert {"accept", "reject", "customise", "save", "close", "gpc", "changed"} <= used
    assert used <= set(TEXTS), "the script shows a text the server does not send"
    # No sentence of any language is written into the script itself.
    code = re.sub(r"/\*.*?\*/|//[^\n]*", "", source, flags=re.S)
    literals = re.findall(r"'([^'\\]*(?:\\.[^'\\]*)*)'", code)
    prose = [
        text
        for text in literals
        if re.search(r"[A-Za-z]{3,} [A-Za-z]{3,}", text)
        and text != "use strict"
        and not text.startswith("<svg ")  # the floating button's icon
    ]
    assert prose == []


def test_script_never_looks_at_webdriver_and_calls_no_third_party() -> None:
    for build in BUILDS.values():
        text = build.read_text(encoding="utf-8")
        assert "webdriver" not in text
        assert re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text) == []


def test_script_and_stylesheet_stay_within_the_gzip_budget() -> None:
    total = sum(gzipped(build.read_bytes()) for build in BUILDS.values())
    assert total <= ASSETS_BUDGET, f"{total} bytes gzipped, budget {ASSETS_BUDGET}"


def test_first_visit_in_french_downloads_at_most_the_page_budget(client: TestClient) -> None:
    """What the browser fetches to show the banner and the panel for the seed register."""
    sizes = {}
    for path in (
        "/consent/gardien-consent.js",
        "/consent/gardien-consent.css",
        "/consent/config.json?lang=fr",
    ):
        answer = client.get(path)
        assert answer.status_code == 200
        sizes[path] = gzipped(answer.content)
    served_js = client.get("/consent/gardien-consent.js").content
    assert served_js == BUILDS["js"].read_bytes()  # the server sends the committed build
    assert sum(sizes.values()) <= PAGE_BUDGET, sizes
