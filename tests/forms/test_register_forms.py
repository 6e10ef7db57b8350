"""The register's ``forms`` section: what a DPO may declare, and what is refused with the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gardien.policy.document import build_document
from gardien.policy.render import to_markdown
from gardien.register.loader import load_register
from tests.conftest import SEED_REGISTER
from tests.register.test_loader import edit, problems_of


def contact(data: dict[str, Any]) -> dict[str, Any]:
    form: dict[str, Any] = data["forms"][0]
    return form


def test_every_form_mistake_is_named(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        form = contact(data)
        form["fields"].append({"name": "shoe_size", "type": "text", "label": form["title"]})
        form["fields"].append({"name": "consent", "type": "text", "label": form["title"]})
        form["fields"][4]["options"] = []  # specialisation, a choice
        form["fields"][0]["options"] = [{"value": "x", "label": form["title"]}]
        del form["consent_text"]
        form["email_content"] = "full"
        form["notify"] = ["not-an-address"]
        data["forms"].append({**form, "activity": "nowhere"})

    problems = "\n".join(problems_of(tmp_path, edit(mutate)))
    assert "forms[0].fields[8].name: 'shoe_size' is not among" in problems
    assert "forms[0].fields[9].name: 'consent' is reserved" in problems
    assert "forms[0].fields[4].options: a choice field needs options" in problems
    assert "forms[0].fields[0].options: only choice fields have options" in problems
    assert "forms[0].consent_text: activities[contact_forms] rests on consent" in problems
    assert "forms[0].mailbox_retention: e-mails carrying the submission" in problems
    assert "forms[0].notify[0]: not an e-mail address" in problems
    assert "forms[1]: duplicate id 'contact'" in problems
    assert "forms[1].activity: no activity 'nowhere'" in problems


def test_a_phone_needs_a_country_and_contract_basis_needs_no_checkbox(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        form = contact(data)
        form["fields"] = [f for f in form["fields"] if f["name"] != "country"]
        activity = next(a for a in data["activities"] if a["id"] == "contact_forms")
        activity["legal_basis"] = {"basis": "contract"}
        activity["withdrawal"] = []

    problems = "\n".join(problems_of(tmp_path, edit(mutate)))
    assert "a phone field needs a country field" in problems
    assert "does not rest on consent: a consent checkbox would mislead" in problems


def test_a_full_e_mail_puts_the_mailbox_retention_in_the_policy(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        form = contact(data)
        form["email_content"] = "full"
        form["mailbox_retention"] = "P30D"

    path = tmp_path / "register.yaml"
    path.write_text(edit(mutate), encoding="utf-8")
    register = load_register(path)
    text = to_markdown(build_document(register, "fr"))
    assert "conservés dans notre messagerie pendant 30 jours" in text
    seed = to_markdown(build_document(load_register(SEED_REGISTER), "fr"))
    assert "messagerie pendant" not in seed  # the seed's e-mails carry no personal data
