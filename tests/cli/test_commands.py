"""The gardien CLI as an operator uses it: exit codes, one-line errors, the same settings."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gardien.cli.main import app
from gardien.config import Settings

runner = CliRunner()


def env_of(settings: Settings) -> dict[str, str]:
    return {
        "GARDIEN_DATA_DIR": str(settings.data_dir),
        "GARDIEN_DATABASE_URL": settings.resolved_database_url,
        "GARDIEN_REGISTER": str(settings.register_file),
        "COLUMNS": "200",
    }


def test_register_check_valid(register_path: Path) -> None:
    result = runner.invoke(app, ["register", "check", str(register_path)])
    assert result.exit_code == 0, result.output
    assert "valid (8 activities" in result.output


def test_register_check_reports_every_problem_and_exits_2(register_path: Path) -> None:
    text = register_path.read_text(encoding="utf-8")
    text = text.replace("period: P90D", "period: P0D", 1).replace(
        "  brand: Cegedim", "  brand: Cegedim\n  slogan: hi", 1
    )
    register_path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["register", "check", str(register_path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1  # schema problems stop before rule checks
    assert lines[0].startswith(f"{register_path}:")
    assert "operator.slogan: unknown key" in lines[0]
    assert "Traceback" not in result.output
    register_path.write_text(text.replace("  slogan: hi\n", ""), encoding="utf-8")
    result = runner.invoke(app, ["register", "check", str(register_path)])
    assert result.exit_code == 2
    assert "activities[0].retention.period: 'P0D' must be longer than zero" in result.stderr


def test_register_check_strict_fails_on_unbuilt_stores(register_path: Path) -> None:
    # Every store of the seed is built now (backups last): an unknown one stands in.
    assert runner.invoke(app, ["register", "check", "--strict", str(register_path)]).exit_code == 0
    text = register_path.read_text(encoding="utf-8")
    register_path.write_text(text.replace("storage: backup", "storage: tape"), encoding="utf-8")
    result = runner.invoke(app, ["register", "check", "--strict", str(register_path)])
    assert result.exit_code == 2
    assert "activities[7].storage: store 'tape' is not implemented yet" in result.stderr
    assert "store 'analytics_hit'" not in result.stderr
    assert "store 'rights_request'" not in result.stderr


def test_register_check_missing_file() -> None:
    result = runner.invoke(app, ["register", "check", "/nonexistent/register.yaml"])
    assert result.exit_code == 2
    assert "/nonexistent/register.yaml:1: cannot read the register" in result.stderr


@pytest.mark.parametrize("fmt", ["csv", "json", "html"])
def test_register_export_art30(register_path: Path, fmt: str) -> None:
    result = runner.invoke(
        app,
        ["register", "export", "--format", fmt, "--register", str(register_path), "--lang", "fr"],
    )
    assert result.exit_code == 0, result.output
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert [r["activity_id"] for r in rows][:2] == ["contact_forms", "connection_log"]
        assert rows[0]["retention_period"] == "P90D"
        assert rows[0]["legal_basis"] == "consent (Art. 6(1)(a))"
        assert "first_name" in rows[0]["fields"]
        for column in (
            "controller",
            "dpo",
            "purposes",
            "data_subjects",
            "data_categories",
            "recipients",
            "transfers",
            "retention",
            "security_measures",
        ):
            assert rows[0][column], column
    elif fmt == "json":
        payload = json.loads(result.stdout)
        assert payload["controller"]["legal_name"] == "CEGEDIM RX SRL"
        assert len(payload["activities"]) == 8
    else:
        assert result.stdout.startswith("<!doctype html>")
        assert 'lang="fr"' in result.stdout


@pytest.mark.parametrize("fmt", ["md", "json", "html"])
def test_policy_render(register_path: Path, fmt: str) -> None:
    result = runner.invoke(
        app, ["policy", "render", "--lang", "ro", "--format", fmt, "--register", str(register_path)]
    )
    assert result.exit_code == 0, result.output
    assert "CEGEDIM RX SRL" in result.stdout
    if fmt == "json":
        assert json.loads(result.stdout)["language"] == "ro"


def test_policy_render_rejects_unknown_language(register_path: Path) -> None:
    result = runner.invoke(
        app, ["policy", "render", "--lang", "de", "--register", str(register_path)]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_publish_versions_and_retention_share_the_database(settings: Settings) -> None:
    env = env_of(settings)
    if not settings.is_sqlite:  # PostgreSQL is never migrated implicitly
        refused = runner.invoke(app, ["policy", "publish"], env=env)
        assert refused.exit_code == 2
        assert "pending migrations: run `gardien db upgrade`" in refused.stderr
        assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    first = runner.invoke(app, ["policy", "publish"], env=env)
    assert first.exit_code == 0, first.output
    assert "published policy version 1" in first.stdout
    again = runner.invoke(app, ["policy", "publish"], env=env)
    assert "policy unchanged: version 1" in again.stdout
    listing = runner.invoke(app, ["policy", "versions"], env=env, terminal_width=200)
    assert listing.exit_code == 0
    assert "cli" in listing.stdout
    dry = runner.invoke(app, ["retention", "run", "--dry-run"], env=env, terminal_width=200)
    assert dry.exit_code == 0, dry.output
    assert "dry_run" in dry.stdout and "not_implemented" not in dry.stdout
    run = runner.invoke(app, ["retention", "run"], env=env, terminal_width=200)
    assert run.exit_code == 0, run.output
    status = runner.invoke(app, ["retention", "status", "--json"], env=env)
    assert status.exit_code == 0, status.output
    rows = json.loads(status.stdout)
    assert {r["activity"] for r in rows} >= {"contact_forms", "connection_log"}
    assert all(r["last_run"] for r in rows)
    states = {r["activity"]: r["state"] for r in rows}
    # built stores: the audit chain (holding the publication's entry), the connection log,
    # admin accounts, consent records, forms, analytics hits, rights cases and backups (all
    # empty here)
    assert states.pop("audit_trail") == "within limit"
    assert states.pop("connection_log") == "empty"
    assert states.pop("admin_accounts") == "empty"
    assert states.pop("consent_records") == "empty"
    assert states.pop("contact_forms") == "empty"
    assert states.pop("audience_measurement") == "empty"
    assert states.pop("rights_requests") == "empty"
    assert states.pop("backups") == "empty"
    assert states == {}


def test_keys_init_creates_a_private_file(tmp_path: Path) -> None:
    env = {"GARDIEN_DATA_DIR": str(tmp_path)}
    result = runner.invoke(app, ["keys", "init"], env=env)
    assert result.exit_code == 0
    assert "created" in result.stdout
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o600
    assert "kept existing" in runner.invoke(app, ["keys", "init"], env=env).stdout


def test_bad_setting_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["policy", "versions"],
        env={"GARDIEN_DATA_DIR": str(tmp_path), "GARDIEN_DURABILITY": "sometimes"},
    )
    assert result.exit_code == 2
    assert "invalid GARDIEN_* setting" in result.stderr
    assert "Traceback" not in result.output


def test_unreachable_database_is_one_line(tmp_path: Path, register_path: Path) -> None:
    env = {
        "GARDIEN_DATA_DIR": str(tmp_path),
        "GARDIEN_REGISTER": str(register_path),
        "GARDIEN_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
    }
    result = runner.invoke(app, ["retention", "status"], env=env)
    assert result.exit_code == 2
    assert "cannot reach the database (OperationalError)" in result.stderr
    assert "Traceback" not in result.output
