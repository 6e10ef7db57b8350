"""The register's deadline settings: ``rights.holidays_country`` and ``pause_while_verifying``."""

from __future__ import annotations

from pathlib import Path

import pytest

from gardien.register.loader import RegisterError, load_register
from tests.conftest import SEED_REGISTER

SEED_TEXT = SEED_REGISTER.read_text(encoding="utf-8")


def with_rights(tmp_path: Path, old: str, new: str) -> Path:
    assert old in SEED_TEXT
    path = tmp_path / "register.yaml"
    path.write_text(SEED_TEXT.replace(old, new, 1), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(RegisterError) as caught:
        load_register(path)
    return [str(p) for p in caught.value.problems]


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i + 1 for i, line in enumerate(lines) if needle in line)


def test_the_seed_sets_both_explicitly() -> None:
    rights = load_register(SEED_REGISTER).rights
    assert rights.holidays_country == "RO"
    assert rights.pause_while_verifying is False
    assert "holidays_country: RO" in SEED_TEXT
    assert "pause_while_verifying: false" in SEED_TEXT


def test_defaults_are_romania_and_no_pause(tmp_path: Path) -> None:
    path = with_rights(tmp_path, "  holidays_country: RO\n", "")
    path.write_text(
        path.read_text(encoding="utf-8").replace("  pause_while_verifying: false\n", ""),
        encoding="utf-8",
    )
    rights = load_register(path).rights
    assert (rights.holidays_country, rights.pause_while_verifying) == ("RO", False)


def test_another_country_and_the_pause(tmp_path: Path) -> None:
    path = with_rights(
        tmp_path,
        "  holidays_country: RO\n",
        "  holidays_country: FR\n",
    )
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "pause_while_verifying: false", "pause_while_verifying: true"
        ),
        encoding="utf-8",
    )
    rights = load_register(path).rights
    assert (rights.holidays_country, rights.pause_while_verifying) == ("FR", True)


def test_a_country_without_a_holiday_calendar_is_reported_at_its_line(tmp_path: Path) -> None:
    path = with_rights(tmp_path, "holidays_country: RO", "holidays_country: XX")
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'holidays_country: XX')}: rights.holidays_country: no "
        "public-holiday calendar for 'XX': give the ISO 3166-1 alpha-2 code of a country the "
        "holidays library supports (e.g. RO, FR, DE)"
    ]


def test_an_alias_is_not_an_iso_code(tmp_path: Path) -> None:
    path = with_rights(tmp_path, "holidays_country: RO", "holidays_country: UK")
    (problem,) = problems_of(path)
    assert problem.endswith(
        "rights.holidays_country: 'UK' is not an ISO 3166-1 alpha-2 code: write 'GB'"
    )


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("holidays_country: RO", "holidays_country: ro", "rights.holidays_country"),
        ("holidays_country: RO", "holidays_country: ROU", "rights.holidays_country"),
        (
            "pause_while_verifying: false",
            "pause_while_verifying: 'no'",
            "rights.pause_while_verifying",
        ),
    ],
)
def test_wrong_types_are_schema_problems(tmp_path: Path, old: str, new: str, field: str) -> None:
    path = with_rights(tmp_path, old, new)
    (problem,) = problems_of(path)
    assert f": {field}: " in problem
