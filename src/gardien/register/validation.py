"""Rules a register must satisfy beyond its types, each reported against the exact field.

These encode the law the register is about: a consent-based activity needs a way to withdraw,
a cookie set without consent must be strictly necessary or exempt audience measurement
(CNIL: first-party, at most 13 months), a recipient outside the EEA needs a transfer entry,
an operator that promises no advertising cannot declare advertising anything.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from typing import Any

import holidays
from pydantic import BaseModel

from gardien.register.durations import DurationError, parse_period
from gardien.register.loader import Located, PathKey, Problem
from gardien.register.schema import (
    Channel,
    EmailContent,
    FieldType,
    LegalBasis,
    RecipientRole,
    Register,
    RetentionAction,
    Right,
)

SUPPORTED_LANGUAGES = ("en", "fr", "ro")
"""Languages Gardien's own templates are translated into (Babel catalogs)."""

EEA = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE "
    "IS LI NO".split()
)
AUDIENCE_MEASUREMENT = "audience_measurement"
CNIL_EXEMPT_MAX = "P13M"
ADVERTISING_WORDS = frozenset({"advertising", "marketing", "ads", "targeting", "retargeting"})
ADVERTISING_SIGNALS = frozenset({"ad_storage", "ad_user_data", "ad_personalization"})


def _texts(value: Any, path: PathKey) -> Iterator[tuple[PathKey, dict[str, str]]]:
    """Every translatable text under ``value`` (the schema's only mappings are texts)."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _texts(getattr(value, name), (*path, name))
    elif isinstance(value, dict):
        yield path, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _texts(item, (*path, index))


def _language_problems(register: Register, located: Located) -> Iterator[Problem]:
    languages = register.languages
    for index, code in enumerate(languages.available):
        if code not in SUPPORTED_LANGUAGES:
            yield located.problem(
                ("languages", "available", index),
                f"Gardien has no translation for {code!r} (supported: "
                f"{', '.join(SUPPORTED_LANGUAGES)})",
            )
    yield from _duplicates(languages.available, ("languages", "available"), located)
    if languages.default not in languages.available:
        yield located.problem(("languages", "default"), "the default language is not available")
    declared = set(languages.available)
    for path, text in _texts(register, ()):
        missing = [code for code in languages.available if code not in text]
        if missing:
            yield located.problem(path, f"missing translation: {', '.join(missing)}")
        for code, value in text.items():
            if code not in declared:
                yield located.problem((*path, code), f"language {code!r} is not declared")
            elif not isinstance(value, str) or not value.strip():
                yield located.problem((*path, code), "translation must be non-empty text")


def _duplicates(ids: Iterable[str], path: PathKey, located: Located) -> Iterator[Problem]:
    seen: set[str] = set()
    for index, ident in enumerate(ids):
        if ident in seen:
            yield located.problem((*path, index), f"duplicate id {ident!r}")
        seen.add(ident)


def _activity_problems(register: Register, located: Located) -> Iterator[Problem]:
    rights_channels = set(register.rights.channels)
    if register.consent_categories:
        rights_channels.add(Channel.cookie_panel)
    yield from _duplicates((a.id for a in register.activities), ("activities",), located)
    yield from _shared_recipient_problems(register, located)
    if register.hosting.location not in EEA:
        yield located.problem(
            ("hosting", "location"),
            "hosting outside the EEA is a transfer for every activity; Gardien requires EEA "
            "hosting",
        )
    for i, activity in enumerate(register.activities):
        here: PathKey = ("activities", i)
        retention = activity.retention
        try:
            parse_period(retention.period)
        except DurationError as exc:
            yield located.problem((*here, "retention", "period"), str(exc))
        if retention.action is RetentionAction.archive:
            yield located.problem(
                (*here, "retention", "action"),
                "archive is not available yet: Gardien has no separate archive store "
                "(use delete or anonymise)",
            )
        basis = activity.legal_basis
        if basis.basis is LegalBasis.legitimate_interests and basis.interest is None:
            yield located.problem(
                (*here, "legal_basis", "interest"),
                "legitimate interests require the interest pursued to be stated",
            )
        if basis.basis is LegalBasis.consent:
            if not activity.withdrawal:
                yield located.problem(
                    (*here, "withdrawal"),
                    "a consent-based activity needs a way to withdraw consent",
                )
            for j, channel in enumerate(activity.withdrawal):
                if channel not in rights_channels and channel is not Channel.form:
                    yield located.problem(
                        (*here, "withdrawal", j),
                        f"withdrawal channel {channel.value!r} is not offered (rights.channels)",
                    )
        if any(c.special_category for c in activity.data_categories) and not (
            basis.special_category_condition
        ):
            yield located.problem(
                (*here, "legal_basis", "special_category_condition"),
                "special-category data needs an Art. 9(2) condition",
            )
        yield from _duplicates(
            (c.id for c in activity.data_categories), (*here, "data_categories"), located
        )
        yield from _recipient_problems(register, activity_index=i, located=located)
        for h, hold in enumerate(activity.legal_holds):
            if not hold.reason.strip() or not hold.owner.strip():
                yield located.problem(
                    (*here, "legal_holds", h), "a legal hold needs a reason and an owner"
                )


def _shared_recipient_problems(register: Register, located: Located) -> Iterator[Problem]:
    """A recipient id used by several activities must mean the same recipient everywhere."""
    first: dict[str, Any] = {}
    for i, activity in enumerate(register.activities):
        for j, recipient in enumerate(activity.recipients):
            seen = first.setdefault(recipient.id, recipient)
            if seen != recipient:
                yield located.problem(
                    ("activities", i, "recipients", j),
                    f"recipient {recipient.id!r} is declared differently in another activity",
                )


def _recipient_problems(
    register: Register, activity_index: int, located: Located
) -> Iterator[Problem]:
    activity = register.activities[activity_index]
    here: PathKey = ("activities", activity_index)
    yield from _duplicates((r.id for r in activity.recipients), (*here, "recipients"), located)
    by_id = {r.id: r for r in activity.recipients}
    transferred = {(t.recipient, t.country) for t in activity.transfers}
    for j, recipient in enumerate(activity.recipients):
        path: PathKey = (*here, "recipients", j)
        if recipient.location is None:
            yield located.problem((*path, "location"), "every recipient needs a location")
        elif (
            recipient.location not in EEA and (recipient.id, recipient.location) not in transferred
        ):
            yield located.problem(
                (*path, "location"),
                f"recipient {recipient.id!r} is outside the EEA ({recipient.location}) "
                "but no transfers entry covers it",
            )
        if register.operator.no_advertising and (
            recipient.role is RecipientRole.advertising or recipient.id in ADVERTISING_WORDS
        ):
            yield located.problem(
                (*path, "role"),
                "the operator declares no_advertising, so no advertising recipient is allowed",
            )
    for j, transfer in enumerate(activity.transfers):
        if transfer.recipient not in by_id:
            yield located.problem(
                (*here, "transfers", j, "recipient"),
                f"unknown recipient {transfer.recipient!r}",
            )
        if transfer.country in EEA:
            yield located.problem(
                (*here, "transfers", j, "country"),
                f"{transfer.country} is in the EEA: this is not a transfer (remove the entry)",
            )


def _cookie_problems(register: Register, located: Located) -> Iterator[Problem]:
    categories = {c.id: c for c in register.consent_categories}
    activities = {a.id for a in register.activities}
    yield from _duplicates((c.name for c in register.cookies), ("cookies",), located)
    exempt_max = parse_period(CNIL_EXEMPT_MAX)
    lifetime = None
    if register.consent is not None:
        try:
            lifetime = parse_period(register.consent.lifetime)
        except DurationError:
            pass  # reported by _consent_problems
    for i, cookie in enumerate(register.cookies):
        here: PathKey = ("cookies", i)
        category = categories.get(cookie.category)
        if category is None:
            yield located.problem(
                (*here, "category"), f"unknown consent category {cookie.category!r}"
            )
        if cookie.activity is not None and cookie.activity not in activities:
            yield located.problem((*here, "activity"), f"unknown activity {cookie.activity!r}")
        period = None
        if cookie.duration != "session":
            try:
                period = parse_period(cookie.duration)
            except DurationError as exc:
                yield located.problem((*here, "duration"), f"{exc} (or 'session')")
        if register.operator.no_advertising and (
            cookie.category in ADVERTISING_WORDS or (category is not None and category.advertising)
        ):
            yield located.problem(
                (*here, "category"),
                "the operator declares no_advertising, so no advertising cookie is allowed",
            )
        if cookie.consent_required and period is not None and lifetime is not None:
            if not period.at_most(lifetime):
                yield located.problem(
                    (*here, "duration"),
                    f"a cookie set with consent cannot outlive the consent "
                    f"(consent.lifetime is {lifetime.text})",
                )
        if cookie.consent_required or category is None:
            continue
        if category.strictly_necessary:
            continue
        if cookie.category == AUDIENCE_MEASUREMENT:
            if cookie.party.value != "first":
                yield located.problem(
                    (*here, "consent_required"),
                    "audience measurement without consent must be first-party (CNIL exemption)",
                )
            elif period is not None and not period.at_most(exempt_max):
                yield located.problem(
                    (*here, "consent_required"),
                    "audience measurement without consent may last at most 13 months "
                    "(CNIL exemption)",
                )
            continue
        yield located.problem(
            (*here, "consent_required"),
            "a cookie set without consent must be strictly necessary or exempt audience "
            "measurement",
        )


def _consent_problems(register: Register, located: Located) -> Iterator[Problem]:
    yield from _duplicates(
        (c.id for c in register.consent_categories), ("consent_categories",), located
    )
    for i, category in enumerate(register.consent_categories):
        if not register.operator.no_advertising:
            continue
        bad_signals = sorted(ADVERTISING_SIGNALS.intersection(category.signals))
        if category.advertising or category.id in ADVERTISING_WORDS or bad_signals:
            detail = f" (signals {', '.join(bad_signals)})" if bad_signals else ""
            yield located.problem(
                ("consent_categories", i),
                f"the operator declares no_advertising, so no advertising category or "
                f"signal is allowed{detail}",
            )
    if register.consent is not None:
        try:
            parse_period(register.consent.lifetime)
        except DurationError as exc:
            yield located.problem(("consent", "lifetime"), str(exc))
    elif any(c.consent_required for c in register.cookies):
        yield located.problem(
            ("consent",), "cookies require consent, so consent.lifetime must be declared"
        )


def _rights_problems(register: Register, located: Located) -> Iterator[Problem]:
    offered = set(register.rights.offered)
    uses_consent = any(a.legal_basis.basis is LegalBasis.consent for a in register.activities)
    if uses_consent and Right.withdraw_consent not in offered:
        yield located.problem(
            ("rights", "offered"), "consent-based activities require the withdraw_consent right"
        )
    if Right.complaint not in offered:
        yield located.problem(
            ("rights", "offered"), "the right to lodge a complaint (Art. 77) must be offered"
        )
    for path, value in (
        (("operator", "contact_email"), register.operator.contact_email),
        (("operator", "dpo", "email"), register.operator.dpo.email),
        (("rights", "email"), register.rights.email),
        (("supervisory_authority", "email"), register.supervisory_authority.email),
    ):
        local, _, domain = value.partition("@")
        if not local or "." not in domain:
            yield located.problem(path, "not an e-mail address")
    yield from _holidays_country_problems(register.rights.holidays_country, located)


def _holidays_country_problems(code: str, located: Located) -> Iterator[Problem]:
    """The deadline's working-day roll-forward (Reg. 1182/71 Art. 3(4)) needs the country's
    public holidays: the code must name a calendar of the holidays library, by its ISO code."""
    path: PathKey = ("rights", "holidays_country")
    try:
        calendar = holidays.country_holidays(code)
    except NotImplementedError:
        yield located.problem(
            path,
            f"no public-holiday calendar for {code!r}: give the ISO 3166-1 alpha-2 code of a "
            "country the holidays library supports (e.g. RO, FR, DE)",
        )
        return
    if calendar.country != code:
        yield located.problem(
            path, f"{code!r} is not an ISO 3166-1 alpha-2 code: write {calendar.country!r}"
        )


RESERVED_FORM_FIELDS = frozenset({"consent", "website", "shown_at", "lang", "csrf"})
"""Names the form machinery itself uses (consent box, honeypot, fill-time stamp)."""


def _form_problems(register: Register, located: Located) -> Iterator[Problem]:
    yield from _duplicates((f.id for f in register.forms), ("forms",), located)
    activities = {a.id: a for a in register.activities}
    for i, form in enumerate(register.forms):
        path: PathKey = ("forms", i)
        yield from _duplicates((f.name for f in form.fields), (*path, "fields"), located)
        activity = activities.get(form.activity)
        if activity is None:
            yield located.problem((*path, "activity"), f"no activity {form.activity!r}")
            continue
        declared = {name for c in activity.data_categories for name in c.fields}
        for j, field in enumerate(form.fields):
            where = (*path, "fields", j)
            if field.name in RESERVED_FORM_FIELDS:
                yield located.problem((*where, "name"), f"{field.name!r} is reserved")
            elif field.name not in declared:
                yield located.problem(
                    (*where, "name"),
                    f"{field.name!r} is not among activities[{form.activity}].data_categories "
                    "fields: the policy would not mention it",
                )
            if field.type is FieldType.choice and not field.options:
                yield located.problem((*where, "options"), "a choice field needs options")
            if field.type is not FieldType.choice and field.options:
                yield located.problem((*where, "options"), "only choice fields have options")
        phones = [f for f in form.fields if f.type is FieldType.phone]
        if phones and not any(f.type is FieldType.country for f in form.fields):
            yield located.problem(
                (*path, "fields"), "a phone field needs a country field to read numbers by"
            )
        consent = activity.legal_basis.basis is LegalBasis.consent
        if consent and not form.consent_text:
            yield located.problem(
                (*path, "consent_text"),
                f"activities[{form.activity}] rests on consent: the form needs a consent "
                "checkbox text naming the purpose",
            )
        if not consent and form.consent_text:
            yield located.problem(
                (*path, "consent_text"),
                f"activities[{form.activity}] does not rest on consent: a consent checkbox "
                "would mislead",
            )
        if form.email_content is EmailContent.full and not form.mailbox_retention:
            yield located.problem(
                (*path, "mailbox_retention"),
                "e-mails carrying the submission keep personal data in the mailbox: state "
                "how long (mailbox_retention), so the policy says it",
            )
        if form.mailbox_retention:
            try:
                parse_period(form.mailbox_retention)
            except DurationError as exc:
                yield located.problem((*path, "mailbox_retention"), str(exc))
        for k, address in enumerate(form.notify):
            local, _, domain = address.partition("@")
            if not local or "." not in domain:
                yield located.problem((*path, "notify", k), "not an e-mail address")


_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def valid_hostname(host: str) -> bool:
    """A DNS name (lower case, dots between labels) or an IP address, without port or scheme."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    if not host or len(host) > 253 or host != host.lower():
        return False
    return all(_HOST_LABEL.match(label) for label in host.split("."))


def _site_problems(register: Register, located: Located) -> Iterator[Problem]:
    yield from _duplicates((str(s.id) for s in register.sites), ("sites",), located)
    activities = {a.id for a in register.activities}
    for i, site in enumerate(register.sites):
        path: PathKey = ("sites", i)
        if site.activity not in activities:
            yield located.problem((*path, "activity"), f"no activity {site.activity!r}")
        seen: set[str] = set()
        for j, host in enumerate(site.hostnames):
            if not valid_hostname(host):
                yield located.problem(
                    (*path, "hostnames", j),
                    "not a host name (lower-case name or IP address, no scheme or port)",
                )
            elif host in seen:
                yield located.problem((*path, "hostnames", j), f"duplicate host {host!r}")
            seen.add(host)


def rule_problems(register: Register, located: Located) -> Iterator[Problem]:
    """Every rule violation in ``register``; the caller reports them all at once."""
    yield from _language_problems(register, located)
    yield from _activity_problems(register, located)
    yield from _cookie_problems(register, located)
    yield from _consent_problems(register, located)
    yield from _rights_problems(register, located)
    yield from _form_problems(register, located)
    yield from _site_problems(register, located)
