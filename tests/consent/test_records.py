"""Proof of consent on the server: what a record holds, what is refused, the chain, the
history a visitor downloads, the export a DPO takes, the cookie the server reads."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from gardien.consent import cookie
from gardien.consent.models import ConsentRecord, ConsentRevision
from gardien.consent.records import verify_chain
from gardien.consent.service import Filters, current_revision, export, records
from gardien.deps import State
from gardien.storage.clock import FrozenClock
from gardien.storage.subjects import SubjectIdentity


def config(client: TestClient, lang: str = "fr", **headers: str) -> dict[str, Any]:
    answer = client.get(f"/consent/config.json?lang={lang}", headers=headers)
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def decision(client: TestClient, **changes: Any) -> dict[str, Any]:
    conf = config(client)
    optional = [c["id"] for c in conf["categories"] if not c["required"]]
    body = {
        "consent_id": secrets.token_hex(16),
        "action": "accept_all",
        "layer": "banner",
        "control": "accept",
        "revision": conf["revision"],
        "hash": conf["hash"],
        "choices": dict.fromkeys(optional, True),
        "language": "fr",
        "page": "/tarifs?utm_source=x#top",
        "client_time": "2026-01-15T09:30:00.000Z",
        "gpc": False,
        "dnt": False,
    }
    body.update(changes)
    return body


def stored(state: State) -> list[ConsentRecord]:
    with state.sessions() as session:
        return list(session.scalars(select(ConsentRecord).order_by(ConsentRecord.seq)))


def test_config_comes_from_the_register_in_the_visitors_language(client: TestClient) -> None:
    conf = config(client, "fr")
    assert conf["revision"] == 1 and len(conf["hash"]) == 64
    assert conf["lifetime"] == {"years": 0, "months": 6, "days": 0}
    assert conf["texts"]["accept"] == "Tout accepter"
    assert conf["changes"] is None and conf["gpc"] is False
    by_id = {c["id"]: c for c in conf["categories"]}
    assert by_id["strictly_necessary"]["required"] is True
    assert by_id["audience_measurement"]["required"] is False
    assert by_id["audience_measurement"]["title"] == "Mesure d’audience"
    cookies = {c["name"]: c for c in by_id["audience_measurement"]["cookies"]}
    assert cookies["_pk_id.*"]["pattern"] is True
    assert cookies["_pk_id.*"]["duration"] == "6 mois"
    assert config(client, "ro", **{"Sec-GPC": "1"})["gpc"] is True


def test_a_decision_is_recorded_with_every_field_and_chained(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    body = decision(client)
    answer = client.post(
        "/api/consent/records", json=body, headers={"User-Agent": "Mozilla/5.0 " + "x" * 300}
    )
    assert answer.status_code == 201, answer.text
    reply = answer.json()
    assert reply["consent_id"] == body["consent_id"] and reply["revision"] == 1
    assert reply["expires_at"] == "2026-07-15T09:30:00+00:00"  # six calendar months
    (record,) = stored(state)
    assert record.event_id == reply["event_id"]
    assert record.consent_id == body["consent_id"]
    assert record.action == "accept_all" and record.layer == "banner"
    assert record.control == "accept"
    assert record.choices == {
        "categories": {"strictly_necessary": True, "audience_measurement": True},
        "services": {
            "admin_accounts": True,
            "audience_measurement": True,
            "consent_records": True,
        },
    }
    assert record.revision == 1 and record.content_hash == body["hash"]
    assert record.policy_version == 1
    assert record.language == "fr" and record.page == "/tarifs"
    assert record.user_agent is not None and len(record.user_agent) == 120
    assert record.occurred_at == clock.now()
    assert record.gpc is False and record.dnt is False
    with state.sessions() as session:
        assert verify_chain(session) is None


@pytest.mark.parametrize(
    ("changes", "status", "reason"),
    [
        ({"choices": {"audience_measurement": True, "advertising": True}}, 400, "unknown"),
        ({"choices": {}}, 400, "missing"),
        ({"revision": 99}, 400, "does not exist"),
        ({"hash": "0" * 64}, 400, "hash"),
        ({"action": "reject_all", "control": "reject"}, 400, "refuse"),
        ({"action": "accept_all", "choices": {"audience_measurement": False}}, 400, "grant"),
        ({"action": "sell_data"}, 400, "action"),
        ({"consent_id": "not-an-id"}, 400, "consent_id"),
        ({"language": "de"}, 400, "language"),
        ({"extra": "field"}, 400, "extra"),
        ({"choices": {"audience_measurement": "yes"}}, 400, "choices"),
        ({"page": "/" + "x" * 5000}, 400, "4096"),
        ({"client_time": "call me on 06 12 34 56 78"}, 400, "client_time"),
    ],
)
def test_bad_records_are_refused_with_a_reason_and_store_nothing(
    client: TestClient, state: State, changes: dict[str, Any], status: int, reason: str
) -> None:
    answer = client.post("/api/consent/records", json=decision(client, **changes))
    assert answer.status_code == status, answer.text
    assert reason in answer.text
    assert stored(state) == []


def test_malformed_json_and_an_empty_body_are_refused(client: TestClient, state: State) -> None:
    for body in (b"", b"{", b"[]", b"null", json.dumps({"a": 1}).encode()):
        answer = client.post(
            "/api/consent/records", content=body, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 400, body
    assert stored(state) == []


def test_a_record_for_a_revision_no_longer_in_force_is_a_conflict(
    client: TestClient, state: State
) -> None:
    current = current_revision(state)
    with state.sessions.begin() as session:
        session.execute(update(ConsentRevision).where(ConsentRevision.number == 1).values(number=2))
    state.caches["consent.current"] = type(current)(
        **{**current.__dict__, "number": 2, "configs": {}}
    )
    answer = client.post("/api/consent/records", json=decision(client, revision=1))
    assert answer.status_code == 409
    assert "no longer in force" in answer.json()["detail"]


def test_tampering_is_caught_and_a_tombstone_is_not(client: TestClient, state: State) -> None:
    ids = []
    for action, control, granted in (
        ("accept_all", "accept", True),
        ("reject_all", "reject", False),
        ("custom_save", "save", True),
    ):
        body = decision(client, action=action, control=control)
        body["choices"] = dict.fromkeys(body["choices"], granted)
        ids.append(body["consent_id"])
        assert client.post("/api/consent/records", json=body).status_code == 201
    provider = next(p for p in state.providers.providers if p.name == "consent_records")
    with state.sessions.begin() as session:
        erased = provider.erase(session, SubjectIdentity(consent_id=ids[1]))
    assert erased.erased == 1
    with state.sessions() as session:
        assert verify_chain(session) is None  # the erasure left a tombstone
    with state.sessions.begin() as session:
        session.execute(
            update(ConsentRecord).where(ConsentRecord.seq == 3).values(action="reject_all")
        )
    with state.sessions() as session:
        broken = verify_chain(session)
    assert broken is not None and broken.seq == 3


def test_history_export_and_provider_by_consent_id(client: TestClient, state: State) -> None:
    first = decision(client)
    client.post("/api/consent/records", json=first)
    withdraw = decision(
        client,
        consent_id=first["consent_id"],
        action="withdraw",
        layer="panel",
        control="save",
        choices={"audience_measurement": False},
    )
    assert client.post("/api/consent/records", json=withdraw).status_code == 201
    client.post("/api/consent/records", json=decision(client))  # someone else
    own = client.get(f"/api/consent/history/{first['consent_id']}")
    assert own.status_code == 200
    assert [r["action"] for r in own.json()["records"]] == ["accept_all", "withdraw"]
    assert client.get(f"/api/consent/history/{secrets.token_hex(16)}").status_code == 404
    assert client.get("/api/consent/history/..%2f..%2fetc").status_code == 404
    with state.sessions() as session:
        rows = list(records(session, Filters(action="withdraw")))
        assert [r["consent_id"] for r in rows] == [first["consent_id"]]
        csv_text = export(records(session, Filters()), "csv")
        provider = next(p for p in state.providers.providers if p.name == "consent_records")
        found = provider.find(session, SubjectIdentity(consent_id=first["consent_id"]))
        exported = provider.export(session, SubjectIdentity(consent_id=first["consent_id"]))
    assert csv_text.count("\n") == 4  # header and three records
    assert "audience_measurement=1" in csv_text
    assert found.total == 2
    assert exported["consent_records"][1]["categories.audience_measurement"] is False


def test_records_are_encrypted_at_rest(client: TestClient, state: State) -> None:
    body = decision(client)
    client.post("/api/consent/records", json=body)
    with state.engine.connect() as connection:
        raw = connection.exec_driver_sql("SELECT consent_id, consent_id_index FROM consent_record")
        value, index = raw.one()
    assert body["consent_id"].encode() not in bytes(value)
    assert body["consent_id"] not in index


def test_the_server_reads_the_cookie_strictly(state: State, clock: FrozenClock) -> None:
    current = current_revision(state)
    now = clock.now()
    decided = int(now.timestamp()) - 60
    good = f"1:{'a' * 32}:{current.number}:{decided}:audience_measurement=1"
    read = cookie.current_decision(good, current.number, current.lifetime, now)
    assert read is not None and read.choices == {"audience_measurement": True}
    for corrupt in (
        "",
        "garbage",
        good.replace("=1", "=yes"),
        good.replace("1:", "2:", 1),
        good + "&audience_measurement=0",  # a category twice
        f"1:{'a' * 32}:{current.number + 1}:{decided}:audience_measurement=1",  # other revision
        f"1:{'a' * 32}:{current.number}:{decided + 86400}:audience_measurement=1",  # future
        f"1:{'A' * 32}:{current.number}:{decided}:audience_measurement=1",
    ):
        assert cookie.current_decision(corrupt, current.number, current.lifetime, now) is None
    later = now + dt.timedelta(days=183)  # six months and more: asked again
    assert cookie.current_decision(good, current.number, current.lifetime, later) is None


def test_revisions_archive_what_changed(state: State, clock: FrozenClock) -> None:
    from gardien.consent.revisions import ensure_current

    register = state.register
    changed = register.model_copy(deep=True)
    category = changed.consent_categories[1]
    category.description["fr"] = category.description["fr"] + " Nouveau texte."
    with state.sessions.begin() as session:
        again = ensure_current(session, register, clock.now())
        newer = ensure_current(session, changed, clock.now())
        count = session.scalar(select(func.count()).select_from(ConsentRevision))
    assert again.number == 1 and newer.number == 2 and count == 2
    assert newer.changes == {"changed": ["category:audience_measurement"]}
