"""The demo page at ``/`` and the server-side reading of the consent cookie."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from gardien.consent.service import current_revision
from gardien.deps import State
from gardien.storage.clock import FrozenClock

REAL_TAG = '<script src="/demo/measure.js"'


def cookie_value(state: State, clock: FrozenClock, granted: bool, revision: int = 0) -> str:
    number = revision or current_revision(state).number
    decided = int(clock.now().timestamp()) - 60
    return f"1:{'b' * 32}:{number}:{decided}:audience_measurement={int(granted)}"


def test_the_demo_page_loads_the_banner_and_holds_back_what_needs_consent(
    client: TestClient,
) -> None:
    page = client.get("/?lang=fr")
    assert page.status_code == 200
    assert '<script src="/consent/gardien-consent.js" data-lang="fr" defer>' in page.text
    assert 'type="text/plain" data-gardien-category="audience_measurement"' in page.text
    assert REAL_TAG not in page.text
    assert re.search(r'<iframe [^>]*data-gardien-category="audience_measurement"', page.text)
    assert 'data-gardien-consent="show"' in page.text
    nonce = re.search(r"'nonce-([^']+)'", page.headers["content-security-policy"])
    assert nonce and f'nonce="{nonce.group(1)}"' in page.text
    assert client.get("/demo/measure.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/consent/gardien-consent.js").status_code == 200
    assert client.get("/consent/gardien-consent.css").status_code == 200


def test_a_granted_category_is_decided_on_the_server(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    client.cookies.set("gardien_consent", cookie_value(state, clock, True))
    assert REAL_TAG in client.get("/").text
    client.cookies.set("gardien_consent", cookie_value(state, clock, False))
    assert REAL_TAG not in client.get("/").text
    client.cookies.set("gardien_consent", cookie_value(state, clock, True, revision=99))
    assert REAL_TAG not in client.get("/").text  # another revision: asked again
    client.cookies.set("gardien_consent", cookie_value(state, clock, True) + "&x")
    assert REAL_TAG not in client.get("/").text  # corrupt: no consent


def test_the_banner_files_travel_gzipped_when_the_browser_takes_it(client: TestClient) -> None:
    for path in (
        "/consent/gardien-consent.js",
        "/consent/gardien-consent.css",
        "/consent/config.json?lang=fr",
    ):
        packed = client.get(path, headers={"Accept-Encoding": "gzip"})
        plain = client.get(path, headers={"Accept-Encoding": "identity"})
        assert packed.headers["content-encoding"] == "gzip", path
        assert "Accept-Encoding" in packed.headers["vary"]
        assert "content-encoding" not in plain.headers
        assert packed.content == plain.content  # the client decompressed it
        assert int(packed.headers["content-length"]) < len(plain.content) / 2, path
