"""Receiving a submission: abuse checks and validation (``accept``, no database), then the
encrypted row and its outbox messages in one transaction (``record``); and the short Art. 13
notice shown next to a form.

Abuse resistance needs no third party: a honeypot field, a minimum fill time (a signed
``shown_at`` stamp handed out with the form), the public-write budgets of the security layer,
and duplicate detection by a keyed hash of the content. A rejected submission gets a 4xx (so
the connection log and the abuse view count it) and is never stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection

from gardien.errors import N_, Conflict, GardienError, NotFound
from gardien.forms import repository, validation
from gardien.forms.mail import outbox_rows
from gardien.forms.provider import email_index, phone_index
from gardien.i18n import translator
from gardien.register.durations import Period, parse_period
from gardien.register.schema import ARTICLE_6, FieldType, FormSpec, LegalBasis, Register

DUPLICATE_WINDOW = dt.timedelta(hours=24)
TOKEN_LIFETIME = dt.timedelta(days=1)


class Invalid(GardienError):
    """Per-field problems: 422 with the list (JSON) or the form shown again (HTML)."""

    code = "invalid_submission"
    status = 422

    def __init__(self, errors: list[validation.FieldError]) -> None:
        super().__init__(N_("Some fields need your attention."))
        self.errors = errors


class Rejected(GardienError):
    """Taken for abuse (honeypot filled, sent too fast, no valid form stamp): not stored."""

    code = "rejected"
    status = 400


def find_form(register: Register, form_id: str) -> FormSpec:
    for form in register.forms:
        if form.id == form_id:
            return form
    raise NotFound(N_("no form %(form)s"), form=form_id[:64])


def stamp(secret: bytes, form_id: str, now: dt.datetime) -> str:
    """The ``shown_at`` value handed out with a form: when, signed."""
    seconds = str(int(now.timestamp()))
    return f"{seconds}.{_sign(secret, form_id, seconds)}"


def _sign(secret: bytes, form_id: str, seconds: str) -> str:
    return hmac.new(secret, f"form:{form_id}:{seconds}".encode(), hashlib.sha256).hexdigest()[:32]


def _check_stamp(secret: bytes, form: FormSpec, value: object, now: dt.datetime) -> None:
    if not isinstance(value, str) or "." not in value:
        raise Rejected(N_("the form must be loaded before it is sent: reload the page"))
    seconds, _, signature = value.partition(".")
    # compare_digest refuses non-ASCII text (a TypeError, once a 500): compare bytes; and
    # "²".isdigit() is true, so digits must also be ASCII and of a timestamp's length.
    if not (seconds.isascii() and seconds.isdigit() and len(seconds) <= 12) or not (
        hmac.compare_digest(
            signature.encode(errors="replace"), _sign(secret, form.id, seconds).encode()
        )
    ):
        raise Rejected(N_("the form must be loaded before it is sent: reload the page"))
    shown = dt.datetime.fromtimestamp(int(seconds), dt.UTC)
    if now - shown < dt.timedelta(seconds=form.min_fill_seconds):
        raise Rejected(N_("the form was sent too fast: please check it and send it again"))
    if now - shown > TOKEN_LIFETIME:
        raise Rejected(N_("the form has expired: reload the page"))


def consent_text_hash(form: FormSpec, language: str) -> str | None:
    if not form.consent_text:
        return None
    text = form.consent_text.get(language) or next(iter(form.consent_text.values()))
    return hashlib.sha256(text.encode()).hexdigest()


def _duplicate_key(secret: bytes, form: FormSpec, values: Mapping[str, str]) -> str:
    canonical = json.dumps({"form": form.id, **values}, sort_keys=True, ensure_ascii=False)
    return hmac.new(secret, canonical.lower().encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Accepted:
    """A submission that passed every check, ready to be stored (``record``)."""

    form: FormSpec
    values: dict[str, str]
    """The clean values, as ``validation.check`` left them."""
    submission: dict[str, object]
    """The ``form_submission`` row; its personal columns are encrypted when it is inserted."""

    @property
    def public_id(self) -> str:
        return str(self.submission["public_id"])

    @property
    def delete_after(self) -> dt.datetime:
        value = self.submission["delete_after"]
        assert isinstance(value, dt.datetime)
        return value


@lru_cache(maxsize=64)
def _period(text: str) -> Period:
    return parse_period(text)


def accept(
    *,
    register: Register,
    form: FormSpec,
    raw: Mapping[str, object],
    language: str,
    secret: bytes,
    now: dt.datetime,
) -> Accepted:
    """Check one submission and prepare its row; touches no database.

    Raises ``Rejected`` (abuse) or ``Invalid`` (per-field problems)."""
    if str(raw.get(validation.HONEYPOT) or "").strip():
        raise Rejected(N_("this submission was refused"))
    _check_stamp(secret, form, raw.get(validation.SHOWN_AT), now)
    checked = validation.check(form, raw)
    if checked.errors:
        raise Invalid(checked.errors)
    activity = next(a for a in register.activities if a.id == form.activity)
    email_field = next((f.name for f in form.fields if f.type is FieldType.email), None)
    phone_field = next((f.name for f in form.fields if f.type is FieldType.phone), None)
    email = checked.values.get(email_field or "")
    phone = checked.values.get(phone_field or "")
    submission: dict[str, object] = {
        "public_id": uuid.uuid4().hex,
        "form_id": form.id,
        "activity": activity.id,
        "received_at": now,
        "delete_after": _period(activity.retention.period).after(now),
        "language": language,
        "fields": json.dumps(checked.values, ensure_ascii=False),
        "email_index": email_index(email) if email else None,
        "phone_index": phone_index(phone) if phone else None,
        "legal_basis": activity.legal_basis.basis.value,
        "consent_text_hash": consent_text_hash(form, language),
        "policy_version": None,  # filled in by ``record``
        "duplicate_key": _duplicate_key(secret, form, checked.values),
        "status": "new",
        "restricted": False,
    }
    return Accepted(form, checked.values, submission)


def record(
    connection: Connection,
    accepted: Accepted,
    *,
    policy_version: int | None,
    now: dt.datetime,
    base_url: str,
) -> int:
    """Store an accepted submission and queue its e-mails in the caller's transaction (never
    commits); returns the submission's id.

    Raises ``Conflict`` when the same submission was already received: nothing is stored."""
    submission = accepted.submission
    key = str(submission["duplicate_key"])
    if repository.already_received(connection, key, now - DUPLICATE_WINDOW):
        raise Conflict(N_("this message was already received"))
    submission_id = repository.insert_submission(
        connection, {**submission, "policy_version": policy_version}
    )
    repository.insert_outbox(
        connection,
        outbox_rows(
            submission_id=submission_id,
            form=accepted.form,
            values=accepted.values,
            restricted=bool(submission["restricted"]),
            now=now,
            base_url=base_url,
        ),
    )
    return submission_id


def notice(register: Register, form: FormSpec, language: str) -> dict[str, Any]:
    """The short Art. 13 notice shown next to the form, from the form's activity."""
    t = translator(language)
    default = register.languages.default
    activity = next(a for a in register.activities if a.id == form.activity)

    def tr(text: Mapping[str, str]) -> str:
        return text.get(language) or text[default]

    basis = activity.legal_basis.basis
    basis_text = {
        LegalBasis.consent: N_(
            "your consent (GDPR Art. 6(1)(a)), which you can withdraw at any time"
        ),
        LegalBasis.contract: N_(
            "steps taken at your request before a contract (GDPR Art. 6(1)(b))"
        ),
        LegalBasis.legitimate_interests: N_("our legitimate interests (GDPR Art. 6(1)(f))"),
        LegalBasis.legal_obligation: N_("a legal obligation (GDPR Art. 6(1)(c))"),
    }.get(basis)
    return {
        "controller": register.operator.legal_name,
        "purposes": [tr(p) for p in activity.purposes],
        "basis": t.gettext(basis_text) if basis_text else f"GDPR Art. {ARTICLE_6[basis]}",
        "recipients": [tr(r.name) for r in activity.recipients],
        "retention": tr(activity.retention.description),
        "policy_url": f"/privacy?lang={language}",
    }
