"""The audience dashboard (``/admin/analytics``) on both backends: who sees it, the figures of
a known traffic beside the previous period, the chart and its table, a bad range answered
with the form and a reason, and the CSV export traced in the audit trail."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gardien.analytics.admin import period_totals
from gardien.analytics.reports import build_report, report_as_csv
from gardien.deps import State
from gardien.security.models import AuditEntry
from gardien.security.permissions import Permission, Role, allowed
from gardien.storage.clock import FrozenClock
from tests.analytics.report_traffic import BEFORE, FIRST, LAST, add_traffic
from tests.security.signin import SignedIn, signed_in

PAGE = "/admin/analytics"
RANGE = {"site": "1", "from": FIRST.isoformat(), "to": LAST.isoformat()}
LATER = dt.date(2026, 3, 1)
"""A day without traffic."""


def _person(client: TestClient, state: State, clock: FrozenClock, role: str) -> SignedIn:
    return signed_in(client, state, clock, f"{role}@example.org", role)


def _figure(html: str, name: str) -> tuple[str, ...]:
    row = re.search(
        rf'<tr><th scope="row">{name}</th>'
        r'<td class="num">([^<]*)</td><td class="num">([^<]*)</td>'
        r'<td class="num">([^<]*)</td><td class="num">([^<]*)</td></tr>',
        html,
    )
    assert row, f"no row {name}"
    return row.groups()


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_each_role_sees_the_dashboard_as_the_matrix_says(
    client: TestClient, state: State, clock: FrozenClock, role: str
) -> None:
    person = _person(client, state, clock, role)
    answer = person.client.get(PAGE)
    if allowed(role, Permission.view_reports):
        assert answer.status_code == 200
        assert "<h1>Audience</h1>" in answer.text
        assert 'href="/admin/analytics" aria-current="page"' in answer.text  # in the navigation
    else:
        assert answer.status_code == 403
        assert 'href="/admin/analytics"' not in person.client.get("/admin").text


@pytest.mark.parametrize("role", ["dpo", "auditor"])
def test_the_figures_of_a_known_traffic_beside_the_previous_period(
    client: TestClient, state: State, clock: FrozenClock, role: str
) -> None:
    add_traffic(state)
    person = _person(client, state, clock, role)
    html = person.client.get(PAGE, params=RANGE).text
    assert _figure(html, "Visits") == ("3", "1", "+2", "+200.0 %")
    assert _figure(html, "Unique visitors") == ("3", "1", "+2", "+200.0 %")
    assert _figure(html, "Page views") == ("5", "1", "+4", "+400.0 %")
    assert _figure(html, "Bounce rate") == ("33.3 %", "100.0 %", "-66.7 pt", "-66.7 %")
    assert _figure(html, "Average time on site") == ("3:00", "0:00", "+180 s", "n/a")
    assert "2026-01-13 to 2026-01-14 (2 days), compared with 2026-01-11 to 2026-01-12." in html
    assert "Current as of 2026-01-15 09:30 UTC." in html
    # the chart: one bar per day, the tallest for the 13th, and the same figures as a table
    bars = re.findall(r'<rect [^>]*height="([0-9.]+)"[^>]*><title>([^<]+)</title>', html)
    assert [label for _, label in bars] == ["2026-01-13: 2", "2026-01-14: 1"]
    assert float(bars[0][0]) == 2 * float(bars[1][0]) > 0
    assert '<svg role="img" aria-labelledby="visits-title visits-desc"' in html
    assert re.search(
        r'<tr><th scope="row">2026-01-13</th><td class="num">2</td><td class="num">2</td>'
        r'<td class="num">3</td></tr>',
        html,
    )
    # the report tables, each under its heading with a caption
    for heading in ("Top pages", "Entry pages", "Referrer types", "Site searches", "Downloads"):
        assert f">{heading}</h2>" in html
        assert f"<caption>{heading}, most visits first</caption>" in html
    assert re.search(
        r'<tr><th scope="row">https://www.cegedim-rx.ro/contact</th>'
        r'<td class="num">2</td><td class="num">2</td></tr>',
        html,
    )
    assert '<th scope="row">winter</th>' in html
    assert '<th scope="row">ordonnance</th>' in html
    assert "Nothing in this period." not in html.split('id="h-campaigns"')[1].split("</section>")[0]


def test_opens_on_the_last_30_days_and_offers_presets(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    add_traffic(state)
    person = _person(client, state, clock, "dpo")
    html = person.client.get(PAGE).text
    assert person.client.get(PAGE, params={"site": "1"}).text == html  # the site, no dates
    assert person.client.get(PAGE, params={"site": "9"}).status_code == 400
    assert 'value="2025-12-17"' in html and 'value="2026-01-15"' in html
    assert "2025-12-17 to 2026-01-15 (30 days)" in html
    assert _figure(html, "Visits")[0] == "4"  # the 11th's visit is in the last 30 days too
    presets = re.findall(r'<li><a href="(/admin/analytics\?[^"]+)"', html)
    assert presets[0] == "/admin/analytics?site=1&amp;from=2026-01-09&amp;to=2026-01-15"
    assert len(presets) == 4


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"site": "1", "from": "2026-01-14", "to": "2026-01-13"}, "first day is after the last"),
        ({"site": "1", "from": "2024-01-01", "to": "2026-01-13"}, "a report covers at most 366"),
        ({"site": "3", "from": "2026-01-13", "to": "2026-01-14"}, "declares no site 3"),
        ({"site": "1", "from": "yesterday", "to": "2026-01-14"}, "from: expected a date"),
    ],
)
def test_a_bad_range_shows_the_form_and_the_reason(
    client: TestClient, state: State, clock: FrozenClock, query: dict[str, str], reason: str
) -> None:
    answer = _person(client, state, clock, "auditor").client.get(PAGE, params=query)
    assert answer.status_code == 400
    alert = re.search(r'<p class="error" role="alert">([^<]+)</p>', answer.text)
    assert alert and reason in alert.group(1)
    assert 'action="/admin/analytics"' in answer.text
    assert "<svg" not in answer.text


def test_csv_export_is_the_report_and_is_audited(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    add_traffic(state)
    person = _person(client, state, clock, "auditor")
    html = person.client.get(PAGE, params=RANGE).text
    link = re.search(r'<a href="(/admin/analytics/export\?[^"]+)" download>Export as CSV', html)
    assert link
    answer = person.client.get(link.group(1).replace("&amp;", "&"))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == (
        'attachment; filename="analytics-site1-2026-01-13-2026-01-14.csv"'
    )
    with state.readers() as session:
        assert answer.text == report_as_csv(build_report(session, 1, FIRST, LAST))
        traces = session.execute(
            select(AuditEntry.action, AuditEntry.target_id, AuditEntry.reason).where(
                AuditEntry.action == "analytics.exported"
            )
        ).all()
    assert [tuple(t) for t in traces] == [
        ("analytics.exported", "1", "2026-01-13..2026-01-14, csv")
    ]
    refused = person.client.get("/admin/analytics/export", params=RANGE | {"to": "2026-01-01"})
    assert refused.status_code == 400


def test_the_dashboard_speaks_french_and_romanian(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    add_traffic(state)
    person = _person(client, state, clock, "dpo")
    french = person.client.get(PAGE, params=RANGE | {"lang": "fr"}).text
    assert '<h2 id="h-visits">Visites au fil du temps</h2>' in french
    assert _figure(french, "Pages vues") == ("5", "1", "+4", "+400.0 %")
    refused = person.client.get(PAGE, params=RANGE | {"lang": "ro", "to": "2026-01-01"})
    assert refused.status_code == 400
    assert "prima zi este după ultima zi" in refused.text
    assert "<h1>Audiență</h1>" in refused.text


def test_the_compared_totals_are_the_reports_totals(state: State) -> None:
    add_traffic(state)
    with state.readers() as session:
        for start, end in ((FIRST, LAST), (BEFORE, LAST), (LAST, LAST), (LATER, LATER)):
            assert (
                period_totals(session, 1, start, end) == build_report(session, 1, start, end).totals
            ), (start, end)
