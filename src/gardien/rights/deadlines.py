"""The legal deadline of a data-subject request, counted as the law counts it.

Pure functions, no I/O: the case workflow stores what they return.

GDPR Art. 12(3) gives the controller "one month of receipt of the request", extensible "by two
further months where necessary, taking into account the complexity and number of the requests",
provided the person is told of the extension, with the reasons, "within one month of receipt".
The GDPR does not say how a month is counted; EU law counts it with Regulation (EEC, Euratom)
No 1182/71 determining the rules applicable to periods, dates and time limits:

- Art. 3(1): the day of the event from which the period runs (the day of receipt) does not
  count; the CJEU (C-171/03 *Maatschappij Drijvende Bokken*) calls it the day "from which the
  period runs".
- Art. 3(2)(c): a period in months ends at the end of the day of the last month that "falls
  on the same date" as the day of receipt; if that date does not occur in the last month
  (31 January plus one month), the period ends on the last day of that month.
- Art. 3(4): when the last day is a public holiday, a Saturday or a Sunday, the period ends at
  the end of the following working day.
- Art. 2(1)-(2): public holidays are those of the Member State where the act is to be done (the
  controller's, Romania for the seed operator); working days are all days other than public
  holidays, Sundays and Saturdays.

Public holidays come from the ``holidays`` library (its ``country_holidays``), not from a list
kept by hand: Romania's includes the Orthodox Easter and Pentecost (Rusalii) Mondays, whose
dates move every year (Labour Code, Law 53/2003 Art. 139). Saturday and Sunday are never
working days, whatever the country, because 1182/71 names them.

See ``docs/rights.md`` ("Deadlines") and ``legal-requirements`` §1.3.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

DEFAULT_COUNTRY = "RO"
"""The seed operator's Member State; a register chooses another (``rights.holidays_country``)."""

ONE_MONTH = 1
"""GDPR Art. 12(3): "within one month of receipt of the request"."""

EXTENDED_MONTHS = 3
"""GDPR Art. 12(3): extended "by two further months", counted from receipt (one + two)."""

_WEEKEND = {5: "Saturday", 6: "Sunday"}
_HOLIDAY_NAMES_LANGUAGE = "en_US"  # the library falls back to the country's own language


class UnknownCountry(ValueError):
    """The holidays library has no public-holiday calendar for this country code."""


@dataclass(frozen=True, slots=True)
class NonWorkingDay:
    """A day the deadline rolled over, and why it is not a working day."""

    day: dt.date
    reason: str
    """``Saturday``, ``Sunday`` or the public holiday's name (names joined by ``; ``)."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """A computed deadline with its reasoning, for the case file and for people to check."""

    received: dt.date
    country: str
    months: int
    paused_days: int
    nominal: dt.date
    """The last day of the period before the working-day roll-forward (Art. 3(2)(c)), moved
    later by ``paused_days``."""
    due: dt.date
    """The legal due date: ``nominal``, or the next working day when it is not one."""
    skipped: tuple[NonWorkingDay, ...]
    """The non-working days rolled over, from ``nominal`` up to the day before ``due``."""


DEFAULT_TIME_ZONE = "Europe/Bucharest"
"""The seed operator's office clock; a register chooses another (``rights.time_zone``)."""


def local_day(moment: dt.datetime, time_zone: str = DEFAULT_TIME_ZONE) -> dt.date:
    """The date of ``moment`` on the controller's clock: a request received at 23:30 in
    Bucharest (21:30 UTC in winter) is received that day, and one received at 00:30 there
    (22:30 UTC the day before) the next day. The period runs from the day of receipt (Reg.
    1182/71 Art. 3(1)), as the controller lives it, not from a UTC date. A naive ``moment``
    is read as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(ZoneInfo(time_zone)).date()


def day_start(day: dt.date, time_zone: str = DEFAULT_TIME_ZONE) -> dt.datetime:
    """The moment (UTC) ``day`` begins on the controller's clock, the inverse of
    ``local_day``: the moments of a local day are ``day_start(d) <= m < day_start(d + 1)``
    (a day of 23 or 25 hours when the clocks change)."""
    return dt.datetime.combine(day, dt.time(), ZoneInfo(time_zone)).astimezone(dt.UTC)


def add_months(start: dt.date, months: int) -> dt.date:
    """The same date ``months`` later, or the last day of that month when the date does not
    occur in it (Reg. 1182/71 Art. 3(2)(c)): 31 January + 1 month is 28 February, or 29
    February in a leap year; 30 November + 3 months is 28 or 29 February.

    Raises ``ValueError`` when ``months`` is negative or the result is past year 9999."""
    if months < 0:
        raise ValueError("months must not be negative")
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    if year > dt.MAXYEAR:
        unit = "month" if months == 1 else "months"
        raise ValueError(f"{months} {unit} after {start.isoformat()} is past year {dt.MAXYEAR}")
    return dt.date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


@lru_cache(maxsize=512)
def _public_holidays(country: str, year: int) -> Mapping[dt.date, str]:
    try:
        calendar_ = holidays.country_holidays(country, years=year, language=_HOLIDAY_NAMES_LANGUAGE)
    except NotImplementedError:
        raise UnknownCountry(
            f"no public-holiday calendar for country {country!r} (an ISO 3166-1 alpha-2 code "
            "the holidays library supports, e.g. RO, FR)"
        ) from None
    return dict(calendar_.items())


def non_working_reason(day: dt.date, country: str = DEFAULT_COUNTRY) -> str | None:
    """Why ``day`` is not a working day in ``country`` (Reg. 1182/71 Art. 2(2)): ``Saturday``,
    ``Sunday`` or the public holiday's name; ``None`` for a working day.

    A public holiday on a weekend is reported by its name. Raises ``UnknownCountry``."""
    holiday = _public_holidays(country.upper(), day.year).get(day)
    if holiday is not None:
        return holiday
    return _WEEKEND.get(day.weekday())


def is_working_day(day: dt.date, country: str = DEFAULT_COUNTRY) -> bool:
    """Not a Saturday, a Sunday or a public holiday of ``country`` (Reg. 1182/71 Art. 2(2))."""
    return non_working_reason(day, country) is None


def next_working_day(
    day: dt.date, country: str = DEFAULT_COUNTRY
) -> tuple[dt.date, tuple[NonWorkingDay, ...]]:
    """``day`` itself when it is a working day, else the following working day (Reg. 1182/71
    Art. 3(4)), with the non-working days passed over."""
    skipped: list[NonWorkingDay] = []
    while (reason := non_working_reason(day, country)) is not None:
        skipped.append(NonWorkingDay(day, reason))
        day += dt.timedelta(days=1)
    return day, tuple(skipped)


def deadline(
    received: dt.date,
    country: str = DEFAULT_COUNTRY,
    months: int = ONE_MONTH,
    paused_days: int = 0,
) -> Deadline:
    """The deadline of a request received on ``received``, with its reasoning.

    - ``months``: 1 for the ordinary deadline; 3 (``EXTENDED_MONTHS``) for the extended one.
      GDPR Art. 12(3) allows "two further months", and the extended deadline is counted from
      the same day of receipt with the same rule, receipt + 3 months (legal-requirements
      §1.3.2: ``legal_due_ext``), not from the rolled-forward one-month date: 31 January gives
      30 April (then the next working day), not 28 February + 2 months.
    - ``paused_days``: days the clock stood still while the controller awaited the identity
      information it asked for under GDPR Art. 12(6) (EDPB Guidelines 01/2022 on the right of
      access describe that request). French law suspends the deadline meanwhile; the GDPR and
      Romanian law say nothing (legal-requirements §1.3.4), hence a register setting, off by
      default. A suspension moves the end of the period by its length: the paused days are
      added to the end of the month(s), and the working-day roll-forward applies to the
      result. Pass 0 unless the register sets ``rights.pause_while_verifying``
      (``counted_pause`` does that).
    - The period ends on the same date ``months`` later, or the last day of a shorter month
      (Reg. 1182/71 Art. 3(1), 3(2)(c)); when that day is a Saturday, a Sunday or a public
      holiday of ``country``, on the next working day (Art. 3(4)).

    Raises ``ValueError`` for ``months`` < 1, negative ``paused_days`` or a date past year
    9999, and ``UnknownCountry`` for a country without a holiday calendar.
    """
    if months < 1:
        raise ValueError("a deadline is at least one month")
    if paused_days < 0:
        raise ValueError("paused_days must not be negative")
    code = country.upper()
    try:
        nominal = add_months(received, months) + dt.timedelta(days=paused_days)
        due, skipped = next_working_day(nominal, code)
    except OverflowError:
        raise ValueError(f"the deadline of {received.isoformat()} is past year 9999") from None
    return Deadline(received, code, months, paused_days, nominal, due, skipped)


def due_date(
    received: dt.date,
    country: str = DEFAULT_COUNTRY,
    months: int = ONE_MONTH,
    paused_days: int = 0,
) -> dt.date:
    """The legal due date of a request received on ``received`` (see ``deadline`` for the
    rules: GDPR Art. 12(3) counted per Reg. 1182/71 Art. 3).

    ``due_date(date(2026, 1, 31))`` is 2026-03-02: 28 February 2026 is a Saturday.
    ``due_date(received, months=EXTENDED_MONTHS)`` is the extended deadline."""
    return deadline(received, country, months, paused_days).due


def can_extend(
    received: dt.date,
    extension_notified_on: dt.date,
    country: str = DEFAULT_COUNTRY,
    paused_days: int = 0,
) -> bool:
    """Whether an extension notified to the person on ``extension_notified_on`` is allowed.

    GDPR Art. 12(3): the controller "shall inform the data subject of any such extension within
    one month of receipt of the request, together with the reasons for the delay". The first
    month is the one-month period itself, Reg. 1182/71 roll-forward included: a notice sent on
    or before the one-month due date is in time, one sent after it is refused (legal-requirements
    §1.3.2: "the extend action is refused after legal_due"), and so is one dated before the
    request was received. ``paused_days`` as in ``deadline``. Whether the extension is
    *necessary* (complexity, number of requests) and its reasons are the case's to record."""
    if extension_notified_on < received:
        return False
    return extension_notified_on <= due_date(received, country, ONE_MONTH, paused_days)


def counted_pause(days_awaiting_identity: int, *, pause_while_verifying: bool) -> int:
    """The days of ``days_awaiting_identity`` that stop the clock: all of them when the register
    sets ``rights.pause_while_verifying``, none otherwise (the default: legal-requirements
    §1.3.4 keeps the deadline running and shows the time spent awaiting the requester apart)."""
    if days_awaiting_identity < 0:
        raise ValueError("days awaiting identity must not be negative")
    return days_awaiting_identity if pause_while_verifying else 0
