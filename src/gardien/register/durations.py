"""ISO 8601 durations as the register writes them (``P90D``, ``P6M``), with calendar arithmetic.

Months and years are calendar units: six months before 31 August is 28 or 29 February, which is
what a DPO means by "6 months" and what the purge must honour.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import isodate
from dateutil.relativedelta import relativedelta

_LONGEST = relativedelta(years=100)
_REFERENCE = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)
# Month lengths vary, so "at most 13 months" is checked from every month of a common and a
# leap year: P396D is not "at most P13M" because 13 months from 1 February are 393 days.
_MONTH_STARTS = [
    dt.datetime(year, month, 1, tzinfo=dt.UTC) for year in (2023, 2024) for month in range(1, 13)
]


class DurationError(ValueError):
    """The text is not a usable ISO 8601 duration; the message says why."""


@dataclass(frozen=True, slots=True)
class Period:
    """A positive calendar duration parsed from ISO 8601."""

    text: str
    delta: relativedelta

    def before(self, moment: dt.datetime) -> dt.datetime:
        return moment - self.delta

    def after(self, moment: dt.datetime) -> dt.datetime:
        return moment + self.delta

    def at_most(self, other: Period) -> bool:
        """Whether this period never exceeds ``other``, whatever month it starts in."""
        return all(self.after(start) <= other.after(start) for start in _MONTH_STARTS)

    @property
    def approx_days(self) -> float:
        return (self.after(_REFERENCE) - _REFERENCE).total_seconds() / 86400


def parse_period(text: str) -> Period:
    """Parse ``P90D``, ``P6M``, ``PT30M``...; refuse zero, negative and absurdly long periods."""
    if not isinstance(text, str) or not text.startswith("P"):
        raise DurationError(f"{text!r} is not an ISO 8601 duration (expected e.g. P90D or P6M)")
    try:
        parsed = isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError, OverflowError) as exc:
        raise DurationError(
            f"{text!r} is not an ISO 8601 duration (expected e.g. P90D or P6M)"
        ) from exc
    if isinstance(parsed, isodate.Duration):
        years, months = int(parsed.years), int(parsed.months)
        if years != parsed.years or months != parsed.months:
            raise DurationError(f"{text!r}: fractional years or months are ambiguous")
        rest: dt.timedelta = parsed.tdelta
    else:
        years, months, rest = 0, 0, parsed
    delta = relativedelta(years=years, months=months, seconds=int(rest.total_seconds()))
    try:
        end = _REFERENCE + delta
    except (OverflowError, ValueError) as exc:
        raise DurationError(f"{text!r} is too long to be a retention period") from exc
    if end <= _REFERENCE:
        raise DurationError(f"{text!r} must be longer than zero")
    if end > _REFERENCE + _LONGEST:
        raise DurationError(f"{text!r} is longer than 100 years")
    return Period(text=text, delta=delta)
