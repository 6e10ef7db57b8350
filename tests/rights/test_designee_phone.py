"""The designee check of a post-mortem directive compares phone numbers in E.164: a number
the person wrote in national form matches the same number given in international form, and
the other way round; another number, or a number against an e-mail address, does not."""

from __future__ import annotations

import pytest

from gardien.rights.directives import _is_designee
from gardien.rights.models import RightsCase
from gardien.rights.phones import e164

E164 = "+40722123456"


@pytest.mark.parametrize("written", ["0722 123 456", "0722-123-456", "+40 722 123 456", E164])
def test_a_designated_number_matches_the_request_in_either_form(written: str) -> None:
    assert _is_designee(RightsCase(phone=E164), written, "RO")


@pytest.mark.parametrize("request_phone", ["0722123456", "+40 (722) 123-456"])
def test_an_international_designation_matches_a_request_kept_in_national_form(
    request_phone: str,
) -> None:
    assert _is_designee(RightsCase(phone=request_phone), "+40722123456", "RO")


@pytest.mark.parametrize(
    "written", ["0722 123 457", "+33722123456", "not a number", "", "ioana@example.org"]
)
def test_another_number_or_no_number_does_not_match(written: str) -> None:
    assert not _is_designee(RightsCase(phone=E164), written, "RO")


def test_a_national_number_is_read_in_the_operators_country() -> None:
    assert e164("0722 123 456", "RO") == E164
    assert e164("06 12 34 56 78", "FR") == "+33612345678"
    assert e164("0722 123 456", "FR") is None  # not a valid French number
    assert not _is_designee(RightsCase(phone=E164), "0722 123 456", "FR")
