"""What a report is asked for: a site of the register and a range of whole days, checked the
same way by the API, the admin dashboard and the CLI, and the comparison of a period's totals
with the period of the same length just before it.

A range is inclusive of both ends and at most ``MAX_DAYS`` long (a leap year): reports read
daily rollups, so even the longest range is ``MAX_DAYS`` rows per table, never a scan of raw
hits; a longer range is refused with a reason rather than silently cut.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gardien.errors import N_, BadRequest
from gardien.register.schema import Register, Site

MAX_DAYS = 366
"""Longest range a report covers, both ends included."""
DEFAULT_DAYS = 30
"""The dashboard's range when none is asked for: the last 30 days, today included."""


@dataclass(frozen=True)
class ReportPeriod:
    site: Site
    start: dt.date
    end: dt.date
    """Last day, included."""

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> ReportPeriod:
        """The period of the same length that ends the day before this one starts."""
        end = self.start - dt.timedelta(days=1)
        return ReportPeriod(self.site, end - dt.timedelta(days=self.days - 1), end)


def parse_day(value: str | None, name: str) -> dt.date:
    if value is None or not value.strip():
        raise BadRequest(N_("%(name)s: a date is required (YYYY-MM-DD)"), name=name)
    text = value.strip()
    try:
        if len(text) != 10:
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise BadRequest(N_("%(name)s: expected a date as YYYY-MM-DD"), name=name) from None


def find_site(register: Register, site: str | int | None) -> Site:
    if site is None or (isinstance(site, str) and not site.strip()):
        raise BadRequest(N_("site: a site id of the register is required"))
    try:
        number = int(site)
    except ValueError:
        raise BadRequest(N_("site: expected a number")) from None
    for declared in register.sites:
        if declared.id == number:
            return declared
    raise BadRequest(N_("site: the register declares no site %(site)s"), site=number)


def check_period(
    register: Register, site: str | int | None, start: str | None, end: str | None
) -> ReportPeriod:
    """The asked-for site and range, or ``BadRequest`` naming the first problem."""
    found = find_site(register, site)
    first = parse_day(start, "from")
    last = parse_day(end, "to")
    if first > last:
        raise BadRequest(N_("from: the first day is after the last day (to)"))
    period = ReportPeriod(found, first, last)
    if period.days > MAX_DAYS:
        raise BadRequest(
            N_("the range covers %(days)s days; a report covers at most %(limit)s"),
            days=period.days,
            limit=MAX_DAYS,
        )
    return period


def last_days(site: Site, today: dt.date, days: int = DEFAULT_DAYS) -> ReportPeriod:
    return ReportPeriod(site, today - dt.timedelta(days=days - 1), today)


@dataclass(frozen=True)
class Change:
    """One figure of a period beside the same figure of the period before."""

    current: float
    previous: float

    @property
    def delta(self) -> float:
        return self.current - self.previous

    @property
    def percent(self) -> float | None:
        """The change relative to the previous period; ``None`` when that was zero."""
        if not self.previous:
            return None
        return (self.current - self.previous) / self.previous * 100
