"""`gardien rights due-date`: the legal due date of a request, as an operator runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gardien.cli.main import app

runner = CliRunner()


def env_for(register: Path, tmp_path: Path) -> dict[str, str]:
    return {"GARDIEN_REGISTER": str(register), "GARDIEN_DATA_DIR": str(tmp_path / "var")}


def due(args: list[str], env: dict[str, str]) -> tuple[str, str]:
    result = runner.invoke(app, ["rights", "due-date", *args], env=env)
    assert result.exit_code == 0, result.output
    date, reasoning = result.stdout.splitlines()
    return date, reasoning


def test_prints_the_date_then_the_reasoning(register_path: Path, tmp_path: Path) -> None:
    date, reasoning = due(["2026-01-31"], env_for(register_path, tmp_path))
    assert date == "2026-03-02"
    assert reasoning == (
        "one month after 2026-01-31 ends Saturday 2026-02-28 (there is no 31 February: the "
        "month's last day); 2026-02-28 (Saturday), 2026-03-01 (Sunday): not working days in "
        "RO, so the next working day, Monday 2026-03-02."
    )


def test_leap_year_and_a_working_day(register_path: Path, tmp_path: Path) -> None:
    date, reasoning = due(["2028-01-31"], env_for(register_path, tmp_path))
    assert date == "2028-02-29"
    assert reasoning.endswith(
        "Tuesday 2028-02-29 (there is no 31 February: the month's last day), a working day in RO."
    )


def test_romanian_holiday_names_the_holiday(register_path: Path, tmp_path: Path) -> None:
    date, reasoning = due(["2026-03-13"], env_for(register_path, tmp_path))
    assert date == "2026-04-14"
    assert "2026-04-13 (Monday, Easter): not working days in RO" in reasoning


def test_extended(register_path: Path, tmp_path: Path) -> None:
    date, reasoning = due(["2025-11-30", "--extended"], env_for(register_path, tmp_path))
    assert date == "2026-03-02"
    assert reasoning.startswith("three months after 2025-11-30 ends Saturday 2026-02-28")


def test_json(register_path: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["rights", "due-date", "2026-04-30", "--json"], env=env_for(register_path, tmp_path)
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "received": "2026-04-30",
        "country": "RO",
        "months": 1,
        "nominal": "2026-05-30",
        "due": "2026-06-02",
        "skipped": [
            {"date": "2026-05-30", "weekday": "Saturday", "reason": "Saturday"},
            {"date": "2026-05-31", "weekday": "Sunday", "reason": "Pentecost"},
            {"date": "2026-06-01", "weekday": "Monday", "reason": "Children's Day; Pentecost"},
        ],
    }


def test_country_option_overrides_the_register(register_path: Path, tmp_path: Path) -> None:
    env = env_for(register_path, tmp_path)
    assert due(["2026-03-06"], env)[0] == "2026-04-06"  # Western Easter Monday: RO works
    assert due(["2026-03-06", "--country", "FR"], env)[0] == "2026-04-07"
    assert due(["2026-03-06", "--country", "fr"], env)[0] == "2026-04-07"


def test_default_country_comes_from_the_register(register_path: Path, tmp_path: Path) -> None:
    text = register_path.read_text(encoding="utf-8")
    register_path.write_text(
        text.replace("holidays_country: RO", "holidays_country: FR", 1), encoding="utf-8"
    )
    date, reasoning = due(["2026-03-06"], env_for(register_path, tmp_path))
    assert date == "2026-04-07"
    assert "2026-04-06 (Monday, Easter Monday): not working days in FR" in reasoning
    other = tmp_path / "other.yaml"
    other.write_text(text, encoding="utf-8")
    assert due(["2026-03-06", "--register", str(other)], env_for(register_path, tmp_path))[0] == (
        "2026-04-06"
    )


def test_without_a_register_romania(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default register path does not exist here
    monkeypatch.delenv("GARDIEN_REGISTER", raising=False)
    assert due(["2026-03-13"], {"GARDIEN_DATA_DIR": str(tmp_path)})[0] == "2026-04-14"


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("2026-02-30", "2026-02-30: not a calendar date (day is out of range for month)"),
        ("2027-02-29", "2027-02-29: not a calendar date (day is out of range for month)"),
        ("2026-13-01", "2026-13-01: not a calendar date (month must be in 1..12)"),
        ("2026-1-5", "2026-1-5: expected a date as YYYY-MM-DD"),
        ("20260105", "20260105: expected a date as YYYY-MM-DD"),
        ("tomorrow", "tomorrow: expected a date as YYYY-MM-DD"),
        ("9999-12-15", "1 month after 9999-12-15 is past year 9999"),
    ],
)
def test_impossible_dates_exit_2_with_one_line(
    register_path: Path, tmp_path: Path, argument: str, message: str
) -> None:
    result = runner.invoke(
        app, ["rights", "due-date", argument], env=env_for(register_path, tmp_path)
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == message
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_unknown_country_exits_2(register_path: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["rights", "due-date", "2026-01-10", "--country", "ZZ"],
        env=env_for(register_path, tmp_path),
    )
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("no public-holiday calendar for country 'ZZ'")


def test_a_broken_register_exits_2(register_path: Path, tmp_path: Path) -> None:
    text = register_path.read_text(encoding="utf-8")
    register_path.write_text(
        text.replace("holidays_country: RO", "holidays_country: XX", 1), encoding="utf-8"
    )
    result = runner.invoke(
        app, ["rights", "due-date", "2026-01-10"], env=env_for(register_path, tmp_path)
    )
    assert result.exit_code == 2
    assert "rights.holidays_country: no public-holiday calendar for 'XX'" in result.stderr
