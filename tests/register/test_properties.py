"""Property tests on the parsers: durations and the loader never crash, whatever the input."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gardien.register.durations import DurationError, parse_period
from gardien.register.loader import RegisterError, load_register


@given(st.text(max_size=30))
def test_any_text_is_a_period_or_a_clear_error(text: str) -> None:
    try:
        period = parse_period(text)
    except DurationError as exc:
        assert str(exc)
    else:
        moment = dt.datetime(2026, 3, 31, tzinfo=dt.UTC)
        assert period.before(moment) < moment < period.after(moment)


@given(st.integers(1, 1199), st.sampled_from(["D", "M"]))
def test_calendar_periods(amount: int, unit: str) -> None:
    period = parse_period(f"P{amount}{unit}")
    start = dt.datetime(2024, 1, 31, 12, tzinfo=dt.UTC)
    end = period.after(start)
    if unit == "D":
        assert end - start == dt.timedelta(days=amount)
    else:
        months = (end.year - start.year) * 12 + end.month - start.month
        assert months == amount
        assert end.day <= 31


def test_six_months_before_end_of_august_is_end_of_february() -> None:
    assert parse_period("P6M").before(dt.datetime(2026, 8, 31, tzinfo=dt.UTC)).date() == dt.date(
        2026, 2, 28
    )


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.text(max_size=200), yaml_values.map(repr)))
def test_loader_never_raises_anything_but_register_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "register.yaml"
        path.write_text(
            text, encoding="utf-8", errors="surrogatepass"
        ) if "\ud800" not in text else path.write_bytes(b"\xff")
        try:
            load_register(path)
        except RegisterError as exc:
            assert exc.problems
            assert all(p.file == str(path) and p.line >= 1 for p in exc.problems)
