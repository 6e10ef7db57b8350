"""Checking a submission field by field, with well-kept libraries for what is hard to get right:
e-mail syntax (email-validator, no network), phone numbers per country (phonenumbers, stored in
E.164), countries (pycountry, ISO 3166-1 alpha-2).

Errors name the field and the reason, never the value (it is personal data). Their messages are
``N_``-marked templates, translated where they are shown.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email

from gardien.errors import N_, localise
from gardien.register.schema import FieldType, FormField, FormSpec

CONSENT = "consent"
HONEYPOT = "website"
SHOWN_AT = "shown_at"
TRUE_VALUES = frozenset({"on", "true", "1", "yes"})
_NAME = re.compile(r"^[\w\s'’.\-]+$")
"""Letters (any script), spaces, apostrophes, dots and hyphens; digits are refused below."""

MESSAGES = {
    "required": N_("This field is required."),
    "too_long": N_("At most %(limit)s characters."),
    "characters": N_("This field contains characters that are not allowed."),
    "name": N_("Use letters, spaces, apostrophes and hyphens only."),
    "email": N_("Enter a valid e-mail address, such as name@example.org."),
    "phone": N_("Enter a valid phone number for the country you chose, such as +33 1 23 45 67 89."),
    "phone_country": N_("Choose your country so that your phone number can be read."),
    "country": N_("Choose a country from the list."),
    "choice": N_("Choose one of the options."),
    "consent": N_("Tick the box to agree, or we cannot answer your request."),
    "unknown": N_("This field is not part of the form."),
}


@dataclass(frozen=True)
class FieldError:
    field: str
    code: str
    params: Mapping[str, str | int] = dataclasses.field(default_factory=dict)

    def text(self, language: str) -> str:
        return localise(MESSAGES[self.code], dict(self.params), language)


@dataclass
class Checked:
    values: dict[str, str]
    """Clean values of the filled fields (e-mail normalised, phone in E.164, country code)."""
    errors: list[FieldError]
    consented: bool


def _control_free(value: str, multiline: bool) -> bool:
    # Printable text has no character of any "Other" or "Separator" category but the space (a
    # superset of the refused ones): most values are settled by that one C-level test.
    plain = value.replace("\n", "").replace("\t", "").replace("\r", "") if multiline else value
    if plain.isprintable():
        return True
    allowed = {"\n", "\t", "\r"} if multiline else set()
    return not any(
        unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cs") and c not in allowed
        for c in value
    )


def _country(value: str) -> str | None:
    code = value.strip().upper()
    if len(code) != 2 or not code.isalpha():
        return None
    return code if pycountry.countries.get(alpha_2=code) is not None else None


def _check_field(spec: FormField, value: str, country: str | None) -> tuple[str, FieldError | None]:
    """The clean value, or an error."""
    multiline = spec.type is FieldType.textarea
    value = value.replace("\r\n", "\n").strip() if multiline else value.strip()
    if len(value) > spec.max_length:
        return value, FieldError(spec.name, "too_long", {"limit": spec.max_length})
    if not _control_free(value, multiline):
        return value, FieldError(spec.name, "characters")
    if spec.type is FieldType.email:
        try:
            checked = validate_email(value, check_deliverability=False)
        except EmailNotValidError:
            return value, FieldError(spec.name, "email")
        return checked.normalized, None
    if spec.type is FieldType.phone:
        if country is None:
            return value, FieldError(spec.name, "phone_country")
        try:
            number = phonenumbers.parse(value, country)
        except phonenumbers.NumberParseException:
            return value, FieldError(spec.name, "phone")
        if not phonenumbers.is_valid_number(number):
            return value, FieldError(spec.name, "phone")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None
    if spec.type is FieldType.country:
        code = _country(value)
        return (code, None) if code else (value, FieldError(spec.name, "country"))
    if spec.type is FieldType.choice:
        if value not in {option.value for option in spec.options}:
            return value, FieldError(spec.name, "choice")
        return value, None
    if spec.name.endswith("name") and (not _NAME.match(value) or any(c.isdigit() for c in value)):
        return value, FieldError(spec.name, "name")
    return value, None


def check(form: FormSpec, raw: Mapping[str, object]) -> Checked:
    """Every field of ``form`` in ``raw`` (a parsed form or JSON body); unknown keys refused."""
    errors: list[FieldError] = []
    known = {f.name for f in form.fields} | {CONSENT, HONEYPOT, SHOWN_AT, "lang"}
    for name in sorted(set(raw) - known):
        errors.append(FieldError(name[:64], "unknown"))
    texts = {key: value for key, value in raw.items() if isinstance(value, str)}
    for name in raw:
        if name in known and name != CONSENT and not isinstance(raw[name], str | None):
            errors.append(FieldError(name, "characters"))
    country_spec = next((f for f in form.fields if f.type is FieldType.country), None)
    country = _country(texts.get(country_spec.name, "")) if country_spec else None
    values: dict[str, str] = {}
    for spec in form.fields:
        value = texts.get(spec.name, "")
        if not value.strip():
            if spec.required:
                errors.append(FieldError(spec.name, "required"))
            continue
        clean, error = _check_field(spec, value, country)
        if error is not None:
            errors.append(error)
        else:
            values[spec.name] = clean
    consent = raw.get(CONSENT)
    consented = consent is True or (isinstance(consent, str) and consent.lower() in TRUE_VALUES)
    if form.consent_text and not consented:
        errors.append(FieldError(CONSENT, "consent"))
    return Checked(values, errors, consented)


def check_field(spec: FormField, value: str, country: str | None) -> tuple[str, FieldError | None]:
    """One field's clean value or its error (a rectification checks a corrected value as the
    form checked the original)."""
    return _check_field(spec, value, country)
