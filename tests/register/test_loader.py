"""The register loader: the seed is valid; every kind of bad input is reported precisely."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gardien.register.loader import RegisterError, load_register
from tests.conftest import SEED_REGISTER

SEED_TEXT = SEED_REGISTER.read_text(encoding="utf-8")


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "register.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RegisterError) as caught:
        load_register(path)
    return [str(p) for p in caught.value.problems]


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle``."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return hits[occurrence - 1]


def edit(mutate: object) -> str:
    data = yaml.safe_load(SEED_TEXT)
    assert callable(mutate)
    mutate(data)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def test_seed_register_is_valid() -> None:
    register = load_register(SEED_REGISTER)
    ids = [a.id for a in register.activities]
    assert ids[:2] == ["contact_forms", "connection_log"]
    contact = register.activities[0]
    assert contact.retention.period == "P90D"
    assert contact.legal_basis.basis.value == "consent"
    fields = [f for c in contact.data_categories for f in c.fields]
    assert fields == [
        "first_name",
        "last_name",
        "phone",
        "email",
        "specialisation",
        "company",
        "country",
        "message",
    ]
    assert register.activities[1].retention.period == "P6M"
    assert register.activities[1].legal_basis.basis.value == "legitimate_interests"
    assert all(a.added for a in register.activities[2:])
    assert register.consent is not None
    assert register.consent.lifetime == "P6M"
    assert register.supervisory_authority.short_name == "ANSPDCP"
    assert {r.value for r in register.rights.offered} >= {
        "access",
        "rectification",
        "erasure",
        "restriction",
        "portability",
        "objection",
        "withdraw_consent",
        "post_mortem",
        "complaint",
    }


def test_malformed_yaml_reports_the_line(tmp_path: Path) -> None:
    text = "operator:\n  legal_name: X\n  brand: [unclosed\nhosting: {}\n"
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1
    assert re.match(rf"{re.escape(str(tmp_path))}/register.yaml:\d+: malformed YAML", problems[0])


def test_unknown_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    text = SEED_TEXT.replace(
        "  legal_name: CEGEDIM RX SRL", "  legal_name: CEGEDIM RX SRL\n  colour: blue", 1
    )
    problems = problems_of(tmp_path, text)
    line = line_of(text, "colour: blue")
    assert any(
        p.endswith(
            f":{line}: operator.colour: unknown key "
            "(not part of the register format; see docs/register.md)"
        )
        for p in problems
    ), problems


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, SEED_TEXT + "\nmarketing:\n  enabled: true\n")
    assert any("marketing: unknown section" in p for p in problems)


def test_wrong_types_and_all_problems_at_once(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        data["operator"]["no_advertising"] = "yes"
        data["activities"][0]["retention"]["trigger"] = "whenever"
        data["activities"][1]["purposes"] = "not a list"
        del data["activities"][2]["storage"]

    problems = problems_of(tmp_path, edit(mutate))
    joined = "\n".join(problems)
    assert "operator.no_advertising: input should be a valid boolean" in joined
    assert "activities[0].retention.trigger: input should be" in joined
    assert "activities[1].purposes: input should be a valid list" in joined
    assert "activities[2].storage: required field is missing" in joined
    assert len(problems) == 4


@pytest.mark.parametrize(
    ("period", "reason"),
    [
        ("P0D", "must be longer than zero"),
        ("90 days", "is not an ISO 8601 duration"),
        ("P1.5M", "fractional years or months are ambiguous"),
        ("P200Y", "longer than 100 years"),
        ("PXD", "is not an ISO 8601 duration"),
    ],
)
def test_impossible_durations(tmp_path: Path, period: str, reason: str) -> None:
    text = SEED_TEXT.replace("period: P90D", f"period: {period}", 1)
    problems = problems_of(tmp_path, text)
    line = line_of(text, f"period: {period}")
    assert len(problems) == 1
    assert f":{line}: activities[0].retention.period:" in problems[0]
    assert reason in problems[0]


def test_missing_translation_names_the_language(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        del data["activities"][0]["name"]["ro"]
        data["policy"]["title"]["de"] = "Datenschutz"

    problems = problems_of(tmp_path, edit(mutate))
    assert any("activities[0].name: missing translation: ro" in p for p in problems)
    assert any("policy.title.de: language 'de' is not declared" in p for p in problems)


def test_undeclared_language_has_no_catalog(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        data["languages"]["available"].append("de")

    problems = problems_of(tmp_path, edit(mutate))
    assert any("languages.available[3]: Gardien has no translation for 'de'" in p for p in problems)
    # every text now lacks German: reported too, all at once
    assert any("missing translation: de" in p for p in problems)


def test_dangling_references_and_duplicate_ids(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        data["cookies"][0]["category"] = "nonexistent"
        data["cookies"][0]["activity"] = "ghost"
        data["activities"][1]["id"] = data["activities"][0]["id"]

    problems = "\n".join(problems_of(tmp_path, edit(mutate)))
    assert "cookies[0].category: unknown consent category 'nonexistent'" in problems
    assert "cookies[0].activity: unknown activity 'ghost'" in problems
    assert "activities[1]: duplicate id 'contact_forms'" in problems


def test_duplicate_yaml_key_is_reported(tmp_path: Path) -> None:
    text = SEED_TEXT.replace(
        "  legal_name: CEGEDIM RX SRL", "  legal_name: CEGEDIM RX SRL\n  legal_name: Other", 1
    )
    problems = problems_of(tmp_path, text)
    assert any(
        f":{line_of(text, 'legal_name: Other')}: operator.legal_name: duplicate key" in p
        for p in problems
    )


def test_archive_is_refused_until_an_archive_store_exists(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        data["activities"][0]["retention"]["action"] = "archive"

    problems = problems_of(tmp_path, edit(mutate))
    assert len(problems) == 1
    assert "activities[0].retention.action: archive is not available yet" in problems[0]


def test_consent_based_activity_needs_withdrawal(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        data["activities"][0]["withdrawal"] = []

    problems = problems_of(tmp_path, edit(mutate))
    assert problems
    assert (
        "activities[0].withdrawal: a consent-based activity needs a way to withdraw consent"
        in problems[0]
    )


def test_legitimate_interests_need_the_interest(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        del data["activities"][1]["legal_basis"]["interest"]

    problems = problems_of(tmp_path, edit(mutate))
    assert any(
        "activities[1].legal_basis.interest: legitimate interests require" in p for p in problems
    )


def test_cookie_without_consent_must_be_necessary_or_exempt(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        pk = next(c for c in data["cookies"] if c["name"] == "_pk_id.*")
        pk["consent_required"] = False
        pk["duration"] = "P25M"
        ses = next(c for c in data["cookies"] if c["name"] == "_pk_ses.*")
        ses["consent_required"] = False
        ses["party"] = "third"

    problems = "\n".join(problems_of(tmp_path, edit(mutate)))
    assert "may last at most 13 months (CNIL exemption)" in problems
    assert "must be first-party (CNIL exemption)" in problems


def test_exempt_audience_measurement_cookie_is_accepted(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        pk = next(c for c in data["cookies"] if c["name"] == "_pk_id.*")
        pk["consent_required"] = False  # first-party, P13M: within the exemption

    path = tmp_path / "register.yaml"
    path.write_text(edit(mutate), encoding="utf-8")
    load_register(path)


def test_recipient_outside_the_eea_needs_a_transfer(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        recipients = data["activities"][0]["recipients"]
        recipients.append(
            {
                "id": "us_helpdesk",
                "name": {"en": "Helpdesk", "fr": "Support", "ro": "Suport"},
                "role": "processor",
                "location": "US",
            }
        )
        recipients.append(
            {"id": "nowhere", "name": {"en": "X", "fr": "X", "ro": "X"}, "role": "processor"}
        )

    problems = "\n".join(problems_of(tmp_path, edit(mutate)))
    assert (
        "recipient 'us_helpdesk' is outside the EEA (US) but no transfers entry covers it"
        in problems
    )
    assert "every recipient needs a location" in problems

    def with_transfer(data: dict) -> None:  # type: ignore[type-arg]
        mutate(data)
        data["activities"][0]["recipients"].pop()
        data["activities"][0]["transfers"] = [
            {
                "recipient": "us_helpdesk",
                "country": "US",
                "safeguard": {"en": "Standard contractual clauses", "fr": "CCT", "ro": "CCS"},
            }
        ]

    path = tmp_path / "ok.yaml"
    path.write_text(edit(with_transfer), encoding="utf-8")
    load_register(path)


def test_no_advertising_forbids_advertising_anything(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        data["consent_categories"].append(
            {
                "id": "advertising",
                "title": {"en": "Ads", "fr": "Pub", "ro": "Reclame"},
                "description": {"en": "Ads", "fr": "Pub", "ro": "Reclame"},
                "advertising": True,
            }
        )
        data["consent_categories"][1]["signals"] = ["analytics_storage", "ad_storage"]
        data["cookies"].append(
            {
                "name": "_fbp",
                "provider": "Meta",
                "party": "third",
                "category": "advertising",
                "purpose": {"en": "Ads", "fr": "Pub", "ro": "Reclame"},
                "duration": "P3M",
                "consent_required": True,
            }
        )
        data["activities"][0]["recipients"].append(
            {
                "id": "adnetwork",
                "name": {"en": "Ad network", "fr": "Régie", "ro": "Rețea"},
                "role": "advertising",
                "location": "FR",
            }
        )

    problems = "\n".join(problems_of(tmp_path, edit(mutate)))
    assert "no advertising cookie is allowed" in problems
    assert "no advertising recipient is allowed" in problems
    assert "no advertising category or signal is allowed (signals ad_storage)" in problems
    assert "consent_categories[1]: the operator declares no_advertising" in problems
    assert "consent_categories[2]: the operator declares no_advertising" in problems


def test_not_a_mapping_and_empty_file(tmp_path: Path) -> None:
    assert "must be a mapping of sections" in problems_of(tmp_path, "- just\n- a list\n")[0]
    assert "exactly one YAML document" in problems_of(tmp_path, "")[0]


def test_unreadable_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(RegisterError) as caught:
        load_register(tmp_path / "absent.yaml")
    assert "absent.yaml:1: cannot read the register" in str(caught.value)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RegisterError) as caught:
        load_register(binary)
    assert "not UTF-8" in str(caught.value)


def test_consented_cookie_cannot_outlive_the_consent(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        pk = next(c for c in data["cookies"] if c["name"] == "_pk_id.*")
        pk["duration"] = "P13M"

    problems = problems_of(tmp_path, edit(mutate))
    assert len(problems) == 1
    assert "duration: a cookie set with consent cannot outlive the consent" in problems[0]


def test_shared_recipient_ids_must_agree_and_eea_transfers_are_refused(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        data["activities"][0]["recipients"] = [dict(r) for r in data["activities"][0]["recipients"]]
        others = {r["id"] for a in data["activities"][1:] for r in a["recipients"]}
        shared = next(r for r in data["activities"][0]["recipients"] if r["id"] in others)
        shared["location"] = "DE"
        first = data["activities"][0]["recipients"][0]["id"]
        data["activities"][0]["transfers"] = [
            {"recipient": first, "country": "FR", "safeguard": {"en": "x", "fr": "x", "ro": "x"}}
        ]
        data["hosting"]["location"] = "US"

    problems = "\n".join(problems_of(tmp_path, edit(mutate)))
    assert "is declared differently in another activity" in problems
    assert "transfers[0].country: FR is in the EEA: this is not a transfer" in problems
    assert "hosting.location: hosting outside the EEA" in problems


def test_cnil_exemption_counts_thirteen_months_from_any_month(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        data["consent"]["lifetime"] = "P13M"
        pk = next(c for c in data["cookies"] if c["name"] == "_pk_id.*")
        pk["consent_required"] = False
        pk["duration"] = "P396D"  # 13 months from 1 March, but not from 1 February

    problems = problems_of(tmp_path, edit(mutate))
    assert any("may last at most 13 months (CNIL exemption)" in p for p in problems)


def test_portal_path_must_be_a_path(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        data["rights"]["portal_path"] = "rights"

    problems = problems_of(tmp_path, edit(mutate))
    assert any("rights.portal_path: string should match pattern" in p for p in problems)
