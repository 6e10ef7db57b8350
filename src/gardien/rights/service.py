"""Fulfilling a verified data-subject request: open the case, then access, portability or
erasure across every registered provider, each step written to the case's timeline.

``rights`` reaches the other domains only through the provider protocol
(``storage.subjects``) and the register: what a person is told about each activity that
holds data about them (Art. 15(1)(a)-(h) and 15(2)) is read from the register, joined with
what the providers found. Functions flush, never commit: the caller owns the transaction,
and opens the case in a transaction of its own so a failed fulfilment leaves it visible.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import html
import io
import ipaddress
import json
import re
import secrets
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from gardien.backup import journal
from gardien.errors import N_, Conflict
from gardien.register.schema import ARTICLE_6, Activity, LegalBasis, Register, Text
from gardien.rights.deadlines import due_date, local_day
from gardien.rights.models import RightsCase, RightsEvent
from gardien.rights.provider import normalised_consent_id
from gardien.security.audit import Actor, record
from gardien.security.crypto import BlindIndex, blind_index
from gardien.storage import restriction as restrictions
from gardien.storage.subjects import (
    ErasureOutcome,
    FoundRecords,
    JsonScalar,
    ProviderRegistry,
    SubjectIdentity,
    SubjectProvider,
)

CHANNELS = frozenset({"portal", "email", "post", "other", "cli", "browser"})
RIGHTS = frozenset(
    {
        "access",
        "portability",
        "erasure",
        "rectification",
        "restriction",
        "objection",
        "withdraw_consent",
        "post_mortem",
    }
)
PORTABLE_BASES = frozenset({LegalBasis.consent, LegalBasis.contract})
"""Art. 20(1)(a): portability applies to processing based on consent or on a contract."""

Rows = list[dict[str, JsonScalar]]


class RightsError(Exception):
    """A request that cannot be fulfilled as asked; the message holds no personal value."""


@dataclass(frozen=True, slots=True)
class Desk:
    """What fulfilling a request needs from the running Gardien."""

    register: Register
    providers: ProviderRegistry
    base_url: str = "http://127.0.0.1:8000"
    """Where the acknowledgement links of recipients' notifications point (``settings``)."""


# -- cases --------------------------------------------------------------------------------------


def new_reference(received: dt.datetime) -> str:
    """A public case reference: the year and eight random hex digits (not guessable)."""
    return f"GR-{received:%Y}-{secrets.token_hex(4).upper()}"


def identifier_names(subject: SubjectIdentity) -> list[str]:
    names = ("email", "phone", "consent_id", "visitor_id", "ip_address")
    return [name for name in names if getattr(subject, name)]


def open_case(
    session: Session,
    desk: Desk,
    subject: SubjectIdentity,
    rights: Sequence[str],
    *,
    channel: str,
    now: dt.datetime,
    actor: Actor,
    language: str | None = None,
    received: dt.datetime | None = None,
) -> RightsCase:
    """Open a case for a request received ``received`` (default ``now``; a letter recorded
    later was received earlier): legal due date counted from it with the register's holidays
    country, identifiers stored encrypted, an audit entry, a first event."""
    unknown = sorted(set(rights) - RIGHTS)
    if unknown or not rights:
        raise RightsError(f"rights requested must be among {', '.join(sorted(RIGHTS))}")
    if channel not in CHANNELS:
        raise RightsError(f"channel must be one of {', '.join(sorted(CHANNELS))}")
    languages = desk.register.languages
    language = language if language in languages.available else languages.default
    ip = str(ipaddress.ip_address(subject.ip_address)) if subject.ip_address else None
    consent_id = normalised_consent_id(subject.consent_id) if subject.consent_id else None
    case = RightsCase(
        reference=new_reference(now),
        rights=",".join(sorted(set(rights))),
        channel=channel,
        status="open",
        language=language,
        received_at=received or now,
        due_at=due_date(
            local_day(received or now, desk.register.rights.time_zone),
            desk.register.rights.holidays_country,
        ),
        email=subject.email,
        email_index=_index(subject.email, "email_index"),
        phone=subject.phone,
        phone_index=_index(subject.phone, "phone_index"),
        consent_id=consent_id,
        consent_id_index=_index(consent_id, "consent_id_index"),
        visitor_id=subject.visitor_id,
        visitor_id_index=_index(subject.visitor_id, "visitor_id_index"),
        ip_address=ip,
        ip_index=_index(ip, "ip_index"),
        period_start=subject.period[0] if subject.period else None,
        period_end=subject.period[1] if subject.period else None,
    )
    session.add(case)
    session.flush()
    add_event(
        session,
        case,
        now,
        actor,
        "opened",
        f"rights: {case.rights}; channel: {channel}; identified by: "
        f"{', '.join(identifier_names(subject))}; due {case.due_at.isoformat()}",
    )
    record(
        session,
        actor,
        "rights.case_open",
        now,
        target_type="rights_case",
        target_id=case.reference,
        reason=case.rights,
    )
    return case


def _index(value: str | None, column: str) -> str | None:
    """The blind index of ``value`` for a column of the case, as its type declares it."""
    if not value:
        return None
    kind = RightsCase.__table__.c[column].type
    assert isinstance(kind, BlindIndex)
    return blind_index(value, kind.context, kind.normaliser)


def subject_of(case: RightsCase) -> SubjectIdentity:
    """The identity a case was opened for, decrypted from the case file."""
    period = (
        (case.period_start, case.period_end)
        if case.period_start is not None and case.period_end is not None
        else None
    )
    return SubjectIdentity(
        email=case.email,
        phone=case.phone,
        consent_id=case.consent_id,
        visitor_id=case.visitor_id,
        ip_address=case.ip_address,
        period=period,
    )


def add_event(
    session: Session,
    case: RightsCase,
    at: dt.datetime,
    actor: Actor,
    kind: str,
    detail: str | None = None,
) -> RightsEvent:
    event = RightsEvent(case_id=case.id, at=at, actor=actor.id, kind=kind, detail=detail)
    session.add(event)
    session.flush()
    return event


def timeline(session: Session, case: RightsCase) -> list[RightsEvent]:
    return list(
        session.scalars(
            select(RightsEvent).where(RightsEvent.case_id == case.id).order_by(RightsEvent.id)
        )
    )


FREEZE_LIFTED = "freeze_lifted"
"""The timeline event of the end of a deceased person's freeze (``restrictions.DECEASED``)."""


def lift_freeze(
    session: Session, case: RightsCase, now: dt.datetime, actor: Actor, why: str
) -> int:
    """Lift the freeze ``case`` placed on a deceased person's identifiers, once the case is
    settled (directive executed, or case closed): retention may then purge as usual."""
    lifted = restrictions.lift(session, case.id, restrictions.DECEASED, now)
    if lifted:
        add_event(session, case, now, actor, FREEZE_LIFTED, f"{lifted} identifier(s): {why}")
    return lifted


def refuse_if_frozen(session: Session, case: RightsCase, subject: SubjectIdentity) -> None:
    """Refuse (409, with the reason) an operation on the identifiers of a person whose death
    was notified in another case, until that case is settled: only the directive's
    execution, or the heirs' limited rights, may proceed meanwhile (legal-requirements
    §2.9.6)."""
    holders = [
        held
        for held in restrictions.frozen_by(session, subject, restrictions.DECEASED)
        if held != case.id
    ]
    if holders:
        holder = session.get(RightsCase, holders[0])
        raise Conflict(
            N_(
                "the death of this person was notified in case %(reference)s: their data are "
                "frozen until the post-mortem directive (or the heirs' request) is settled there"
            ),
            reference=holder.reference if holder is not None else "?",
        )


def close_case(
    session: Session, case: RightsCase, now: dt.datetime, actor: Actor, outcome: str
) -> None:
    case.status = "closed"
    case.closed_at = now
    case.outcome = outcome
    lift_freeze(session, case, now, actor, "case closed")
    add_event(session, case, now, actor, "closed", f"outcome: {outcome}")


# -- access and portability ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreFailure:
    store: str
    error: str
    """The exception's class name only: a message may quote personal values."""


@dataclass(slots=True)
class AccessPackage:
    """The ZIP answering an access (and portability) request, and what went into it."""

    content: bytes
    found: dict[str, FoundRecords]
    failures: list[StoreFailure] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def _pick(text: Text | None, language: str) -> str:
    if not text:
        return ""
    return text.get(language) or text.get("en") or next(iter(text.values()), "")


def _activities(register: Register) -> dict[str, Activity]:
    return {activity.id: activity for activity in register.activities}


SENT_TO = re.compile(r"\s*(?P<recipient>.+?) \((?P<day>\d{4}-\d{2}-\d{2})\)\s*")


def actual_recipients(rows: Rows) -> list[dict[str, str]]:
    """The recipients a store's export says the person's data was sent to (its ``sent_to``
    column, e.g. the forms' disclosure log): the actual recipients Art. 15(1)(c) asks for."""
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        sent = row.get("sent_to")
        if not isinstance(sent, str) or not sent:
            continue
        for part in sent.split(", "):
            match = SENT_TO.fullmatch(part)
            if match:
                key = (match["recipient"], match["day"])
                seen.setdefault(key, {"recipient": key[0], "date": key[1]})
    return list(seen.values())


def activity_information(
    register: Register,
    activity: Activity,
    language: str,
    disclosures: list[dict[str, str]],
) -> dict[str, Any]:
    """Art. 15(1)(a)-(h) and 15(2) for one activity that holds data about the person."""
    authority = register.supervisory_authority
    basis = activity.legal_basis.basis
    return {
        "activity": activity.id,
        "name": _pick(activity.name, language),
        "purposes": [_pick(p, language) for p in activity.purposes],
        "legal_basis": f"{basis.value} (Art. {ARTICLE_6[basis]})",
        "categories": [_pick(c.name, language) for c in activity.data_categories],
        "recipients": [
            {"name": _pick(r.name, language), "role": r.role.value, "location": r.location}
            for r in activity.recipients
        ],
        "actual_recipients": disclosures,
        "transfers": [
            {
                "recipient": t.recipient,
                "country": t.country,
                "safeguard": _pick(t.safeguard, language),
            }
            for t in activity.transfers
        ],
        "retention": {
            "period": activity.retention.period,
            "counted_from": activity.retention.trigger.value,
            "description": _pick(activity.retention.description, language),
        },
        "source": _pick(activity.source, language),
        "rights": [right.value for right in register.rights.offered],
        "complaint": {
            "authority": _pick(authority.name, language),
            "address": ", ".join(
                part
                for part in (
                    authority.address.street,
                    authority.address.postcode,
                    authority.address.city,
                    authority.address.country,
                )
                if part
            ),
            "email": authority.email,
            "website": authority.website,
            "complaint_url": authority.complaint_url,
            "note": _pick(authority.note, language),
        },
        "automated_decisions": activity.automated_decisions,
    }


def _columns(rows: Rows) -> list[str]:
    """Every column of ``rows`` in first-seen order (a store's rows may differ in keys)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _csv(rows: Rows) -> str:
    columns = _columns(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def export_package(
    session: Session,
    desk: Desk,
    case: RightsCase,
    subject: SubjectIdentity,
    *,
    now: dt.datetime,
    actor: Actor,
) -> AccessPackage:
    """Assemble the access package from every provider: ``index.html`` (human-readable),
    ``data.json`` and one CSV per store and activity, the Art. 15 information per activity
    that holds data about the person, and, if portability was asked, ``portability/``.

    A provider that fails is named in the timeline; the case then stays open and the package
    is not complete (``failures``). Refused (409) while the person's data are frozen after a
    death notified in another case (``refuse_if_frozen``)."""
    refuse_if_frozen(session, case, subject)
    found: dict[str, FoundRecords] = {}
    exported: dict[str, dict[str, Rows]] = {}
    failures: list[StoreFailure] = []
    for provider in desk.providers.providers:
        try:
            with session.begin_nested():
                found[provider.name] = provider.find(session, subject)
                exported[provider.name] = provider.export(session, subject)
        except Exception as exc:  # noqa: BLE001 - one failing store must not hide the rest
            failures.append(StoreFailure(provider.name, type(exc).__name__))
            add_event(
                session, case, now, actor, "export_failed", f"{provider.name}: {type(exc).__name__}"
            )
            continue
        add_event(
            session,
            case,
            now,
            actor,
            "found",
            f"{provider.name}: {found[provider.name].total} record(s)",
        )
    activities = _activities(desk.register)
    language = case.language
    information: list[dict[str, Any]] = []
    portable: dict[str, dict[str, Rows]] = {}
    for store, by_activity in exported.items():
        for activity_id, rows in by_activity.items():
            activity = activities.get(activity_id)
            if not rows or activity is None:
                continue
            information.append(
                activity_information(desk.register, activity, language, actual_recipients(rows))
            )
            if activity.legal_basis.basis in PORTABLE_BASES:
                portable.setdefault(store, {})[activity_id] = rows
    document: dict[str, Any] = {
        "case": case.reference,
        "generated_at": now.isoformat(),
        "controller": {
            "name": desk.register.operator.legal_name,
            "contact": desk.register.operator.contact_email,
            "dpo": desk.register.operator.dpo.email,
        },
        "stores": {
            store: {
                "found": dict(found[store].counts),
                "note": found[store].note,
                "records": exported[store],
            }
            for store in exported
        },
        "information": information,
        "incomplete": [failure.store for failure in failures],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("index.html", render_html(desk.register, case, document, now))
        archive.writestr("data.json", json.dumps(document, ensure_ascii=False, indent=2))
        for store, by_activity in exported.items():
            for activity_id, rows in by_activity.items():
                if rows:
                    archive.writestr(f"csv/{store}/{activity_id}.csv", _csv(rows))
        if "portability" in case.rights.split(","):
            archive.writestr(
                "portability/data.json",
                json.dumps(
                    {
                        "case": case.reference,
                        "generated_at": now.isoformat(),
                        "time_zone": "UTC",
                        "scope": "data you provided or that was observed, for activities "
                        "based on consent or a contract (GDPR Art. 20)",
                        "stores": portable,
                    },
                    ensure_ascii=False,
                    indent=2,
                ),
            )
            for store, by_activity in portable.items():
                for activity_id, rows in by_activity.items():
                    archive.writestr(f"portability/{store}/{activity_id}.csv", _csv(rows))
    package = AccessPackage(buffer.getvalue(), found, failures)
    add_event(
        session,
        case,
        now,
        actor,
        "package_built" if not failures else "package_incomplete",
        f"{len(package.content)} bytes, sha256 {package.sha256}; "
        f"{sum(f.total for f in found.values())} record(s) from {len(found)} store(s)",
    )
    record(
        session,
        actor,
        "rights.export",
        now,
        target_type="rights_case",
        target_id=case.reference,
        outcome="ok" if not failures else "failed",
    )
    return package


def _table(rows: Rows) -> str:
    columns = _columns(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape('' if row.get(c) is None else str(row.get(c)))}</td>"
            for c in columns
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _list(items: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def render_html(
    register: Register, case: RightsCase, document: Mapping[str, Any], now: dt.datetime
) -> str:
    """The human-readable page of the package. Its headings are in English; what the register
    says is given in the case's language."""
    e = html.escape
    parts = [
        "<!doctype html>",
        f'<html lang="{e(case.language)}"><head><meta charset="utf-8">',
        f"<title>Your personal data: {e(case.reference)}</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #999;"
        "padding:.2em .4em;text-align:left;vertical-align:top}</style></head><body>",
        f"<h1>Your personal data held by {e(register.operator.legal_name)}</h1>",
        f"<p>Case {e(case.reference)}, received "
        f"{e(local_day(case.received_at, register.rights.time_zone).isoformat())}, "
        f"answered {e(local_day(now, register.rights.time_zone).isoformat())}. The same data "
        "are in <code>data.json</code> and in the CSV files of this archive.</p>",
    ]
    stores: Mapping[str, Any] = document["stores"]
    total = sum(sum(s["found"].values()) for s in stores.values())
    parts.append(
        f"<p>We hold {total} record(s) about you.</p>"
        if total
        else "<p>We hold no personal data about you under the identifiers you gave.</p>"
    )
    for info in document["information"]:
        parts += [
            f"<h2>{e(info['name'])}</h2>",
            "<h3>Why (purposes)</h3>",
            _list(info["purposes"]),
            f"<p>Legal basis: {e(info['legal_basis'])}</p>",
            "<h3>Categories of data</h3>",
            _list(info["categories"]),
            "<h3>Recipients</h3>",
            _list(f"{r['name']} ({r['role']}, {r['location'] or '?'})" for r in info["recipients"]),
        ]
        if info["actual_recipients"]:
            parts += [
                "<p>Your data were actually sent to:</p>",
                _list(f"{r['recipient']} on {r['date']}" for r in info["actual_recipients"]),
            ]
        if info["transfers"]:
            parts += [
                "<h3>Transfers outside the EU</h3>",
                _list(
                    f"{t['recipient']} ({t['country']}): {t['safeguard']}"
                    for t in info["transfers"]
                ),
            ]
        parts += [
            "<h3>How long</h3>",
            f"<p>{e(info['retention']['description'])}</p>",
            "<h3>Where the data come from</h3>",
            f"<p>{e(info['source'])}</p>",
            "<p>Automated decision-making or profiling: "
            f"{'yes' if info['automated_decisions'] else 'none'}.</p>",
        ]
    for store, content in stores.items():
        for activity_id, rows in content["records"].items():
            if rows:
                parts += [f"<h2>Records: {e(store)} / {e(activity_id)}</h2>", _table(rows)]
        if content["note"]:
            parts.append(f"<p>{e(store)}: {e(content['note'])}</p>")
    authority = register.supervisory_authority
    rights = ", ".join(r.value.replace("_", " ") for r in register.rights.offered)
    parts += [
        "<h2>Your rights</h2>",
        f"<p>You may ask for: {e(rights)}. Write to {e(register.rights.email)}.</p>",
        "<h2>Complaint</h2>",
        f"<p>You may lodge a complaint with {e(_pick(authority.name, case.language))} "
        f"({e(authority.short_name)}), {e(authority.email)}, "
        f'<a href="{e(authority.complaint_url)}">{e(authority.complaint_url)}</a>.</p>',
        f"<p>{e(_pick(authority.note, case.language))}</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


# -- erasure ------------------------------------------------------------------------------------


def _chained(provider: SubjectProvider) -> bool:
    """Whether the provider's tables are hash-chained logs, which erase into tombstones."""
    tables = RightsCase.metadata.tables  # the one metadata every model shares
    return any(name in tables and "prev_hash" in tables[name].c for name in provider.tables)


TOMBSTONE = (
    "a tombstone (sequence number, time and hash, no identifier or content) is kept so the "
    "hash chain still verifies (minimal proof, Art. 7(1) and 5(2))"
)


def _hold(activity: Activity | None, now: dt.datetime, time_zone: str) -> str | None:
    """Why the activity's data are kept despite the erasure: a legal hold still in force on
    the controller's clock (one expiring today holds until that day ends there)."""
    if activity is None:
        return None
    today = local_day(now, time_zone)
    for hold in activity.legal_holds:
        if hold.expires >= today:
            return (
                f"legal hold until {hold.expires.isoformat()}: {hold.reason} "
                "(Art. 17(3)(e), legal claims)"
            )
    return None


def erase(
    session: Session,
    desk: Desk,
    case: RightsCase,
    subject: SubjectIdentity,
    *,
    now: dt.datetime,
    actor: Actor,
    notify_person: bool = True,
) -> dict[str, Any]:
    """Erase the person from every provider, each in its own savepoint (all or nothing per
    store), then re-query every provider. The receipt (store names, counts and reasons, no
    personal value) is stored in the case and returned, and, once complete, sent to the
    person (``notify.outcome``). A failing store leaves the case open with the failure in its
    timeline; the others are still erased. Refused (409) while the person's data are frozen
    after a death notified in another case (``refuse_if_frozen``)."""
    refuse_if_frozen(session, case, subject)
    activities = _activities(desk.register)
    stores: list[dict[str, Any]] = []
    failures: list[StoreFailure] = []
    # Journalled first (blind indexes only, outside the database): a restored backup taken
    # before now must erase the person again; an erasure the journal missed could come back.
    journal.note(journal.ERASURE, subject, now, case.reference, session=session)
    if session.get_bind().dialect.name == "sqlite":
        # Deleted cells are overwritten with zeros, not left in free pages of the file, on
        # every SQLite build (some compile this off by default).
        session.execute(text("PRAGMA secure_delete=ON"))
    for provider in desk.providers.providers:
        try:
            with session.begin_nested():
                before = provider.find(session, subject)
                hold = _hold(activities.get(provider.name), now, desk.register.rights.time_zone)
                if hold is not None:
                    outcome = ErasureOutcome(
                        provider.name, erased=0, kept=before.total, kept_reason=hold
                    )
                else:
                    outcome = provider.erase(session, subject)
                session.flush()
        except Exception as exc:  # noqa: BLE001 - the savepoint undid this store alone
            failures.append(StoreFailure(provider.name, type(exc).__name__))
            add_event(
                session, case, now, actor, "erase_failed", f"{provider.name}: {type(exc).__name__}"
            )
            stores.append({"store": provider.name, "status": "failed", "error": type(exc).__name__})
            continue
        entry: dict[str, Any] = {
            "store": provider.name,
            "status": "done",
            "matched": before.total,
            "erased": outcome.erased,
            "kept": outcome.kept,
            "kept_reason": outcome.kept_reason,
        }
        if outcome.erased and _chained(provider):
            entry["residue"] = TOMBSTONE
        if before.note:
            entry["note"] = before.note
        stores.append(entry)
        add_event(
            session,
            case,
            now,
            actor,
            "erased",
            f"{provider.name}: matched {before.total}, erased {outcome.erased}, "
            f"kept {outcome.kept}",
        )
    requery: dict[str, int | None] = {}
    for provider in desk.providers.providers:
        try:
            with session.begin_nested():
                requery[provider.name] = provider.find(session, subject).total
        except Exception:  # noqa: BLE001 - reported as unknown, the failure is in the timeline
            requery[provider.name] = None
    kept = {s["store"]: s.get("kept", 0) for s in stores}
    left_unexplained = {
        store: left for store, left in requery.items() if left is None or left > kept.get(store, 0)
    }
    receipt: dict[str, Any] = {
        "case": case.reference,
        "erased_at": now.isoformat(),
        "identified_by": identifier_names(subject),
        "stores": stores,
        "requery": requery,
        "nothing_left": not left_unexplained and not failures,
        "complete": not failures,
    }
    case.receipt = json.dumps(receipt, ensure_ascii=False)
    add_event(
        session,
        case,
        now,
        actor,
        "requeried",
        "; ".join(f"{store}: {left}" for store, left in requery.items()),
    )
    record(
        session,
        actor,
        "rights.erase",
        now,
        target_type="rights_case",
        target_id=case.reference,
        outcome="ok" if not failures else "failed",
    )
    if failures:
        case.outcome = "erasure_failed"
        add_event(
            session,
            case,
            now,
            actor,
            "left_open",
            "erasure failed in: " + ", ".join(f.store for f in failures),
        )
    else:
        kept_any = any(s.get("kept") for s in stores)
        # Art. 19: the register's recipients of the activities that held the data are told,
        # whatever the channel (portal, admin, CLI, possession); once per case and operation.
        from gardien.rights import recipients

        recipients.automatic(session, desk, case, "erasure", now=now, actor=actor)
        close_case(session, case, now, actor, "erased_with_exceptions" if kept_any else "erased")
        if notify_person:
            # Imported here: the notices build on this module's cases and events.
            from gardien.rights import notify

            notify.outcome(session, case, "erasure", register=desk.register, now=now, actor=actor)
    return receipt
