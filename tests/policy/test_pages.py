"""The policy pages, versions and API as a visitor and a program see them."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gardien.app import publish_policy
from gardien.deps import State
from gardien.register.loader import load_register
from gardien.storage.clock import FrozenClock

ART13_HEADINGS_EN = [
    "Who is the data controller?",
    "Data protection officer",
    "Which personal data are collected?",
    "Our legitimate interests",
    "Who are the recipients of the personal data collected?",
    "Transfers outside the EEA",
    "How long is your personal data kept?",
    "What are your rights and remedies?",
    "Withdrawing your consent",
    "Complaint to the supervisory authority",
    "Do you have to provide your data?",
    "Automated decisions",
]


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_privacy_page_has_every_art13_item(client: TestClient) -> None:
    response = client.get("/privacy", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert response.status_code == 200
    assert response.headers["content-language"] == "en"
    html = response.text
    assert '<html lang="en">' in html
    for heading in ART13_HEADINGS_EN:
        assert f">{heading}</h2>" in html.replace("&#39;", "'"), heading
    text = text_of(html)
    assert "CEGEDIM RX SRL is the data controller" in text
    assert "Consent (GDPR Art. 6(1)(a))" in text
    assert "90 days" in text
    assert "six months" in text
    assert "anspdcp@dataprotection.ro" in text
    assert "Post-mortem directives" in text
    assert "(added by Gardien)" in text
    # the seed's table: data collected / legal basis / purpose / retention
    assert re.search(
        r"<th scope=\"col\">Data collected</th><th scope=\"col\">Legal basis</th>", html
    )


@pytest.mark.parametrize(
    ("accept", "query", "expected", "marker"),
    [
        ("fr-FR,fr;q=0.9,en;q=0.5", None, "fr", "Qui est le responsable du traitement"),
        ("ro", None, "ro", "responsabil cu protecția datelor"),
        ("de-DE,de;q=0.9", None, "en", "Who is the data controller?"),
        ("fr", "ro", "ro", "Plângere"),
        ("fr", "xx", "en", "Who is the data controller?"),
        ("en;q=0.1, ro;q=0.8", None, "ro", "Plângere"),
    ],
)
def test_language_negotiation(
    client: TestClient, accept: str, query: str | None, expected: str, marker: str
) -> None:
    params = {"lang": query} if query else {}
    response = client.get("/privacy", params=params, headers={"Accept-Language": accept})
    assert response.status_code == 200
    assert response.headers["content-language"] == expected
    assert f'<html lang="{expected}">' in response.text
    assert marker.lower() in text_of(response.text).replace("&#39;", "'").lower()


def test_romanian_uses_comma_below(client: TestClient) -> None:
    html = client.get("/privacy?lang=ro").text
    assert "ș" in html
    assert "ț" in html
    assert not re.search("[şţŞŢ]", html)


def test_cookie_page_lists_every_register_cookie(client: TestClient, state: State) -> None:
    response = client.get("/cookies?lang=en")
    assert response.status_code == 200
    html = response.text
    for cookie in state.register.cookies:
        assert f'<th scope="row">{cookie.name}</th>' in html
    assert "6 months" in text_of(html)  # consent lifetime, from the register


def test_editing_a_purpose_publishes_version_2_with_a_diff(
    client: TestClient, state: State, register_path: Path, clock: FrozenClock
) -> None:
    first = client.get("/api/policy").json()
    assert first["number"] == 1
    text = register_path.read_text(encoding="utf-8")
    old = "          the question you asked.\n"
    assert text.count(old) == 1
    register_path.write_text(text.replace(old, "          your question only.\n"), encoding="utf-8")
    state.register = load_register(register_path)
    clock.advance(dt.timedelta(days=3))
    assert publish_policy(state, "test") == 2
    assert publish_policy(state, "test") == 2  # unchanged content: no version 3

    listing = client.get("/privacy/versions?lang=en")
    assert "/privacy/versions/2" in listing.text
    assert "/privacy/versions/1" in listing.text
    page = client.get("/privacy/versions/2?lang=en")
    assert page.status_code == 200
    diff = page.text.split('<ol class="diff">')[1].split("</ol>")[0]
    assert "<del>you asked.</del>" in diff
    assert "<ins>only.</ins>" in diff
    assert diff.count('class="changed"') == 1  # only the edited line is marked changed
    first_page = client.get("/privacy/versions/1?lang=en")
    assert "This is the first published version." in first_page.text


def test_api_policy_at_a_date(
    client: TestClient, state: State, clock: FrozenClock, register_path: Path
) -> None:
    text = register_path.read_text(encoding="utf-8")
    register_path.write_text(text.replace("Privacy policy", "Privacy notice", 1), encoding="utf-8")
    clock.advance(dt.timedelta(days=10))  # 25 January
    state.register = load_register(register_path)
    publish_policy(state, "test")
    assert client.get("/api/policy", params={"at": "2026-01-15"}).json()["number"] == 1
    assert client.get("/api/policy", params={"at": "2026-01-24"}).json()["number"] == 1
    later = client.get("/api/policy", params={"at": "2026-01-25", "lang": "fr"}).json()
    assert later["number"] == 2
    assert later["language"] == "fr"
    assert later["document"]["sections"][0]["id"] == "introduction"
    before = client.get("/api/policy", params={"at": "2025-12-31"})
    assert before.status_code == 404
    assert "no policy version was in force on 2025-12-31" in before.json()["detail"]


@pytest.mark.parametrize("bad", ["2026-13-01", "yesterday", "2026-1-1", "'; drop table"])
def test_api_policy_rejects_bad_dates(client: TestClient, bad: str) -> None:
    response = client.get("/api/policy", params={"at": bad})
    assert response.status_code in (400, 422)
    assert bad not in response.text


def test_unknown_version_is_a_styled_404(client: TestClient) -> None:
    response = client.get("/privacy/versions/99", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert "<main" in response.text
    assert "/static/gardien.css" in response.text


def test_page_is_rendered_once_per_version(
    client: TestClient, state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.get("/privacy?lang=en")
    calls = 0
    original = state.env("en").get_template

    def counting(name: str):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return original(name)

    monkeypatch.setattr(state.env("en"), "get_template", counting)
    for _ in range(5):
        assert client.get("/privacy?lang=en").status_code == 200
    assert calls == 0
