"""``GET /api/analytics/reports`` on both backends: who may read it (a personal API token whose
role grants ``view_reports``, as a Bearer header or Matomo's ``token_auth``), every malformed
query refused with a reason, and the JSON and CSV carrying the figures of a known traffic."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gardien.analytics.reports import TABLES, build_report, report_as_dict
from gardien.deps import State
from gardien.security.permissions import Permission, Role, allowed
from gardien.storage.clock import FrozenClock
from tests.analytics.report_traffic import (
    EXPECTED,
    EXPECTED_DAYS,
    FIRST,
    LAST,
    add_traffic,
)
from tests.security.signin import create_token, new_client, signed_in

URL = "/api/analytics/reports"
RANGE = {"site": "1", "from": FIRST.isoformat(), "to": LAST.isoformat()}


def _token(client: TestClient, state: State, clock: FrozenClock, role: str = "auditor") -> str:
    person = signed_in(client, state, clock, f"{role}@example.org", role)
    return create_token(person, "reports", role)


def _api(client: TestClient, token: str) -> TestClient:
    api = new_client(client)
    api.headers["Authorization"] = f"Bearer {token}"
    return api


def test_without_a_token_the_answer_is_401(client: TestClient) -> None:
    answer = new_client(client).get(URL, params=RANGE)
    assert answer.status_code == 401
    assert answer.json()["error"] == "not_signed_in"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    forged = new_client(client).get(URL, params=RANGE | {"token_auth": "gdn_" + "A" * 43})
    assert forged.status_code == 401


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_each_role_reads_reports_as_the_matrix_says(
    client: TestClient, state: State, clock: FrozenClock, role: str
) -> None:
    token = _token(client, state, clock, role)
    answer = _api(client, token).get(URL, params=RANGE)
    expected = 200 if allowed(role, Permission.view_reports) else 403
    assert answer.status_code == expected, answer.text
    by_parameter = new_client(client).get(URL, params=RANGE | {"token_auth": token})
    assert by_parameter.status_code == expected


def test_a_revoked_token_gets_401(client: TestClient, state: State, clock: FrozenClock) -> None:
    person = signed_in(client, state, clock, "dpo@example.org", "dpo")
    token = create_token(person, "cron", "dpo")
    assert _api(client, token).get(URL, params=RANGE).status_code == 200
    tokens = person.client.get("/admin/tokens").text
    token_id = tokens.split('action="/admin/tokens/')[1].split("/revoke")[0]
    revoked = person.client.post(
        f"/admin/tokens/{token_id}/revoke", data={"csrf": person.csrf}, follow_redirects=False
    )
    assert revoked.status_code == 303
    answer = _api(client, token).get(URL, params=RANGE)
    assert answer.status_code == 401
    assert answer.json()["detail"] == "invalid or revoked API token"
    assert new_client(client).get(URL, params=RANGE | {"token_auth": token}).status_code == 401


BAD = [
    ({"from": "2026-01-13", "to": "2026-01-14"}, "site: a site id of the register is required"),
    ({"site": "x", "from": "2026-01-13", "to": "2026-01-14"}, "site: expected a number"),
    ({"site": "9" * 5000, "from": "2026-01-13", "to": "2026-01-14"}, "site: expected a number"),
    ({"site": "7", "from": "2026-01-13", "to": "2026-01-14"}, "the register declares no site 7"),
    ({"site": "1", "to": "2026-01-14"}, "from: a date is required (YYYY-MM-DD)"),
    ({"site": "1", "from": "2026-01-13"}, "to: a date is required (YYYY-MM-DD)"),
    ({"site": "1", "from": "13/01/2026", "to": "2026-01-14"}, "from: expected a date"),
    ({"site": "1", "from": "2026-02-30", "to": "2026-03-01"}, "from: expected a date"),
    ({"site": "1", "from": "2026-01-13", "to": "2026-01-14T00:00"}, "to: expected a date"),
    ({"site": "1", "from": "2026-01-13", "to": "<script>"}, "to: expected a date"),
    ({"site": "1", "from": "2026-01-14", "to": "2026-01-13"}, "first day is after the last"),
    (
        {"site": "1", "from": "2025-01-01", "to": "2026-01-02"},
        "the range covers 367 days; a report covers at most 366",
    ),
    ({**RANGE, "format": "xml"}, "format: json or csv"),
]


@pytest.mark.parametrize(("query", "reason"), BAD)
def test_bad_queries_are_400_with_a_reason(
    client: TestClient, state: State, clock: FrozenClock, query: dict[str, str], reason: str
) -> None:
    api = _api(client, _token(client, state, clock))
    answer = api.get(URL, params=query)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "bad_request"
    assert reason in answer.json()["detail"]
    assert "<script>" not in answer.text  # the value is never echoed


def test_a_full_year_is_accepted(client: TestClient, state: State, clock: FrozenClock) -> None:
    api = _api(client, _token(client, state, clock))
    answer = api.get(URL, params={"site": "1", "from": "2025-01-15", "to": "2026-01-15"})
    assert answer.status_code == 200
    assert len(answer.json()["days"]) == 366


def _expected_document(state: State) -> dict[str, Any]:
    with state.readers() as session:
        return report_as_dict(build_report(session, 1, FIRST, LAST))


def test_json_has_the_figures_of_the_known_traffic(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    add_traffic(state)
    api = _api(client, _token(client, state, clock))
    answer = api.get(URL, params=RANGE)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    document = answer.json()
    assert document == _expected_document(state)
    assert {k: document["totals"][k] for k in EXPECTED} == EXPECTED
    assert document["totals"]["bounce_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert document["totals"]["average_time_on_site"] == 180.0
    assert [(d["day"], d["visits"], d["visitors"], d["pageviews"]) for d in document["days"]] == [
        (day.isoformat(), *figures) for day, figures in EXPECTED_DAYS.items()
    ]
    assert document["rollups_as_of"] == clock.now().isoformat()
    tables = document["tables"]
    assert set(tables) == set(TABLES)
    pages = {row["label"]: (row["visits"], row["actions"]) for row in tables["pages"]}
    assert pages == {
        "https://www.cegedim-rx.ro/": (2, 2),
        "https://www.cegedim-rx.ro/contact": (2, 2),
        "https://www.cegedim-rx.ro/produse": (1, 1),
    }
    assert [r["label"] for r in tables["campaigns"]] == ["winter"]
    assert [(r["label"], r["actions"]) for r in tables["searches"]] == [("ordonnance", 1)]
    assert [r["label"] for r in tables["events"]] == ["cta / click / call"]
    assert [r["label"] for r in tables["downloads"]] == ["https://www.cegedim-rx.ro/notice.pdf"]
    assert [r["label"] for r in tables["outlinks"]] == ["https://example.net/out"]


def test_csv_has_the_same_figures(client: TestClient, state: State, clock: FrozenClock) -> None:
    add_traffic(state)
    token = _token(client, state, clock)
    answer = new_client(client).get(URL, params=RANGE | {"format": "csv", "token_auth": token})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    totals = [row for row in rows if row["table"] == "totals"]
    assert len(totals) == 1
    assert {k: int(totals[0][k]) for k in EXPECTED} == EXPECTED
    days = [(row["label"], int(row["visits"])) for row in rows if row["table"] == "days"]
    assert days == [(day.isoformat(), figures[0]) for day, figures in EXPECTED_DAYS.items()]
    document = _expected_document(state)
    for name in TABLES:
        listed = [
            {"label": r["label"], "visits": int(r["visits"]), "actions": int(r["actions"])}
            for r in rows
            if r["table"] == name
        ]
        assert listed == document["tables"][name], name


def test_another_site_counts_only_its_own_hits(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    add_traffic(state)  # one hit of site 2 on the 13th; the seed register declares site 1 only
    api = _api(client, _token(client, state, clock))
    assert api.get(URL, params=RANGE | {"site": "2"}).status_code == 400
    assert api.get(URL, params=RANGE).json()["totals"]["visits"] == EXPECTED["visits"]


def test_openapi_documents_the_endpoint(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"][URL]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert names == {"site", "from", "to", "format", "token_auth"}
    assert {"200", "400", "401", "403"} <= set(operation["responses"])
