"""The Art. 30(1) record of processing activities, derived from the register.

One row per activity with every Art. 30(1) field (a)-(g) plus the fields legal-requirements
§5.5 recommends (legal basis, source, automated decisions, storage, Gardien's own additions).
"""

from __future__ import annotations

import csv
import io
import json

from jinja2 import Environment

from gardien.register.schema import ARTICLE_6, Activity, LegalBasis, Register

COLUMNS = [
    "activity_id",
    "name",
    "controller",
    "dpo",
    "purposes",
    "legal_basis",
    "legitimate_interest",
    "special_category_condition",
    "data_subjects",
    "data_categories",
    "fields",
    "source",
    "recipients",
    "transfers",
    "retention_period",
    "retention_trigger",
    "retention_action",
    "retention",
    "security_measures",
    "automated_decisions",
    "storage",
    "added_by_gardien",
]


def _record(register: Register, activity: Activity, language: str) -> dict[str, str]:
    def tr(text: dict[str, str] | None) -> str:
        return "" if text is None else text.get(language) or text[register.languages.default]

    op = register.operator
    basis = activity.legal_basis
    return {
        "activity_id": activity.id,
        "name": tr(activity.name),
        "controller": f"{op.legal_name}, {op.registration_number}, {op.contact_email}",
        "dpo": op.dpo.email if not op.dpo.name else f"{op.dpo.name} <{op.dpo.email}>",
        "purposes": " | ".join(tr(p) for p in activity.purposes),
        "legal_basis": f"{basis.basis.value} (Art. {ARTICLE_6[basis.basis]})",
        "legitimate_interest": tr(basis.interest)
        if basis.basis is LegalBasis.legitimate_interests
        else "",
        "special_category_condition": basis.special_category_condition or "",
        "data_subjects": " | ".join(tr(s) for s in activity.data_subjects),
        "data_categories": " | ".join(tr(c.name) for c in activity.data_categories),
        "fields": ", ".join(f for c in activity.data_categories for f in c.fields),
        "source": tr(activity.source),
        "recipients": " | ".join(
            f"{tr(r.name)} ({r.role.value}, {r.location})" for r in activity.recipients
        ),
        "transfers": " | ".join(
            f"{t.recipient} → {t.country}: {tr(t.safeguard)}" for t in activity.transfers
        )
        or "none",
        "retention_period": activity.retention.period,
        "retention_trigger": activity.retention.trigger.value,
        "retention_action": activity.retention.action.value,
        "retention": tr(activity.retention.description),
        "security_measures": " | ".join(tr(m) for m in activity.security_measures),
        "automated_decisions": "yes" if activity.automated_decisions else "no",
        "storage": activity.storage,
        "added_by_gardien": "yes" if activity.added else "no",
    }


def records(register: Register, language: str) -> list[dict[str, str]]:
    return [_record(register, a, language) for a in register.activities]


def to_csv(register: Register, language: str) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records(register, language))
    return buffer.getvalue()


def to_json(register: Register, language: str) -> str:
    op = register.operator
    payload = {
        "controller": {
            "legal_name": op.legal_name,
            "registration_number": op.registration_number,
            "contact_email": op.contact_email,
            "dpo": op.dpo.model_dump(mode="json"),
        },
        "language": language,
        "activities": records(register, language),
    }
    return json.dumps(payload, ensure_ascii=False, indent=2) + "\n"


def to_html(register: Register, language: str, env: Environment) -> str:
    return env.get_template("policy/art30.html").render(
        register=register,
        records=records(register, language),
        columns=COLUMNS,
        languages=[],
        path="/",
    )
