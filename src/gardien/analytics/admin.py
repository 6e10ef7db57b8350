"""The audience dashboard of the admin: a site and a range of days (presets or dates, a plain
GET form), the totals beside the previous period of the same length, visits per day as an SVG
chart drawn on the server (with the same figures as a table), every report table, and the
CSV export (traced in the audit trail, as every admin export is).

Everything is read from the daily rollups, never from raw hits: a view costs two reports (the
period and the one before), whose cost grows with the days and labels, not with the traffic;
"current as of" says how far the rollups have got.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.datastructures import QueryParams

from gardien.analytics.api import report_response
from gardien.analytics.models import AnalyticsDay
from gardien.analytics.period import (
    DEFAULT_DAYS,
    MAX_DAYS,
    Change,
    ReportPeriod,
    check_period,
    find_site,
    last_days,
)
from gardien.analytics.reports import TABLES, Report, Totals, build_report, report_as_csv
from gardien.deps import AppState, DbSession, ReadSession, State
from gardien.errors import N_, BadRequest
from gardien.register.schema import Site
from gardien.security import audit
from gardien.security.admin import language, page
from gardien.security.auth import AdminContext, require
from gardien.security.permissions import Permission

router = APIRouter(prefix="/admin")
ReportReader = Annotated[AdminContext, Depends(require(Permission.view_reports))]

PRESETS = (
    (7, N_("Last 7 days")),
    (30, N_("Last 30 days")),
    (90, N_("Last 90 days")),
    (365, N_("Last 365 days")),
)
TABLE_TITLES = {
    "pages": (N_("Top pages"), N_("Page")),
    "entry_pages": (N_("Entry pages"), N_("Page")),
    "exit_pages": (N_("Exit pages"), N_("Page")),
    "referrers": (N_("Referrers"), N_("Referrer")),
    "referrer_types": (N_("Referrer types"), N_("Type")),
    "campaigns": (N_("Campaigns"), N_("Campaign")),
    "devices": (N_("Devices"), N_("Device")),
    "browsers": (N_("Browsers"), N_("Browser")),
    "operating_systems": (N_("Operating systems"), N_("Operating system")),
    "countries": (N_("Countries"), N_("Country")),
    "events": (N_("Events"), N_("Event")),
    "searches": (N_("Site searches"), N_("Keyword")),
    "outlinks": (N_("Outlinks"), N_("Link")),
    "downloads": (N_("Downloads"), N_("File")),
}
"""Each report table's heading and the heading of its label column, in TABLES order."""


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True)
class Chart:
    """Visits per day as bars, in SVG user units (the browser scales the viewBox)."""

    width: int
    height: int
    top: int
    bars: list[Bar]
    peak: int
    first_day: str
    last_day: str


CHART_WIDTH = 720
CHART_HEIGHT = 200
CHART_TOP = 16
"""Room above the tallest bar for the peak's label."""
CHART_BOTTOM = 20
"""Room under the bars for the first and last day's labels."""


def visits_chart(report: Report) -> Chart:
    """One bar per day; the bars share the width whatever the range (366 days fit)."""
    days = report.days
    peak = max((day.totals.visits for day in days), default=0)
    drawable = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM
    slot = CHART_WIDTH / max(1, len(days))
    gap = slot * 0.2 if slot >= 4 else 0.0
    bars: list[Bar] = []
    for index, day in enumerate(days):
        visits = day.totals.visits
        height = visits / peak * drawable if peak else 0.0
        bars.append(
            Bar(
                x=round(index * slot + gap / 2, 2),
                y=round(CHART_TOP + drawable - height, 2),
                width=round(slot - gap, 2),
                height=round(height, 2),
                label=f"{day.day.isoformat()}: {visits}",
            )
        )
    return Chart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        top=CHART_TOP,
        bars=bars,
        peak=peak,
        first_day=days[0].day.isoformat() if days else "",
        last_day=days[-1].day.isoformat() if days else "",
    )


@dataclass(frozen=True)
class Figure:
    """A total on the dashboard: its name, how it reads now and before, and the change."""

    name: str
    current: str
    previous: str
    change: Change
    unit: str
    """``""`` for counts, ``"pt"`` for a rate (its delta is in percentage points), ``"s"``
    for a duration."""

    @property
    def delta(self) -> str:
        value = self.change.delta
        if not round(value, 1):
            return "0"
        text = f"{value:+.1f}" if self.unit == "pt" else f"{round(value):+d}"
        return f"{text} {self.unit}" if self.unit else text

    @property
    def percent(self) -> str:
        """``"+8.3 %"``, or ``""`` when the previous period had none (no ratio to show)."""
        percent = self.change.percent
        return "" if percent is None else f"{percent:+.1f} %"


def figures(current: Totals, previous: Totals) -> list[Figure]:
    def count(name: str, now: int, before: int) -> Figure:
        return Figure(name, str(now), str(before), Change(now, before), "")

    def rate(now: float, before: float) -> Figure:
        return Figure(
            N_("Bounce rate"),
            f"{now * 100:.1f} %",
            f"{before * 100:.1f} %",
            Change(now * 100, before * 100),
            "pt",
        )

    def duration(now: float, before: float) -> Figure:
        return Figure(
            N_("Average time on site"),
            clock_time(now),
            clock_time(before),
            Change(round(now), round(before)),
            "s",
        )

    return [
        count(N_("Visits"), current.visits, previous.visits),
        count(N_("Unique visitors"), current.visitors, previous.visitors),
        count(N_("Page views"), current.pageviews, previous.pageviews),
        rate(current.bounce_rate, previous.bounce_rate),
        duration(current.average_time_on_site, previous.average_time_on_site),
    ]


def period_totals(session: Session, site_id: int, start: dt.date, end: dt.date) -> Totals:
    """The totals alone, for the period the dashboard compares with: one sum over its day
    rows, where a whole report would also rank every table's labels (half a year-long view's
    time on SQLite, measured)."""
    names = [field.name for field in fields(Totals)]
    sums = session.execute(
        select(*(func.coalesce(func.sum(getattr(AnalyticsDay, name)), 0) for name in names))
        .where(AnalyticsDay.site_id == site_id)
        .where(AnalyticsDay.day >= start, AnalyticsDay.day <= end)
    ).one()
    return Totals(*(int(value) for value in sums))


def clock_time(seconds: float) -> str:
    """A duration as ``m:ss`` (or ``h:mm:ss``), which reads the same in every language."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _query(period: ReportPeriod) -> str:
    return urlencode(
        {"site": period.site.id, "from": period.start.isoformat(), "to": period.end.isoformat()}
    )


def _site_choices(sites: list[Site]) -> list[tuple[int, str]]:
    return [(site.id, f"{site.name} ({site.id})") for site in sites]


def asked_period(state: State, query: QueryParams) -> ReportPeriod:
    """The site and range in the query. Without a site, the register's first; without dates,
    the last 30 days (what the dashboard opens on)."""
    sites = state.register.sites
    if not sites:
        raise BadRequest(N_("the register declares no site to report on"))
    site, start, end = (query.get(name) or "" for name in ("site", "from", "to"))
    if not (start or end):
        found = find_site(state.register, site) if site else sites[0]
        return last_days(found, state.clock.now().date(), DEFAULT_DAYS)
    return check_period(state.register, site or sites[0].id, start or None, end or None)


@router.get("/analytics", response_class=HTMLResponse, summary="Audience dashboard")
def dashboard(
    state: AppState, db: ReadSession, request: Request, context: ReportReader
) -> HTMLResponse:
    sites = state.register.sites
    today = state.clock.now().date()
    query = request.query_params
    chosen = {
        "site": query.get("site") or "",
        "from": query.get("from") or "",
        "to": query.get("to") or "",
    }
    common: dict[str, Any] = {
        "sites": _site_choices(sites),
        "chosen": chosen,
        "max_days": MAX_DAYS,
        "today": today.isoformat(),
    }
    if not sites:
        return page(state, request, "analytics.html", context, error=None, report=None, **common)
    try:
        period = asked_period(state, query)
    except BadRequest as exc:
        return page(
            state,
            request,
            "analytics.html",
            context,
            error=exc.text(language(state, request)),
            report=None,
            status=400,
            **common,
        )
    chosen = {"site": str(period.site.id), "from": str(period.start), "to": str(period.end)}
    report = build_report(db, period.site.id, period.start, period.end)
    before = period.previous()
    earlier = period_totals(db, before.site.id, before.start, before.end)
    presets = [
        (label, "?" + _query(last_days(period.site, today, days)), days) for days, label in PRESETS
    ]
    tables = [(name, *TABLE_TITLES[name], report.tables.get(name, [])) for name in TABLES]
    return page(
        state,
        request,
        "analytics.html",
        context,
        error=None,
        report=report,
        period=period,
        previous=before,
        figures=figures(report.totals, earlier),
        chart=visits_chart(report),
        presets=presets,
        tables=tables,
        export_query=_query(period),
        **(common | {"chosen": chosen}),
    )


@router.get(
    "/analytics/export",
    summary="The audience report as CSV (traced)",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def export(state: AppState, db: DbSession, request: Request, context: ReportReader) -> Response:
    period = asked_period(state, request.query_params)
    report = build_report(db, period.site.id, period.start, period.end)
    content = report_as_csv(report)
    audit.record(
        db,
        context.actor,
        "analytics.exported",
        state.clock.now(),
        target_type="analytics_report",
        target_id=str(period.site.id),
        reason=f"{period.start}..{period.end}, csv",
    )
    return report_response(period, "csv", content, attachment=True)
