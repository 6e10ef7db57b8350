"""Rollups and reports on both backends: a generated day of traffic reported exactly, refreshes
that touch only changed days, erasure and retention, concurrent refreshers, bad input."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from gardien.analytics.models import (
    AnalyticsDay,
    AnalyticsDayRow,
    AnalyticsDirtyDay,
    AnalyticsHit,
    AnalyticsRollupState,
    analytics_hit,
)
from gardien.analytics.reports import (
    MAX_DAYS,
    TABLES,
    Report,
    Row,
    build_report,
    refresh_rollups,
    report_as_csv,
    report_as_dict,
)
from gardien.analytics.rollups import LEASE, ROWS_PER_DAY
from gardien.analytics.store import AnalyticsProvider
from gardien.deps import State
from gardien.errors import BadRequest
from gardien.retention.service import run_retention
from gardien.storage.clock import FrozenClock
from gardien.storage.locks import LockBusy, acquire
from gardien.storage.subjects import SubjectIdentity
from tests.analytics import rollup_traffic as traffic

DAY = dt.date(2026, 1, 14)
NEXT = dt.date(2026, 1, 15)


COLUMNS = (
    "url",
    "referrer",
    "user_agent",
    "language",
    "network",
    "event_category",
    "event_action",
    "event_name",
    "search_keyword",
)


def _insert(state: State, rows: list[dict[str, Any]]) -> None:
    """Hits as ingestion stores them (an executemany needs every row to name every column)."""
    full = [{**dict.fromkeys(COLUMNS), **row} for row in rows]
    with state.engine.begin() as connection:
        connection.execute(insert(analytics_hit), full)


def _report(state: State, start: dt.date = DAY, end: dt.date = NEXT) -> Report:
    with state.sessions() as session:
        return build_report(session, traffic.SITE, start, end, limit=1000)


def _assert_matches(report: Report, want: dict[str, Any]) -> None:
    totals = report.totals
    for name, value in want["totals"].items():
        assert getattr(totals, name) == value, name
    for table in TABLES:
        got = {row.label: (row.visits, row.actions) for row in report.tables[table]}
        assert got == want["tables"].get(table, {}), table
    rows = report.tables["pages"]
    assert rows == sorted(rows, key=lambda r: (-r.actions, -r.visits, r.label))


def test_a_generated_day_is_reported_as_generated(state: State) -> None:
    visits = traffic.generate_day(DAY)
    _insert(state, traffic.rows_of(visits))
    # Another site's hits stay out of site 1's report.
    _insert(state, [{**traffic.rows_of(visits[:3])[0], "site_id": 2}])
    refresh_rollups(state.sessions, state.register, state.clock)

    report = _report(state)
    want = traffic.expected(visits)
    _assert_matches(report, want)
    assert want["totals"]["bounces"] > 0 and want["totals"]["searches"] > 0
    assert set(want["tables"]["referrer_types"]) == {
        "direct",
        "search",
        "social",
        "website",
        "campaign",
    }
    assert {"US", "FR", "RO", "XX", "BE"} <= set(want["tables"]["countries"])
    assert [d.day for d in report.days] == [DAY, NEXT]
    assert report.days[1].totals.visits == 0  # a day without traffic is there, all zeros
    assert report.totals.bounce_rate == pytest.approx(
        want["totals"]["bounces"] / want["totals"]["visits"]
    )
    assert report.rollups_as_of == state.clock.now()

    # No label keeps a query string or a fragment, and no rollup row holds a visitor id.
    with state.sessions() as session:
        labels = session.scalars(select(AnalyticsDayRow.label)).all()
    assert not [label for label in labels if "?" in label or "#" in label]
    assert not [label for label in labels if any(v.visitor in label for v in visits)]


def test_a_report_never_reads_raw_hits(state: State) -> None:
    visits = traffic.generate_day(DAY, visitors=20)
    _insert(state, traffic.rows_of(visits))
    refresh_rollups(state.sessions, state.register, state.clock)
    before = _report(state)
    with state.engine.begin() as connection:
        connection.execute(analytics_hit.delete())
    assert _report(state) == before


def _computed_at(state: State) -> dict[dt.date, dt.datetime]:
    with state.sessions() as session:
        rows = session.execute(select(AnalyticsDay.day, AnalyticsDay.computed_at))
        return {row.day: row.computed_at for row in rows}


def test_a_refresh_recomputes_only_the_days_that_changed(state: State, clock: FrozenClock) -> None:
    first = traffic.generate_day(DAY, visitors=15, seed=1)
    second = traffic.generate_day(NEXT, visitors=15, seed=2)
    _insert(state, traffic.rows_of(first) + traffic.rows_of(second))
    done = refresh_rollups(state.sessions, state.register, clock)
    assert done.recomputed == [(1, DAY), (1, NEXT)]
    stamps = _computed_at(state)

    clock.advance(dt.timedelta(minutes=1))
    assert refresh_rollups(state.sessions, state.register, clock).recomputed == []
    assert _computed_at(state) == stamps

    late = traffic.generate_day(NEXT, visitors=3, seed=3)
    for visit in late:
        visit.visitor = "f" + visit.visitor[1:]
    _insert(state, traffic.rows_of(late))
    clock.advance(dt.timedelta(minutes=1))
    assert refresh_rollups(state.sessions, state.register, clock).recomputed == [(1, NEXT)]
    after = _computed_at(state)
    assert after[DAY] == stamps[DAY] and after[NEXT] == clock.now()
    _assert_matches(_report(state), traffic.expected(first + second + late))


def test_a_hit_committed_after_a_refresh_read_a_higher_id_is_counted_later(
    state: State, clock: FrozenClock
) -> None:
    """On PostgreSQL a transaction may commit after a refresh saw a later id: it is caught by
    the window between the last two watermarks. Simulated with an explicit lower id."""
    visits = traffic.generate_day(DAY, visitors=10)
    rows = traffic.rows_of(visits)
    held, rest = rows[0], rows[1:]
    _insert(state, [{**row, "id": 1000 + 2 * n} for n, row in enumerate(rest)])
    refresh_rollups(state.sessions, state.register, clock)
    clock.advance(dt.timedelta(minutes=1))
    refresh_rollups(state.sessions, state.register, clock)  # the window now holds those ids
    _insert(state, [{**held, "id": 1001}])  # an id inside the window, committed late
    clock.advance(dt.timedelta(minutes=1))
    assert refresh_rollups(state.sessions, state.register, clock).recomputed == [(1, DAY)]
    _assert_matches(_report(state), traffic.expected(visits))


def test_an_erasure_recomputes_the_days_of_the_erased_hits(
    state: State, clock: FrozenClock
) -> None:
    visits = traffic.generate_day(DAY)
    _insert(state, traffic.rows_of(visits))
    refresh_rollups(state.sessions, state.register, clock)
    gone = visits[0].visitor
    with state.sessions() as session, session.begin():
        outcome = AnalyticsProvider().erase(session, SubjectIdentity(visitor_id=gone))
    assert outcome.erased > 0
    with state.sessions() as session:
        marked = session.execute(select(AnalyticsDirtyDay.site_id, AnalyticsDirtyDay.day)).all()
    assert [tuple(row) for row in marked] == [(1, DAY)]

    clock.advance(dt.timedelta(minutes=1))
    assert refresh_rollups(state.sessions, state.register, clock).recomputed == [(1, DAY)]
    _assert_matches(_report(state), traffic.expected([v for v in visits if v.visitor != gone]))
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AnalyticsDirtyDay)) == 0


def test_retention_keeps_rollups_and_past_days_stay_frozen(
    state: State, clock: FrozenClock
) -> None:
    visits = traffic.generate_day(DAY)
    _insert(state, traffic.rows_of(visits))
    refresh_rollups(state.sessions, state.register, clock)
    before = _report(state)

    # Seven months on, retention deletes the raw hits (six months): rollups stay as they were.
    clock.advance(dt.timedelta(days=213))
    run_retention(state.sessions, state.register, state.stores, clock)
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AnalyticsHit)) == 0
    refresh = refresh_rollups(state.sessions, state.register, clock)
    assert refresh.recomputed == []
    assert _report(state).totals == before.totals

    # A day marked dirty once its raw data is past retention is not recomputed from nothing.
    with state.sessions() as session, session.begin():
        session.add(AnalyticsDirtyDay(site_id=1, day=DAY, marked_at=clock.now()))
    refresh = refresh_rollups(state.sessions, state.register, clock)
    assert refresh.frozen == [(1, DAY)] and refresh.recomputed == []
    assert _report(state).tables == before.tables


def test_an_erasure_on_a_day_past_retention_leaves_its_rollup(
    state: State, clock: FrozenClock
) -> None:
    """The day that straddles the retention cutoff still has some raw hits: an erasure there
    must not recompute it from the part retention left."""
    visits = traffic.generate_day(DAY)
    _insert(state, traffic.rows_of(visits))
    refresh_rollups(state.sessions, state.register, clock)
    before = _report(state)
    clock.moment = dt.datetime(2026, 7, 14, 5, 0, tzinfo=dt.UTC)  # cutoff: 14 Jan 05:00
    with state.sessions() as session, session.begin():
        AnalyticsProvider().erase(session, SubjectIdentity(visitor_id=visits[-1].visitor))
    refresh = refresh_rollups(state.sessions, state.register, clock)
    assert refresh.frozen == [(1, DAY)]
    assert _report(state).totals == before.totals


def test_two_refreshers_at_once_count_each_hit_once(state: State) -> None:
    visits = traffic.generate_day(DAY)
    _insert(state, traffic.rows_of(visits))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def refresher() -> None:
        barrier.wait()
        try:
            refresh_rollups(state.sessions, state.register, state.clock)
            outcomes.append("done")
        except LockBusy:
            outcomes.append("busy")

    threads = [threading.Thread(target=refresher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "done" in outcomes
    refresh_rollups(state.sessions, state.register, state.clock)
    _assert_matches(_report(state), traffic.expected(visits))
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AnalyticsDay)) == 1


def test_a_refresh_while_another_instance_holds_the_lease_changes_nothing(
    state: State, clock: FrozenClock
) -> None:
    _insert(state, traffic.rows_of(traffic.generate_day(DAY, visitors=5)))
    assert acquire(state.sessions, LEASE, "other-instance", dt.timedelta(minutes=10), clock)
    with pytest.raises(LockBusy):
        refresh_rollups(state.sessions, state.register, clock)
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AnalyticsDay)) == 0
        assert session.get(AnalyticsRollupState, "hits") is None
    clock.advance(dt.timedelta(minutes=11))  # the other instance died: its lease expires
    assert refresh_rollups(state.sessions, state.register, clock).recomputed == [(1, DAY)]


def test_a_busy_day_keeps_its_largest_labels_and_sums_the_rest(state: State) -> None:
    start = dt.datetime.combine(DAY, dt.time(8), dt.UTC)
    rows = [
        {
            "site_id": 1,
            "visitor_id": f"{n:016x}",
            "received_at": start + dt.timedelta(seconds=n),
            "action": "pageview",
            "url": f"http://localhost/page/{n}",
            "new_visit": 0,
            "consented": 0,
        }
        for n in range(ROWS_PER_DAY + 5)
    ]
    _insert(state, rows)
    refresh_rollups(state.sessions, state.register, state.clock)
    with state.sessions() as session:
        report = build_report(session, 1, DAY, DAY, limit=1000)
        stored, actions = session.execute(
            select(func.count(), func.sum(AnalyticsDayRow.actions)).where(
                AnalyticsDayRow.report == "pages"
            )
        ).one()
    assert (stored, actions) == (ROWS_PER_DAY + 1, ROWS_PER_DAY + 5)
    assert report.tables["pages"][0] == Row("Others", 5, 5)
    assert len(report.tables["pages"]) == 1000


@pytest.mark.parametrize(
    ("start", "end", "limit", "reason"),
    [
        (NEXT, DAY, 50, "The start date is after the end date."),
        (DAY, DAY + dt.timedelta(days=MAX_DAYS), 50, f"at most {MAX_DAYS} days"),
        (DAY, DAY, 0, "row limit"),
        (DAY, DAY, 100_000, "row limit"),
    ],
)
def test_bad_report_input_is_refused_with_a_reason(
    state: State, start: dt.date, end: dt.date, limit: int, reason: str
) -> None:
    with state.sessions() as session, pytest.raises(BadRequest) as refused:
        build_report(session, 1, start, end, limit=limit)
    assert reason in refused.value.message
    assert refused.value.status == 400


def test_json_and_csv_forms(state: State) -> None:
    visits = traffic.generate_day(DAY, visitors=10)
    rows = traffic.rows_of(visits)
    rows.append({**rows[0], "action": "search", "search_keyword": "=HYPERLINK(1)"})
    _insert(state, rows)
    refresh_rollups(state.sessions, state.register, state.clock)
    report = _report(state)
    data = report_as_dict(report)
    assert data["start"] == "2026-01-14" and data["end"] == "2026-01-15"
    assert set(data["tables"]) == set(TABLES)
    assert data["totals"]["visits"] == report.totals.visits
    assert [d["day"] for d in data["days"]] == ["2026-01-14", "2026-01-15"]

    lines = report_as_csv(report).splitlines()
    assert lines[0].startswith("table,label,visits,visitors,pageviews")
    assert lines[1].startswith(f"totals,2026-01-14/2026-01-15,{report.totals.visits},")
    sections = {line.split(",", 1)[0] for line in lines[1:]}
    assert {"totals", "days", "pages", "searches"} <= sections
    assert any(line.startswith("searches,'=hyperlink(1)") for line in lines)


def test_the_state_row_records_how_far_rollups_read(state: State, clock: FrozenClock) -> None:
    _insert(state, traffic.rows_of(traffic.generate_day(DAY, visitors=5)))
    refresh_rollups(state.sessions, state.register, clock)
    with state.sessions() as session:
        top = session.scalar(select(func.max(AnalyticsHit.id)))
        got = session.get(AnalyticsRollupState, "hits")
        assert got is not None and got.watermark == top and got.refreshed_at == clock.now()
        session.execute(update(AnalyticsRollupState).values(refreshed_at=None))
        session.commit()
    assert _report(state).rollups_as_of is None
