"""The register's limits for the person-facing paths: ``rights.download_link_days``,
``identity_document_max_days`` and ``verification_window_days`` (whole numbers in bounds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gardien.register.loader import load_register
from tests.conftest import SEED_REGISTER
from tests.rights.test_register_settings import SEED_TEXT, line_of, problems_of, with_rights

ANCHOR = "  pause_while_verifying: false\n"


def with_setting(tmp_path: Path, line: str) -> Path:
    return with_rights(tmp_path, ANCHOR, ANCHOR + f"  {line}\n")


def test_the_defaults_are_seven_seven_and_thirty_days() -> None:
    rights = load_register(SEED_REGISTER).rights
    assert (
        rights.download_link_days,
        rights.identity_document_max_days,
        rights.verification_window_days,
    ) == (7, 7, 30)
    assert "download_link_days" not in SEED_TEXT  # the seed relies on the defaults


def test_an_operator_may_shorten_them(tmp_path: Path) -> None:
    path = with_setting(tmp_path, "download_link_days: 2")
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            ANCHOR, ANCHOR + "  identity_document_max_days: 1\n  verification_window_days: 10\n"
        ),
        encoding="utf-8",
    )
    rights = load_register(path).rights
    assert (
        rights.download_link_days,
        rights.identity_document_max_days,
        rights.verification_window_days,
    ) == (2, 1, 10)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("download_link_days: 0", "greater than or equal to 1"),
        ("download_link_days: 31", "less than or equal to 30"),
        ("download_link_days: '7'", "integer"),
        ("download_link_days: 7.5", "integer"),
        ("identity_document_max_days: 90", "less than or equal to 30"),
        ("identity_document_max_days: true", "integer"),
        ("verification_window_days: 91", "less than or equal to 90"),
        ("verification_window_days: -1", "greater than or equal to 1"),
        ("download_link_day: 7", "unknown key"),
    ],
)
def test_bad_values_are_reported_at_their_line(tmp_path: Path, line: str, reason: str) -> None:
    path = with_setting(tmp_path, line)
    (problem,) = problems_of(path)
    field = line.split(":")[0]
    assert problem.startswith(f"{path}:{line_of(path, line)}: rights.{field}: "), problem
    assert reason in problem, problem
