"""The DPO's consent pages: the chart, acceptance rates, search by consent id, revisions,
exports; each personal-data view and export leaves an audit entry."""

from __future__ import annotations

import csv
import datetime as dt
import io

from fastapi.testclient import TestClient
from sqlalchemy import select

from gardien.deps import State
from gardien.security.models import AuditEntry
from gardien.storage.clock import FrozenClock
from tests.consent.test_records import decision
from tests.security.signin import new_client, signed_in


def decide(client: TestClient, **changes: object) -> dict[str, object]:
    body = decision(client, **changes)
    assert client.post("/api/consent/records", json=body).status_code == 201
    return body


def test_dpo_charts_searches_and_exports(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    visitor = new_client(client, "203.0.113.9")
    first = decide(visitor)
    decide(visitor, action="reject_all", control="reject", choices={"audience_measurement": False})
    clock.advance(dt.timedelta(days=1))
    decide(visitor, action="custom_save", control="save", layer="panel")
    dpo = signed_in(client, state, clock, "dpo@example.org", "dpo")
    overview = dpo.client.get("/admin/consent")
    assert overview.status_code == 200
    assert overview.text.count("<rect") >= 3 + 7  # three day/action bars and the legend
    assert "2026-01-15" in overview.text and "2026-01-16" in overview.text
    assert "66.7 %" in overview.text  # two of three decisions granted audience measurement
    assert 'href="/admin/consent/revisions/1"' in overview.text
    found = dpo.client.get(f"/admin/consent/records?consent_id={first['consent_id']}")
    assert found.status_code == 200 and "accept_all" in found.text
    assert dpo.client.get("/admin/consent/records?consent_id=<script>").status_code == 400
    revision = dpo.client.get("/admin/consent/revisions/1")
    assert revision.status_code == 200
    assert "Mesure d’audience" in revision.text and "_pk_id.*" in revision.text
    assert dpo.client.get("/admin/consent/revisions/9").status_code == 404
    exported = dpo.client.get("/admin/consent/export?format=csv&from=2026-01-16&to=2026-01-16")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert [r["action"] for r in csv.DictReader(io.StringIO(exported.text))] == ["custom_save"]
    as_json = dpo.client.get("/admin/consent/export?format=json&action=reject_all")
    assert [r["action"] for r in as_json.json()] == ["reject_all"]
    assert dpo.client.get("/admin/consent/export?action=sell").status_code == 400
    assert dpo.client.get("/admin/consent/export?format=xml").status_code == 422
    stats = dpo.client.get("/admin/api/consent/stats").json()
    assert stats["total"] == 3
    assert stats["per_day"]["2026-01-15"] == {"accept_all": 1, "reject_all": 1}
    with state.sessions() as session:
        traces = session.scalars(
            select(AuditEntry.action).where(
                AuditEntry.action.in_(["view.consent_records", "consent.exported"])
            )
        ).all()
    assert sorted(str(t) for t in traces) == [
        "consent.exported",
        "consent.exported",
        "view.consent_records",
    ]


def test_an_auditor_sees_figures_but_no_consent_ids(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    auditor = signed_in(client, state, clock, "auditor@example.org", "auditor")
    assert auditor.client.get("/admin/consent").status_code == 200
    assert auditor.client.get("/admin/consent/records").status_code == 403
    assert auditor.client.get("/admin/consent/export").status_code == 403
