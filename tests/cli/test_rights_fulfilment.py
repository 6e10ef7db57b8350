"""``gardien rights export`` and ``gardien rights erase`` as an operator scripts them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from gardien.cli.main import app
from gardien.rights.models import RightsCase
from tests.cli.test_commands import env_of
from tests.rights.conftest import EMAIL, Seeded, seeded  # noqa: F401 - the fixture

runner = CliRunner()


def cases(person: Seeded) -> list[RightsCase]:
    with person.state.sessions() as session:
        return list(session.scalars(select(RightsCase).order_by(RightsCase.id)))


def test_export_writes_the_package_and_prints_the_case(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "ana.zip"
    result = runner.invoke(
        app,
        [
            "rights",
            "export",
            "--email",
            f"  {EMAIL.upper()} ",
            "--phone",
            "021 123 4567",
            "--consent-id",
            seeded.consent_id,
            "--out",
            str(out),
            "--lang",
            "ro",
        ],
        env=env_of(seeded.state.settings),
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["package"] == str(out.resolve()) and out.is_file()
    assert printed["found"]["contact_forms"] == 1 and printed["found"]["consent_records"] == 2
    assert printed["status"] == "closed" and printed["failed"] == []
    names = zipfile.ZipFile(out).namelist()
    assert {"index.html", "data.json", "csv/contact_forms/contact_forms.csv"} <= set(names)
    [case] = cases(seeded)
    assert (case.reference, case.channel, case.outcome) == (printed["case"], "cli", "answered")
    assert case.rights == "access,portability" and case.language == "ro"


def test_erase_prints_the_receipt_and_a_second_export_finds_nothing(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = env_of(seeded.state.settings)
    result = runner.invoke(
        app, ["rights", "erase", "--email", EMAIL, "--phone", "+40 21 123 4567", "--yes"], env=env
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    stores = {s["store"]: s for s in printed["receipt"]["stores"]}
    assert stores["contact_forms"]["erased"] == 1
    assert printed["receipt"]["requery"]["contact_forms"] == 0
    assert printed["receipt"]["nothing_left"] is True
    assert EMAIL.lower() not in result.stdout.lower()
    again = runner.invoke(
        app, ["rights", "export", "--email", EMAIL, "--out", str(tmp_path / "x.zip")], env=env
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["found"]["contact_forms"] == 0
    assert [c.outcome for c in cases(seeded)] == ["erased_with_exceptions", "answered"]


def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = env_of(seeded.state.settings)
    out = str(tmp_path / "p.zip")
    for arguments, message in (
        (["erase", "--email", EMAIL], "add --yes to confirm"),
        (["erase", "--email", "ana@@example", "--yes"], "--email: not a valid e-mail address"),
        (["export", "--email", "ana.example.org", "--out", out], "--email: not a valid e-mail"),
        (["export", "--phone", "12", "--out", out], "--phone: not a valid phone number"),
        (["export", "--ip", "300.1.1.1", "--out", out], "--ip: not an IP address"),
        (["export", "--out", out], "give at least one identifier"),
        (["export", "--email", EMAIL, "--out", str(tmp_path / "no" / "p.zip")], "--out:"),
        (["export", "--ip", "10.0.0.1", "--since", "2026-13-01", "--out", out], "--since"),
    ):
        result = runner.invoke(app, ["rights", *arguments], env=env)
        assert result.exit_code == 2, (arguments, result.output)
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output and "ana@@" not in result.stderr
    assert not Path(out).exists()
    with seeded.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RightsCase)) == 0
