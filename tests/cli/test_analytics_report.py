"""``gardien analytics report`` on both backends: it brings the rollups up to date before
reading them (hits stored a moment ago are in the report), prints JSON or CSV on stdout, is
traced as an export, and answers bad input with exit 2 and one line."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import insert, select
from typer.testing import CliRunner

from gardien.analytics.models import analytics_hit
from gardien.analytics.reports import TABLES
from gardien.cli.main import app
from gardien.config import Settings
from gardien.deps import State
from gardien.security.models import AuditEntry
from tests.analytics.report_traffic import EXPECTED, EXPECTED_DAYS, FIRST, HITS, LAST
from tests.cli.test_commands import env_of

runner = CliRunner()
RANGE = ["--site", "1", "--from", FIRST.isoformat(), "--to", LAST.isoformat()]


def _store_hits(state: State) -> None:
    """Raw hits only: no refresh, so only the command itself can bring them into a report."""
    with state.sessions.begin() as session:
        session.execute(insert(analytics_hit), HITS)


def test_json_report_includes_hits_stored_just_before(state: State, settings: Settings) -> None:
    _store_hits(state)
    result = runner.invoke(app, ["analytics", "report", *RANGE], env=env_of(settings))
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {k: document["totals"][k] for k in EXPECTED} == EXPECTED
    assert [(d["day"], d["visits"], d["visitors"], d["pageviews"]) for d in document["days"]] == [
        (day.isoformat(), *figures) for day, figures in EXPECTED_DAYS.items()
    ]
    assert set(document["tables"]) == set(TABLES)
    assert document["rollups_as_of"] is not None
    with state.readers() as session:
        traces = session.execute(
            select(AuditEntry.actor, AuditEntry.reason).where(
                AuditEntry.action == "analytics.exported"
            )
        ).all()
    assert [tuple(t) for t in traces] == [("cli", "2026-01-13..2026-01-14, json")]


def test_csv_report(state: State, settings: Settings) -> None:
    _store_hits(state)
    result = runner.invoke(
        app, ["analytics", "report", *RANGE, "--format", "csv"], env=env_of(settings)
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    totals = [row for row in rows if row["table"] == "totals"]
    assert [int(totals[0][k]) for k in EXPECTED] == list(EXPECTED.values())
    assert [row["label"] for row in rows if row["table"] == "days"] == [
        FIRST.isoformat(),
        LAST.isoformat(),
    ]
    assert ("searches", "ordonnance") in {(row["table"], row["label"]) for row in rows}


@pytest.mark.parametrize(
    ("arguments", "line"),
    [
        (["--from", "2026-01-13", "--to", "2026-01-14"], "--site: a site id of the register"),
        (["--site", "one", "--from", "2026-01-13", "--to", "2026-01-14"], "--site: expected a"),
        (["--site", "4", "--from", "2026-01-13", "--to", "2026-01-14"], "declares no site 4"),
        (["--site", "1", "--to", "2026-01-14"], "--from: a date is required"),
        (["--site", "1", "--from", "2026-13-01", "--to", "2026-01-14"], "--from: expected a date"),
        (["--site", "1", "--from", "2026-01-13", "--to", "14.01.2026"], "--to: expected a date"),
        (["--site", "1", "--from", "2026-01-14", "--to", "2026-01-13"], "first day is after"),
        (["--site", "1", "--from", "2020-01-01", "--to", "2026-01-13"], "at most 366"),
        ([*RANGE, "--format", "xlsx"], "--format: json or csv"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    state: State, settings: Settings, arguments: list[str], line: str
) -> None:
    result = runner.invoke(app, ["analytics", "report", *arguments], env=env_of(settings))
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and line in lines[0], result.stderr
    assert "Traceback" not in result.output
    with state.readers() as session:  # nothing written: no export traced
        assert (
            session.scalar(select(AuditEntry.seq).where(AuditEntry.action == "analytics.exported"))
            is None
        )
