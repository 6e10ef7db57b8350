"""The contact form: what is accepted, stored (encrypted) and queued; what is refused, and that
a refusal stores nothing."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gardien.deps import State
from gardien.forms.models import FormSubmission, OutboxMessage
from gardien.storage.clock import FrozenClock

GOOD = {
    "first_name": "Ana-Maria",
    "last_name": "Popescu",
    "email": "Ana.Popescu@Clinica.example.ro",
    "phone": "021 123 4567",
    "specialisation": "pharmacist",
    "company": "Farmacia Centrală",
    "country": "RO",
    "message": "Bonjour,\nI would like a demo of your software.",
    "consent": True,
}


def stamped(client: TestClient, clock: FrozenClock, lang: str = "fr") -> dict[str, Any]:
    definition = client.get(f"/api/forms/contact?lang={lang}").json()
    clock.advance(dt.timedelta(seconds=20))  # a person takes a while to fill a form
    return {"shown_at": definition["shown_at"], "lang": lang}


def counts(state: State) -> tuple[int, int]:
    with state.sessions() as session:
        return (
            int(session.scalar(select(func.count()).select_from(FormSubmission)) or 0),
            int(session.scalar(select(func.count()).select_from(OutboxMessage)) or 0),
        )


def test_the_definition_comes_from_the_register(client: TestClient) -> None:
    definition = client.get("/api/forms/contact?lang=fr").json()
    names = [f["name"] for f in definition["fields"]]
    assert names == [
        "first_name",
        "last_name",
        "email",
        "phone",
        "specialisation",
        "company",
        "country",
        "message",
    ]
    message = next(f for f in definition["fields"] if f["name"] == "message")
    assert "donnée de santé" in message["help"]
    assert "CEGEDIM RX SRL" in definition["consent_text"]
    assert "consentement" in definition["notice"]["basis"]
    assert "90 jours" in definition["notice"]["retention"]
    assert client.get("/api/forms/nope").status_code == 404


def test_a_json_submission_is_stored_encrypted_and_queued(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    body = {**GOOD, **stamped(client, clock)}
    answer = client.post("/api/forms/contact", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["delete_after"].startswith("2026-04-15")  # 90 days after 15 January
    with state.sessions() as session:
        submission = session.scalars(select(FormSubmission)).one()
        values = json.loads(submission.fields)
        outbox = session.scalars(select(OutboxMessage)).all()
    assert values["phone"] == "+40211234567"  # E.164
    assert values["email"] == "Ana.Popescu@clinica.example.ro"  # domain normalised
    assert values["country"] == "RO" and "consent" not in values
    assert submission.legal_basis == "consent" and submission.consent_text_hash
    assert submission.policy_version == 1 and submission.language == "fr"
    assert {m.kind for m in outbox} == {"notification", "acknowledgement"}
    with state.engine.connect() as connection:
        raw = connection.exec_driver_sql("SELECT fields FROM form_submission").scalar_one()
    assert b"Popescu" not in bytes(raw) and b"+40211234567" not in bytes(raw)


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"email": "not-an-address"}, "email", "email"),
        ({"phone": "12"}, "phone", "phone"),
        ({"country": "XX", "phone": ""}, "country", "country"),
        ({"specialisation": "astronaut"}, "specialisation", "choice"),
        ({"first_name": "R2D2"}, "first_name", "name"),
        ({"last_name": ""}, "last_name", "required"),
        ({"message": "x" * 5001}, "message", "too_long"),
        ({"company": "ACME\u0007"}, "company", "characters"),
        ({"consent": False}, "consent", "consent"),
        ({"favourite_colour": "blue"}, "favourite_colour", "unknown"),
    ],
)
def test_bad_fields_are_422_with_a_reason_each_and_store_nothing(
    client: TestClient,
    state: State,
    clock: FrozenClock,
    changes: dict[str, Any],
    field: str,
    code: str,
) -> None:
    body = {**GOOD, **stamped(client, clock), **changes}
    answer = client.post("/api/forms/contact", json=body)
    assert answer.status_code == 422, answer.text
    problems = {p["field"]: p for p in answer.json()["problems"]}
    assert problems[field]["code"] == code
    assert problems[field]["reason"]  # translated, in French here
    for value in changes.values():  # never echoed
        if isinstance(value, str) and len(value) > 3:
            assert value not in answer.text
    assert counts(state) == (0, 0)


def test_abuse_is_refused_and_stores_nothing(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    fresh = client.get("/api/forms/contact").json()["shown_at"]
    too_fast = client.post("/api/forms/contact", json={**GOOD, "shown_at": fresh})
    assert too_fast.status_code == 400 and "too fast" in too_fast.text
    forged = client.post("/api/forms/contact", json={**GOOD, "shown_at": "1700000000.abc"})
    assert forged.status_code == 400
    missing = client.post("/api/forms/contact", json=GOOD)
    assert missing.status_code == 400
    bot = client.post(
        "/api/forms/contact", json={**GOOD, **stamped(client, clock), "website": "http://spam"}
    )
    assert bot.status_code == 400
    assert counts(state) == (0, 0)
    first = client.post("/api/forms/contact", json={**GOOD, **stamped(client, clock)})
    again = client.post("/api/forms/contact", json={**GOOD, **stamped(client, clock)})
    assert (first.status_code, again.status_code) == (201, 409)
    assert counts(state)[0] == 1


def test_wrong_content_types_and_bodies(client: TestClient, state: State) -> None:
    assert client.post("/api/forms/contact", content=b"a=b").status_code == 415
    assert (
        client.post(
            "/api/forms/contact", content=b"{", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert client.post("/api/forms/contact", json=[1, 2]).status_code == 400
    big = client.post("/api/forms/contact", json={"message": "x" * 70_000})
    assert big.status_code == 413
    assert client.post("/contact", json=GOOD).status_code == 415
    assert counts(state) == (0, 0)


def test_the_html_form_keeps_values_and_links_errors_to_fields(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    page = client.get("/contact?lang=ro")
    assert page.status_code == 200
    assert '<label for="field-email">' in page.text
    assert 'name="consent" type="checkbox" value="on">' in page.text  # unticked
    assert "Vă rugăm să nu transmiteți" in page.text  # the message field's help
    stamp = re.search(r'name="shown_at" value="([^"]+)"', page.text)
    assert stamp
    clock.advance(dt.timedelta(seconds=30))
    form = {**GOOD, "email": "nope", "consent": "", "shown_at": stamp.group(1), "lang": "ro"}
    answer = client.post("/contact", data=form)
    assert answer.status_code == 422
    assert 'href="#field-email"' in answer.text and 'href="#field-consent"' in answer.text
    assert 'aria-invalid="true"' in answer.text
    assert 'value="Ana-Maria"' in answer.text  # what was typed is kept
    assert "Introduceți o adresă de e-mail validă" in answer.text
    ok = client.post("/contact", data={**form, "email": GOOD["email"], "consent": "on"})
    assert ok.status_code == 200 and "Vă mulțumim" in ok.text  # redirected to the thanks page
    assert counts(state)[0] == 1


def test_a_submission_and_its_connection_log_row_share_one_transaction(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    from gardien.security.connection_log import ConnectionLogEntry

    body = {**GOOD, **stamped(client, clock)}
    batches = state.writer.batches
    assert client.post("/api/forms/contact", json=body).status_code == 201
    assert state.writer.batches == batches  # the log row did not need the group writer
    again = client.post("/api/forms/contact", json=body)
    assert again.status_code == 409  # refused: its row is written by the middleware
    with state.sessions() as session:
        logged = session.scalars(
            select(ConnectionLogEntry.status)
            .where(ConnectionLogEntry.path == "/api/forms/contact")
            .where(ConnectionLogEntry.method == "POST")
            .order_by(ConnectionLogEntry.id)
        ).all()
    assert logged == [201, 409]
