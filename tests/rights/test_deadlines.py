"""The legal deadline of a request (GDPR Art. 12(3) counted per Reg. 1182/71 Art. 3).

Every expected date below was checked against a calendar: the weekday of the nominal date and
the Romanian public holidays (Labour Code Art. 139), Orthodox Easter being 20 April 2025,
12 April 2026 and 2 May 2027, Pentecost (Rusalii) seven weeks later.
"""

from __future__ import annotations

import calendar
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gardien.rights.deadlines import (
    EXTENDED_MONTHS,
    NonWorkingDay,
    UnknownCountry,
    add_months,
    can_extend,
    counted_pause,
    deadline,
    due_date,
    is_working_day,
    non_working_reason,
)

D = dt.date


@pytest.mark.parametrize(
    ("received", "due"),
    [
        # legal-requirements §1.3.1 table: same date next month.
        (D(2026, 1, 10), D(2026, 2, 10)),  # Tuesday
        # 31 January: no 31 February, so the last day of February.
        (D(2027, 1, 31), D(2027, 3, 1)),  # 28 Feb 2027 is a Sunday -> Monday 1 March
        (D(2024, 1, 31), D(2024, 2, 29)),  # leap year, Thursday
        (D(2028, 1, 31), D(2028, 2, 29)),  # leap year, Tuesday
        (D(2026, 1, 29), D(2026, 3, 2)),  # 29 Feb 2026 does not exist: 28 Feb, a Saturday
        (D(2028, 2, 29), D(2028, 3, 29)),  # received on a leap day, Wednesday
        (D(2026, 3, 31), D(2026, 4, 30)),  # 31 April does not exist, Thursday
        (D(2026, 5, 31), D(2026, 6, 30)),  # Tuesday
        (D(2099, 12, 31), D(2100, 2, 1)),  # 31 Jan 2100, a Sunday -> Monday 1 February
    ],
)
def test_one_month_is_the_same_date_or_the_last_day_of_a_shorter_month(
    received: dt.date, due: dt.date
) -> None:
    assert due_date(received) == due
    assert is_working_day(due, "RO")


def test_31_january_in_a_common_year_ends_on_28_february_then_rolls_over_the_weekend() -> None:
    result = deadline(D(2026, 1, 31))
    assert result.nominal == D(2026, 2, 28)  # a Saturday
    assert result.due == D(2026, 3, 2)
    assert result.skipped == (
        NonWorkingDay(D(2026, 2, 28), "Saturday"),
        NonWorkingDay(D(2026, 3, 1), "Sunday"),
    )


def test_2100_is_not_a_leap_year() -> None:
    assert add_months(D(2100, 1, 31), 1) == D(2100, 2, 28)
    assert add_months(D(2000, 1, 31), 1) == D(2000, 2, 29)


def test_weekend_rolls_to_monday() -> None:
    # legal-requirements §1.3.1: 15 Feb 2025 is a Saturday.
    assert due_date(D(2025, 1, 15)) == D(2025, 2, 17)
    # 16 August 2026 is a Sunday (15 August, the Dormition, a Saturday).
    assert due_date(D(2026, 7, 16)) == D(2026, 8, 17)


@pytest.mark.parametrize(
    ("received", "holiday", "due"),
    [
        # Orthodox Easter Monday (Western Easter Monday 2026 is 6 April).
        (D(2026, 3, 13), "Easter", D(2026, 4, 14)),
        (D(2025, 3, 21), "Easter", D(2025, 4, 22)),
        # Pentecost (Rusalii) Monday: 21 June 2027 and 9 June 2025.
        (D(2027, 5, 21), "Pentecost", D(2027, 6, 22)),
        (D(2025, 5, 9), "Pentecost", D(2025, 6, 10)),
        # National Day, 1 December 2026 (a Tuesday).
        (D(2026, 11, 1), "National Day", D(2026, 12, 2)),
        # Epiphany and Saint John the Baptist, 6-7 January 2027 (Wednesday, Thursday).
        (D(2026, 12, 6), "Epiphany", D(2027, 1, 8)),
        # Saint Andrew's Day 2026 (Monday 30 November), then National Day (Tuesday).
        (D(2026, 10, 30), "Saint Andrew's Day", D(2026, 12, 2)),
    ],
)
def test_romanian_public_holidays_move_the_deadline(
    received: dt.date, holiday: str, due: dt.date
) -> None:
    result = deadline(received, "RO")
    assert result.skipped[0].reason == holiday
    assert result.due == due


def test_orthodox_easter_monday_is_a_holiday_in_romania_and_western_easter_monday_is_not() -> None:
    assert non_working_reason(D(2026, 4, 13), "RO") == "Easter"
    assert D(2026, 4, 13).weekday() == calendar.MONDAY
    assert non_working_reason(D(2026, 4, 6), "RO") is None
    assert non_working_reason(D(2026, 4, 6), "FR") == "Easter Monday"


def test_pentecost_monday_2026_coincides_with_childrens_day() -> None:
    # 30 May 2026 Saturday, 31 May Pentecost Sunday, 1 June Rusalii Monday + Children's Day.
    result = deadline(D(2026, 4, 30))
    assert [s.day for s in result.skipped] == [D(2026, 5, 30), D(2026, 5, 31), D(2026, 6, 1)]
    assert "Pentecost" in result.skipped[2].reason
    assert "Children's Day" in result.skipped[2].reason
    assert result.due == D(2026, 6, 2)


def test_christmas_and_new_year_chains() -> None:
    # 25 Dec 2026 Friday, 26 Saturday (second day of Christmas), 27 Sunday.
    assert due_date(D(2026, 11, 25)) == D(2026, 12, 28)
    # 1 and 2 January 2027 (Friday, Saturday), 3 January a Sunday: across the year.
    result = deadline(D(2026, 12, 1))
    assert result.nominal == D(2027, 1, 1)
    assert [s.reason for s in result.skipped] == ["New Year's Day", "New Year's Day", "Sunday"]
    assert result.due == D(2027, 1, 4)


def test_another_country() -> None:
    # 14 May 2026 is Ascension Day in France, a working day in Romania.
    assert due_date(D(2026, 4, 14), "FR") == D(2026, 5, 15)
    assert due_date(D(2026, 4, 14), "RO") == D(2026, 5, 14)
    # Western Easter Monday: France rolls, Romania does not.
    assert due_date(D(2026, 3, 6), "FR") == D(2026, 4, 7)
    assert due_date(D(2026, 3, 6), "RO") == D(2026, 4, 6)
    assert due_date(D(2026, 3, 6), "fr") == D(2026, 4, 7)  # case does not matter


def test_unknown_country_is_a_clear_error() -> None:
    with pytest.raises(UnknownCountry, match="no public-holiday calendar for country 'XX'"):
        due_date(D(2026, 1, 10), "XX")
    assert issubclass(UnknownCountry, ValueError)


def test_extended_deadline_counts_three_months_from_receipt() -> None:
    # Art. 12(3) "two further months", legal-requirements §1.3.2: receipt + 3 months, not the
    # rolled-forward one-month date (2 March 2026) + 2 months.
    assert due_date(D(2026, 1, 31)) == D(2026, 3, 2)
    assert due_date(D(2026, 1, 31), months=EXTENDED_MONTHS) == D(2026, 4, 30)
    # 30 November + 3 months: 28 February 2026 (Saturday) -> Monday 2 March.
    assert deadline(D(2025, 11, 30), months=EXTENDED_MONTHS).nominal == D(2026, 2, 28)
    assert due_date(D(2025, 11, 30), months=EXTENDED_MONTHS) == D(2026, 3, 2)
    # In a leap year, 30 November 2027 + 3 months is 29 February 2028 (a Tuesday).
    assert due_date(D(2027, 11, 30), months=EXTENDED_MONTHS) == D(2028, 2, 29)


def test_extension_notice_within_the_first_month_only() -> None:
    received = D(2026, 1, 31)  # first month ends 28 Feb (Saturday), rolled to Monday 2 March
    assert can_extend(received, D(2026, 1, 31), "RO")
    assert can_extend(received, D(2026, 2, 28), "RO")
    assert can_extend(received, D(2026, 3, 2), "RO")  # the roll-forward applies to it too
    assert not can_extend(received, D(2026, 3, 3), "RO")
    assert not can_extend(received, D(2026, 4, 1), "RO")
    assert not can_extend(received, D(2026, 1, 30), "RO")  # before the request arrived


def test_extension_notice_deadline_follows_the_holidays() -> None:
    received = D(2026, 3, 13)  # one month: Orthodox Easter Monday 13 April -> 14 April
    assert can_extend(received, D(2026, 4, 14), "RO")
    assert not can_extend(received, D(2026, 4, 14), "FR")  # 13 April is a working day there


def test_pause_is_off_unless_the_register_enables_it() -> None:
    assert counted_pause(10, pause_while_verifying=False) == 0
    assert counted_pause(10, pause_while_verifying=True) == 10
    assert due_date(D(2026, 1, 15), paused_days=counted_pause(10, pause_while_verifying=False)) == (
        D(2026, 2, 16)  # 15 Feb 2026 is a Sunday
    )


def test_paused_days_move_the_end_then_the_roll_forward_applies() -> None:
    # 15 Feb 2026 + 10 days = Wednesday 25 February.
    result = deadline(D(2026, 1, 15), paused_days=10)
    assert (result.nominal, result.due) == (D(2026, 2, 25), D(2026, 2, 25))
    # + 13 days = Saturday 28 February -> Monday 2 March.
    assert due_date(D(2026, 1, 15), paused_days=13) == D(2026, 3, 2)
    # The notice window moves with the pause.
    assert not can_extend(D(2026, 1, 15), D(2026, 2, 20))
    assert can_extend(D(2026, 1, 15), D(2026, 2, 20), paused_days=10)
    # The extended deadline too.
    assert due_date(D(2026, 1, 15), months=EXTENDED_MONTHS, paused_days=10) == D(2026, 4, 27)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one month"):
        deadline(D(2026, 1, 1), months=0)
    with pytest.raises(ValueError, match="must not be negative"):
        deadline(D(2026, 1, 1), paused_days=-1)
    with pytest.raises(ValueError, match="must not be negative"):
        counted_pause(-1, pause_while_verifying=True)
    with pytest.raises(ValueError, match="past year 9999"):
        due_date(D(9999, 12, 1))


def test_every_day_of_a_common_and_a_leap_year() -> None:
    """legal-requirements §1.3.1: the rules hold for every day of 2027 and 2028 (leap)."""
    day = D(2027, 1, 1)
    while day.year < 2029:
        result = deadline(day, "RO")
        expected_month = day.month % 12 + 1
        assert result.nominal.month == expected_month
        last = calendar.monthrange(result.nominal.year, expected_month)[1]
        assert result.nominal.day == min(day.day, last)
        assert is_working_day(result.due, "RO")
        assert all(not is_working_day(s.day, "RO") for s in result.skipped)
        assert result.due == result.nominal + dt.timedelta(days=len(result.skipped))
        day += dt.timedelta(days=1)


COUNTRIES = st.sampled_from(["RO", "FR", "DE", "GB", "US", "IT"])
DAYS = st.dates(min_value=D(1990, 1, 1), max_value=D(2100, 12, 31))


@settings(deadline=None, max_examples=300)
@given(
    received=DAYS,
    country=COUNTRIES,
    months=st.sampled_from([1, EXTENDED_MONTHS]),
    paused=st.integers(0, 90),
)
def test_due_date_is_the_first_working_day_on_or_after_the_nominal_date(
    received: dt.date, country: str, months: int, paused: int
) -> None:
    result = deadline(received, country, months, paused)
    assert result.nominal == add_months(received, months) + dt.timedelta(days=paused)
    assert is_working_day(result.due, country)
    assert result.nominal <= result.due < result.nominal + dt.timedelta(days=10)
    day = result.nominal
    while day < result.due:
        assert not is_working_day(day, country)
        day += dt.timedelta(days=1)


@settings(deadline=None)
@given(received=DAYS, country=COUNTRIES)
def test_a_later_request_is_never_due_earlier(received: dt.date, country: str) -> None:
    later = received + dt.timedelta(days=1)
    assert due_date(received, country) <= due_date(later, country)
    assert due_date(received, country) <= due_date(received, country, EXTENDED_MONTHS)


@settings(deadline=None)
@given(received=DAYS, notice=st.integers(-5, 45))
def test_an_extension_is_allowed_exactly_up_to_the_one_month_due_date(
    received: dt.date, notice: int
) -> None:
    notified = received + dt.timedelta(days=notice)
    allowed = can_extend(received, notified, "RO")
    assert allowed == (received <= notified <= due_date(received, "RO"))
