"""Audience reports for a site and a date range, read from the daily rollups only.

``build_report`` never reads ``analytics_hit``: its cost grows with the number of days and
distinct labels, not with the traffic (a 31-day report reads at most 31 day rows and the
rollup rows of those days). The API, the CLI and the admin dashboard all go through here.

Days are UTC days. A range's ``visitors`` is the sum of each day's unique visitors: without
consent a visitor id lasts one day (the daily salt is deleted after it), so nobody — Gardien
included — can tell that two days' visitors are the same person; with consent the tracker's
own id would allow it, but the rollups keep no ids, so the sum is used for every range. It
over-counts a person who came back on several days, as Matomo's range periods do.

``refresh_rollups`` (``rollups.refresh_rollups``) brings the rollups up to date; call it before
a report when the report must include the last minute's hits (the CLI does).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gardien.analytics.models import AnalyticsDay, AnalyticsDayRow
from gardien.analytics.rollups import TABLES, RefreshReport, refresh_rollups, rollups_as_of
from gardien.errors import N_, BadRequest

__all__ = [
    "MAX_DAYS",
    "MAX_LIMIT",
    "TABLES",
    "DayTotals",
    "RefreshReport",
    "Report",
    "Row",
    "Totals",
    "build_report",
    "refresh_rollups",
    "report_as_csv",
    "report_as_dict",
]

MAX_DAYS = 731
"""Longest range a report covers (two years, a leap day included)."""
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Totals:
    visits: int
    visitors: int
    pageviews: int
    bounces: int
    time_on_site: int
    """Seconds, summed over the visits."""
    events: int
    searches: int
    outlinks: int
    downloads: int

    @property
    def bounce_rate(self) -> float:
        """Share of visits with a single action, 0..1 (0 when there was no visit)."""
        return self.bounces / self.visits if self.visits else 0.0

    @property
    def average_time_on_site(self) -> float:
        """Seconds per visit (0 when there was no visit)."""
        return self.time_on_site / self.visits if self.visits else 0.0

    @classmethod
    def zero(cls) -> Totals:
        return cls(0, 0, 0, 0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class DayTotals:
    day: dt.date
    totals: Totals


@dataclass(frozen=True)
class Row:
    label: str
    visits: int
    actions: int
    """Page views for the page tables (entry and exit: the page views of the visits that
    entered or left there), events for ``events``, searches for ``searches``, clicks for
    ``outlinks`` and ``downloads``, visits for referrers, campaigns, devices, browsers, OSs
    and countries."""


@dataclass(frozen=True)
class Report:
    site_id: int
    start: dt.date
    end: dt.date
    totals: Totals
    days: list[DayTotals]
    """One per day of the range, days without traffic included (zeros)."""
    tables: dict[str, list[Row]]
    """Every name of ``TABLES``; largest first (actions, then visits), at most ``limit`` rows."""
    rollups_as_of: dt.datetime | None
    """Hits committed before this instant are counted; ``None`` if never refreshed."""


_TOTAL_FIELDS = (
    "visits",
    "visitors",
    "pageviews",
    "bounces",
    "time_on_site",
    "events",
    "searches",
    "outlinks",
    "downloads",
)


def _check(site_id: int, start: dt.date, end: dt.date, limit: int) -> None:
    if start > end:
        raise BadRequest(N_("The start date is after the end date."))
    days = (end - start).days + 1
    if days > MAX_DAYS:
        raise BadRequest(
            N_("A report covers at most %(max)s days; this range has %(days)s."),
            max=MAX_DAYS,
            days=days,
        )
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(N_("The row limit must be between 1 and %(max)s."), max=MAX_LIMIT)
    if site_id < 1:
        raise BadRequest(N_("The site id must be a positive number."))


def build_report(
    session: Session, site_id: int, start: dt.date, end: dt.date, *, limit: int = 50
) -> Report:
    """The report of ``site_id`` from ``start`` to ``end`` (both included), from rollups only.

    Raises ``BadRequest`` for a start after the end, a range over ``MAX_DAYS`` days or a
    limit outside 1..``MAX_LIMIT``."""
    _check(site_id, start, end, limit)
    stored = {
        row.day: Totals(*(int(getattr(row, name)) for name in _TOTAL_FIELDS))
        for row in session.scalars(
            select(AnalyticsDay).where(
                AnalyticsDay.site_id == site_id, AnalyticsDay.day >= start, AnalyticsDay.day <= end
            )
        )
    }
    days = [
        DayTotals(
            start + dt.timedelta(days=n), stored.get(start + dt.timedelta(days=n), Totals.zero())
        )
        for n in range((end - start).days + 1)
    ]
    totals = Totals(*(sum(getattr(d.totals, name) for d in days) for name in _TOTAL_FIELDS))
    visits = func.sum(AnalyticsDayRow.visits)
    actions = func.sum(AnalyticsDayRow.actions)
    summed = (
        select(
            AnalyticsDayRow.report.label("report"),
            AnalyticsDayRow.label.label("label"),
            visits.label("visits"),
            actions.label("actions"),
            func.row_number()
            .over(
                partition_by=AnalyticsDayRow.report,
                order_by=(actions.desc(), visits.desc(), AnalyticsDayRow.label),
            )
            .label("rank"),
        )
        .where(
            AnalyticsDayRow.site_id == site_id,
            AnalyticsDayRow.day >= start,
            AnalyticsDayRow.day <= end,
        )
        .group_by(AnalyticsDayRow.report, AnalyticsDayRow.label)
        .subquery()
    )
    tables: dict[str, list[Row]] = {name: [] for name in TABLES}
    for report_name, label, row_visits, row_actions in session.execute(
        select(summed.c.report, summed.c.label, summed.c.visits, summed.c.actions)
        .where(summed.c.rank <= limit)
        .order_by(summed.c.report, summed.c.rank)
    ):
        if report_name in tables:
            tables[report_name].append(Row(label, int(row_visits), int(row_actions)))
    return Report(
        site_id=site_id,
        start=start,
        end=end,
        totals=totals,
        days=days,
        tables=tables,
        rollups_as_of=rollups_as_of(session),
    )


def _totals_dict(totals: Totals) -> dict[str, Any]:
    data: dict[str, Any] = {name: getattr(totals, name) for name in _TOTAL_FIELDS}
    data["bounce_rate"] = round(totals.bounce_rate, 4)
    data["average_time_on_site"] = round(totals.average_time_on_site, 1)
    return data


def report_as_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (dates and times in ISO 8601)."""
    return {
        "site_id": report.site_id,
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "rollups_as_of": report.rollups_as_of.isoformat() if report.rollups_as_of else None,
        "totals": _totals_dict(report.totals),
        "days": [{"day": d.day.isoformat(), **_totals_dict(d.totals)} for d in report.days],
        "tables": {
            name: [
                {"label": row.label, "visits": row.visits, "actions": row.actions} for row in rows
            ]
            for name, rows in report.tables.items()
        },
    }


def report_as_csv(report: Report) -> str:
    """One CSV of every section, told apart by the ``table`` column: ``totals`` (one row),
    ``days`` (one row per day) and each of ``TABLES`` (label, visits, actions)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    metrics = [*_TOTAL_FIELDS, "bounce_rate", "average_time_on_site"]
    writer.writerow(["table", "label", *metrics, "actions"])
    totals = _totals_dict(report.totals)
    writer.writerow(
        [
            "totals",
            f"{report.start.isoformat()}/{report.end.isoformat()}",
            *(totals[m] for m in metrics),
            "",
        ]
    )
    for day in report.days:
        values = _totals_dict(day.totals)
        writer.writerow(["days", day.day.isoformat(), *(values[m] for m in metrics), ""])
    blank = [""] * (len(metrics) - 1)
    for name in TABLES:
        for row in report.tables.get(name, []):
            writer.writerow([name, _csv_safe(row.label), row.visits, *blank, row.actions])
    return out.getvalue()


def _csv_safe(label: str) -> str:
    """A label a spreadsheet will not run as a formula (a visitor chose some of them)."""
    return f"'{label}" if label[:1] in ("=", "+", "-", "@", "\t", "\r") else label
