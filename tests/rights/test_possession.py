"""Self-service access and erasure for the data bound to a browser, verified by possession of
its cookies (``/api/rights/possession/*``), on both backends."""

from __future__ import annotations

import io
import json
import secrets
import zipfile
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gardien.analytics.models import AnalyticsHit
from gardien.consent.store import ConsentProvider
from gardien.deps import State
from gardien.rights.models import RightsCase, RightsEvent
from gardien.storage.subjects import SubjectIdentity
from tests.rights.conftest import Seeded

EXPORT = "/api/rights/possession/export"
ERASE = "/api/rights/possession/erase"
SAME_ORIGIN = {"X-Gardien-Self-Service": "1", "Origin": "http://testserver"}
ANA_VISITOR = "00000000000000aa"  # the conftest's hits under Ana's consent id


def cookies(consent_id: str | None, visitor_id: str | None = None) -> dict[str, str]:
    pairs = []
    if consent_id:
        pairs.append(f"gardien_consent=1:{consent_id}:1:1773100000:audience_measurement=1")
    if visitor_id:
        pairs.append(f"_pk_id.1.ab12={visitor_id}.1773100000.")
        pairs.append("_pk_ses.1.ab12=1")
    return {"Cookie": "; ".join(pairs)} if pairs else {}


def cases(state: State) -> list[RightsCase]:
    with state.sessions() as session:
        return list(session.scalars(select(RightsCase).order_by(RightsCase.id)))


def events(state: State, case_id: int) -> list[str]:
    with state.sessions() as session:
        return list(
            session.scalars(
                select(RightsEvent.kind)
                .where(RightsEvent.case_id == case_id)
                .order_by(RightsEvent.id)
            )
        )


def hits(state: State, visitor: str) -> int:
    with state.sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(AnalyticsHit)
                .where(AnalyticsHit.visitor_id == visitor)
            )
            or 0
        )


def consent_records(state: State, consent_id: str) -> int:
    with state.sessions() as session:
        return ConsentProvider().find(session, SubjectIdentity(consent_id=consent_id)).total


def package(response: Any) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        assert "index.html" in names
        document: dict[str, Any] = json.loads(archive.read("data.json"))
    return document


def test_without_a_cookie_nothing_is_done(client: TestClient, seeded: Seeded) -> None:
    state = seeded.state
    for path in (EXPORT, ERASE):
        answer = client.post(path, headers=SAME_ORIGIN)
        assert answer.status_code == 400
        assert answer.json()["error"] == "no_browser_identifier"
        assert "consent cookie" in answer.json()["detail"]
        # Malformed cookies prove nothing either.
        bad = {**SAME_ORIGIN, "Cookie": "gardien_consent=1:NOTHEX:1:2:a=1; _pk_id.1.ab=demo"}
        assert client.post(path, headers=bad).status_code == 400
    assert cases(state) == []
    assert consent_records(state, seeded.consent_id) == 2


def test_cross_site_requests_are_refused(client: TestClient, seeded: Seeded) -> None:
    state = seeded.state
    held = cookies(seeded.consent_id, ANA_VISITOR)
    for headers in (
        held,  # no custom header: a plain form post from anywhere
        {**held, "X-Gardien-Self-Service": "1", "Origin": "https://evil.example"},
        {**held, "X-Gardien-Self-Service": "1", "Origin": "null"},
        {**held, "X-Gardien-Self-Service": "1", "Sec-Fetch-Site": "same-site"},
        {**held, "X-Gardien-Self-Service": "yes"},
    ):
        for path in (EXPORT, ERASE):
            answer = client.post(path, headers=headers)
            assert answer.status_code == 403, headers
            assert answer.json()["error"] == "cross_site_request"
            assert "set-cookie" not in answer.headers
    assert cases(state) == []
    assert consent_records(state, seeded.consent_id) == 2
    assert hits(state, ANA_VISITOR) == 2
    # The register's own site, as a browser names it behind the operator's reverse proxy.
    proxied = {**held, "X-Gardien-Self-Service": "1", "Origin": "https://www.cegedim-rx.ro"}
    assert client.post(EXPORT, headers=proxied).status_code == 200
    assert len(cases(state)) == 1


def test_export_holds_what_the_cookies_prove_and_opens_a_case(
    client: TestClient, seeded: Seeded
) -> None:
    state = seeded.state
    # An identifier in the body is never read: the other person's id stays out.
    answer = client.post(
        EXPORT + "?lang=fr",
        headers={
            **SAME_ORIGIN,
            **cookies(seeded.consent_id, ANA_VISITOR),
            "Sec-Fetch-Site": "same-origin",
        },
        json={"consent_id": seeded.other_consent_id, "visitor_id": "ffffffffffffffff"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["cache-control"] == "no-store"
    document = package(answer)
    stores = document["stores"]
    assert stores["consent_records"]["found"] == {"consent_records": 2}
    assert stores["audience_measurement"]["found"] == {"audience_measurement": 2}
    assert stores["contact_forms"]["found"] == {"contact_forms": 0}
    text = answer.content.decode("latin-1") + json.dumps(document)
    assert seeded.other_consent_id not in text
    assert "ffffffffffffffff" not in text
    activities = {info["activity"] for info in document["information"]}
    assert {"consent_records", "audience_measurement"} <= activities
    assert all(info["complaint"]["authority"] for info in document["information"])
    [case] = cases(state)
    assert answer.headers["x-gardien-case"] == case.reference == document["case"]
    assert (case.channel, case.status, case.outcome) == ("browser", "closed", "answered")
    assert case.rights == "access,portability"
    assert case.language == "fr"
    assert case.verified_at is not None
    assert case.consent_id == seeded.consent_id
    assert case.visitor_id == ANA_VISITOR
    assert "possession" in (case.verification_basis or "")
    kinds = events(state, case.id)
    assert kinds[:2] == ["opened", "verified"]
    assert {"package_built", "package_delivered", "closed"} <= set(kinds)


def test_an_unknown_id_is_answered_like_a_known_one(client: TestClient, seeded: Seeded) -> None:
    state = seeded.state
    known = client.post(EXPORT, headers={**SAME_ORIGIN, **cookies(seeded.consent_id)})
    unknown = client.post(EXPORT, headers={**SAME_ORIGIN, **cookies(secrets.token_hex(16))})
    assert known.status_code == unknown.status_code == 200
    assert set(known.headers) == set(unknown.headers)
    empty = package(unknown)
    found = {name: sum(store["found"].values()) for name, store in empty["stores"].items()}
    # Nothing but the case this very request opened.
    assert found.pop("rights_requests") == 1
    assert set(found.values()) == {0}
    assert sum(package(known)["stores"]["consent_records"]["found"].values()) == 2
    erased = client.post(ERASE, headers={**SAME_ORIGIN, **cookies(secrets.token_hex(16))})
    assert erased.status_code == 200
    assert erased.json()["complete"] is True
    matched = {store["store"]: store["matched"] for store in erased.json()["stores"]}
    assert matched.pop("rights_requests") == 1  # its own case, kept as evidence
    assert set(matched.values()) == {0}
    assert [c.channel for c in cases(state)] == ["browser"] * 3


def test_erase_removes_the_browser_data_and_clears_its_cookies(
    client: TestClient, seeded: Seeded
) -> None:
    state = seeded.state
    answer = client.post(ERASE, headers={**SAME_ORIGIN, **cookies(seeded.consent_id, ANA_VISITOR)})
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    stores = {store["store"]: store for store in receipt["stores"]}
    assert stores["consent_records"]["erased"] == 2
    assert stores["audience_measurement"]["erased"] == 2
    assert receipt["nothing_left"] is True and receipt["complete"] is True
    assert receipt["identified_by"] == ["consent_id", "visitor_id"]
    assert consent_records(state, seeded.consent_id) == 0
    assert hits(state, ANA_VISITOR) == 0
    # Other people's data is untouched; Ana's hits under another visitor id too (not proven).
    assert consent_records(state, seeded.other_consent_id) == 1
    assert hits(state, "ffffffffffffffff") == 1
    cleared = answer.headers.get_list("set-cookie")
    for name in ("gardien_consent", "_pk_id.1.ab12", "_pk_ses.1.ab12"):
        assert any(c.startswith(f"{name}=") and "Max-Age=0" in c for c in cleared), name
    [case] = cases(state)
    assert (case.channel, case.rights, case.status) == ("browser", "erasure", "closed")
    assert receipt["case"] == case.reference
    assert json.loads(case.receipt or "{}") == receipt
    assert {"opened", "verified", "erased", "requeried", "closed"} <= set(events(state, case.id))
