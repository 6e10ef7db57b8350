"""``gardien consent verify`` and ``gardien consent export``, and the lawful purge in between."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import secrets
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from gardien.cli.main import app
from gardien.consent.models import ConsentRecord
from gardien.deps import State
from gardien.retention.service import run_retention
from gardien.security.models import AuditEntry
from gardien.storage.clock import FrozenClock
from tests.consent.test_records import decision

runner = CliRunner()


def env_of(state: State) -> dict[str, str]:
    return {
        "GARDIEN_DATA_DIR": str(state.settings.data_dir),
        "GARDIEN_DATABASE_URL": state.settings.resolved_database_url,
        "GARDIEN_REGISTER": str(state.settings.register_file),
    }


def record(client: TestClient, **changes: object) -> dict[str, object]:
    body = decision(client, **changes)
    assert client.post("/api/consent/records", json=body).status_code == 201
    return body


def test_verify_passes_then_names_the_edited_record(client: TestClient, state: State) -> None:
    for _ in range(3):
        record(client)
    result = runner.invoke(app, ["consent", "verify"], env=env_of(state))
    assert result.exit_code == 0, result.output
    assert "consent chain intact: 3 records" in result.output
    with state.sessions.begin() as session:
        session.execute(update(ConsentRecord).where(ConsentRecord.seq == 2).values(page="/x"))
    result = runner.invoke(app, ["consent", "verify"], env=env_of(state))
    assert result.exit_code == 1
    assert "entry 2" in result.output


def test_export_filters_by_date_action_revision_and_category(
    client: TestClient, state: State, clock: FrozenClock, tmp_path: Path
) -> None:
    accepted = record(client)
    clock.advance(dt.timedelta(days=2))
    record(client, action="reject_all", control="reject", choices={"audience_measurement": False})
    env = env_of(state)
    both = runner.invoke(app, ["consent", "export", "--format", "json"], env=env)
    assert both.exit_code == 0, both.output
    rows = json.loads(both.stdout)
    assert [r["action"] for r in rows] == ["accept_all", "reject_all"]
    assert rows[0]["consent_id"] == accepted["consent_id"]
    day_one = runner.invoke(
        app, ["consent", "export", "--from", "2026-01-15", "--to", "2026-01-15"], env=env
    )
    table = list(csv.DictReader(io.StringIO(day_one.stdout)))
    assert [r["action"] for r in table] == ["accept_all"]
    assert table[0]["categories"] == "audience_measurement=1 strictly_necessary=1"
    rejected = runner.invoke(
        app, ["consent", "export", "--action", "reject_all", "--revision", "1"], env=env
    )
    assert [r["action"] for r in csv.DictReader(io.StringIO(rejected.stdout))] == ["reject_all"]
    none = runner.invoke(app, ["consent", "export", "--category", "advertising"], env=env)
    assert list(csv.DictReader(io.StringIO(none.stdout))) == []
    out = tmp_path / "records.csv"
    written = runner.invoke(app, ["consent", "export", "--out", str(out)], env=env)
    assert written.exit_code == 0 and out.stat().st_mode & 0o077 == 0
    for bad in (["--from", "15/01/2026"], ["--action", "sell"], ["--format", "xml"]):
        refused = runner.invoke(app, ["consent", "export", *bad], env=env)
        assert refused.exit_code == 2, bad
    with state.sessions() as session:
        exports = session.scalars(
            select(AuditEntry.reason).where(AuditEntry.action == "consent.exported")
        ).all()
    assert "2 records, json" in exports


def test_a_purge_past_the_period_leaves_tombstones_that_verify(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    old = record(client)
    clock.advance(dt.timedelta(days=365 * 5 + 2))  # past the register's five years
    recent = record(client, consent_id=secrets.token_hex(16))
    run_retention(state.sessions, state.register, state.stores, state.clock)
    with state.sessions() as session:
        rows = session.scalars(select(ConsentRecord).order_by(ConsentRecord.seq)).all()
        assert [r.purged for r in rows] == [True, False]
        assert rows[0].consent_id is None and rows[0].choices is None
        assert rows[1].consent_id == recent["consent_id"]
    del old
    result = runner.invoke(app, ["consent", "verify"], env=env_of(state))
    assert result.exit_code == 0, result.output
