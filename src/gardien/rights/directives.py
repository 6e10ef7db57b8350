"""Post-mortem directives in the case file (French LIL Art. 84-86; the rule is
``rights.postmortem``): recorded by the verified person through the portal's dedicated
action, revoked by them at once, and applied after a proven death at the request of the
designated person (or, without one, of the heirs), each step traced in the case and the
audit trail.

A directive is stored encrypted and found by the blind index of the e-mail address the
person verified (or of the phone number, for a person known only by it, who verified it by a
code sent by text message). A revocation empties it at once; once applied, only a tombstone is left
(dates, the SHA-256 of the death certificate, what was done: store names and counts). The
death certificate itself is not kept: the agent checks it and records its SHA-256
(legal-requirements §2.9.6, data minimisation).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gardien.errors import N_, BadRequest, Conflict, NotFound
from gardien.rights import postmortem, recipients
from gardien.rights.amendments import DIRECTIVE_EMAIL_INDEX, DIRECTIVE_PHONE_INDEX, RightsDirective
from gardien.rights.models import RightsCase
from gardien.rights.phones import e164
from gardien.rights.postmortem import ALL, DirectiveRefused, Requester
from gardien.rights.provider import directives_of
from gardien.rights.service import (
    AccessPackage,
    Desk,
    add_event,
    export_package,
    lift_freeze,
    refuse_if_frozen,
    timeline,
)
from gardien.security.audit import Actor, record
from gardien.security.crypto import blind_index
from gardien.storage import restriction as restrictions
from gardien.storage.subjects import ProviderRegistry, SubjectIdentity

RIGHT = "post_mortem"
CONSENT_TEXT = N_(
    "I want these directives to apply to my personal data after my death, and I consent to "
    "their being kept for that purpose. I can change or revoke them at any time."
)
"""The directive's own consent, shown beside its own checkbox (never the terms')."""
FIELDS = frozenset(
    {"directive_consent", "designee_name", "designee_contact", "lang", "token", "action"}
)
PREFIX = "instruction."


@dataclass(frozen=True)
class Executed:
    erased: dict[str, int]
    communicated: dict[str, int]
    """Store → records communicated (the data themselves are only in ``package``)."""
    plan: postmortem.Plan
    package: AccessPackage | None = None
    """What the directive communicates, built like an access package; ``notify.deliver``
    stores it encrypted behind a one-time link sent to the designated person."""


def holder(case: RightsCase) -> SubjectIdentity | None:
    """Whose directive a verified case finds: its e-mail address, or, for a person known only
    by phone (verified by a code sent by text message), its phone number."""
    if case.email:
        return SubjectIdentity(email=case.email)
    if case.phone:
        return SubjectIdentity(phone=case.phone)
    return None


def _case_ready(case: RightsCase) -> SubjectIdentity:
    if RIGHT not in case.rights.split(","):
        raise BadRequest(N_("this request is not about post-mortem directives"))
    if case.verified_at is None:
        raise Conflict(N_("confirm your request with the code first"))
    who = holder(case)
    if who is None:
        raise BadRequest(N_("a directive is kept under a verified e-mail address or phone number"))
    return who


def in_force(session: Session, who: SubjectIdentity, now: dt.datetime) -> RightsDirective | None:
    return session.scalars(
        select(RightsDirective)
        .where(
            directives_of(who),
            RightsDirective.revoked_at.is_(None),
            RightsDirective.executed_at.is_(None),
        )
        .order_by(RightsDirective.id.desc())
        .limit(1)
    ).first()


def directive_of(row: RightsDirective) -> postmortem.Directive | None:
    if not row.body:
        return None
    body = json.loads(row.body)
    return postmortem.Directive(
        instructions={k: postmortem.Instruction(v) for k, v in body["instructions"].items()},
        designee_name=body.get("designee_name"),
        designee_contact=body.get("designee_contact"),
        consent_text_hash=row.consent_text_hash,
        consented_at=row.consented_at,
        revoked_at=row.revoked_at,
    )


def categories(desk: Desk) -> list[str]:
    """What a directive may name: the stores of personal data (one per provider)."""
    return [p.name for p in desk.providers.providers]


def parse(
    desk: Desk, raw: Mapping[str, object], consent_text: str, now: dt.datetime
) -> postmortem.Directive:
    """The directive the dedicated form sent, or ``BadRequest`` with the rule's reason."""
    known = set(categories(desk)) | {ALL}
    instructions: dict[str, str] = {}
    for key, value in raw.items():
        if key in FIELDS:
            continue
        if not key.startswith(PREFIX) or key[len(PREFIX) :] not in known:
            raise BadRequest(N_("%(field)s is not part of the form"), field=key[:64])
        if isinstance(value, str) and value:
            instructions[key[len(PREFIX) :]] = value

    def text(name: str) -> str | None:
        value = raw.get(name)
        return value.strip() or None if isinstance(value, str) else None

    try:
        return postmortem.record(
            instructions=instructions,
            designee_name=text("designee_name"),
            designee_contact=text("designee_contact"),
            directive_consent=raw.get("directive_consent") == "yes",
            consent_text=consent_text,
            now=now,
        )
    except DirectiveRefused as refused:
        raise BadRequest(str(refused)) from None  # its text is marked for translation


def save(
    session: Session,
    desk: Desk,
    case: RightsCase,
    raw: Mapping[str, object],
    *,
    consent_text: str,
    now: dt.datetime,
    actor: Actor,
) -> RightsDirective:
    """Record the directive of the verified person of ``case``; one they had before is
    replaced (revoked, emptied). Flushes."""
    who = _case_ready(case)
    directive = parse(desk, raw, consent_text, now)
    previous = in_force(session, who, now)
    if previous is not None:
        _empty(previous, now)
    row = RightsDirective(
        case_id=case.id,
        email=who.email,
        email_index=blind_index(who.email, DIRECTIVE_EMAIL_INDEX, "email") if who.email else None,
        phone=who.phone,
        phone_index=blind_index(who.phone, DIRECTIVE_PHONE_INDEX) if who.phone else None,
        body=json.dumps(
            {
                "instructions": {k: v.value for k, v in directive.instructions.items()},
                "designee_name": directive.designee_name,
                "designee_contact": directive.designee_contact,
            },
            ensure_ascii=False,
        ),
        consent_text_hash=directive.consent_text_hash,
        consented_at=now,
    )
    session.add(row)
    session.flush()
    scope = ", ".join(f"{k}={v.value}" for k, v in sorted(directive.instructions.items()))
    add_event(
        session,
        case,
        now,
        actor,
        "directive_recorded",
        f"{scope}; designee: {'yes' if directive.designee_contact else 'no'}; own consent, "
        f"sha256 of its text {directive.consent_text_hash}"
        + ("; replaces the previous directive" if previous is not None else ""),
    )
    record(
        session,
        actor,
        "rights.directive",
        now,
        target_type="rights_case",
        target_id=case.reference,
        reason="recorded",
    )
    return row


def _empty(row: RightsDirective, now: dt.datetime) -> None:
    row.revoked_at = now
    row.body = None


def revoke(session: Session, case: RightsCase, *, now: dt.datetime, actor: Actor) -> int:
    """Revoke at once the directive of the verified person of ``case``. ``NotFound`` when they
    have none in force (whoever else asks finds nothing: it is found by their own address)."""
    row = in_force(session, _case_ready(case), now)
    if row is None:
        raise NotFound(N_("there is no directive in force to revoke"))
    _empty(row, now)
    session.flush()
    add_event(session, case, now, actor, "directive_revoked", "revoked at once, content emptied")
    record(
        session,
        actor,
        "rights.directive",
        now,
        target_type="rights_case",
        target_id=case.reference,
        reason="revoked",
    )
    return row.id


def record_death(
    session: Session,
    row: RightsDirective,
    certificate: bytes,
    *,
    now: dt.datetime,
    actor: Actor,
) -> str:
    """The agent saw the death certificate: its SHA-256 is kept, never its content."""
    if not certificate:
        raise BadRequest(N_("the death certificate is empty"))
    digest = hashlib.sha256(certificate).hexdigest()
    row.death_recorded_at = now
    row.death_document_sha256 = digest
    session.flush()
    record(
        session,
        actor,
        "rights.death_recorded",
        now,
        target_type="rights_directive",
        target_id=str(row.id),
        reason=digest,
    )
    return digest


DEATH_EVENT = "death_recorded"
APPLIED_EVENT = "directive_applied"


def record_death_in_case(
    session: Session, case: RightsCase, certificate: bytes, *, now: dt.datetime, actor: Actor
) -> str:
    """Without a directive: the certificate's SHA-256 in the heir's case (never the file)."""
    if not certificate:
        raise BadRequest(N_("the death certificate is empty"))
    digest = hashlib.sha256(certificate).hexdigest()
    add_event(session, case, now, actor, DEATH_EVENT, f"death certificate sha256 {digest}")
    return digest


def case_has_death(session: Session, case: RightsCase) -> bool:
    return any(e.kind == DEATH_EVENT for e in timeline(session, case))


FROZEN_EVENT = "frozen"


def _deceased(row: RightsDirective | None, deceased: SubjectIdentity) -> SubjectIdentity:
    """Whose data a directive (else the deceased's own request) is about."""
    if row is not None and (row.email or row.phone):
        return SubjectIdentity(email=row.email, phone=row.phone)
    return deceased


def notice_of_death(
    session: Session,
    desk: Desk,
    row: RightsDirective | None,
    case: RightsCase,
    certificate: bytes,
    *,
    deceased: SubjectIdentity,
    requester: Requester,
    now: dt.datetime,
    actor: Actor,
) -> str:
    """The first steps of legal-requirements §2.9.6 at the request ``case`` of the designated
    person or an heir: the agent saw the death certificate (its SHA-256 is kept, in the
    directive ``row`` if there is one and in the case), and the deceased's identifiers are
    frozen: a ``deceased`` restriction held by ``case``, honoured by every domain like any
    restriction, and refusing any other request on them (``service.refuse_if_frozen``) until
    ``execute`` (or closing ``case``) lifts it. Refused, with nothing written, when the case is
    closed, the death is already recorded, or the requester may not ask (a designee with no
    directive naming one, an heir when the directive names a designee). Flushes."""
    if case.status != "open":
        raise Conflict(N_("this case is closed"))
    if case_has_death(session, case):
        raise Conflict(N_("the death is already recorded"))
    if row is not None and row.executed_at is not None:
        raise Conflict(N_("this directive was already applied"))
    directive = directive_of(row) if row is not None else None
    try:  # who may ask is settled now, before anything is frozen
        postmortem.plan(
            directive,
            requester=requester,
            death_proven=True,
            categories=tuple(categories(desk)),
            at=now,
        )
    except DirectiveRefused as refused:
        raise BadRequest(str(refused)) from None
    if not certificate:
        raise BadRequest(N_("the death certificate is empty"))
    if row is not None and directive is not None and row.death_recorded_at is None:
        record_death(session, row, certificate, now=now, actor=actor)  # the first notice
    digest = record_death_in_case(session, case, certificate, now=now, actor=actor)
    subject = _deceased(row, deceased)
    frozen = sum(  # the directive's identifiers and those of the deceased's own request
        restrictions.add(session, case.id, who, restrictions.DECEASED, None, now)
        for who in (subject, deceased)
    )
    add_event(
        session,
        case,
        now,
        actor,
        FROZEN_EVENT,
        f"{frozen} identifier(s) of the deceased frozen until the directive is executed "
        "or the case closed",
    )
    record(
        session,
        actor,
        "rights.deceased_frozen",
        now,
        target_type="rights_case",
        target_id=case.reference,
    )
    return digest


def execute(
    session: Session,
    desk: Desk,
    row: RightsDirective | None,
    case: RightsCase,
    *,
    deceased: SubjectIdentity,
    requester: Requester,
    asked: frozenset[str] = frozenset(),
    now: dt.datetime,
    actor: Actor,
) -> Executed:
    """Apply the directive (or, without one, the heirs' limited rights) at the request opened
    as ``case`` by the designee or an heir, once the death is recorded. Leaves a tombstone of
    the directive. Flushes."""
    directive = directive_of(row) if row is not None else None
    if row is not None and row.executed_at is not None:
        raise Conflict(N_("this directive was already applied"))
    proven = (row is not None and row.death_recorded_at is not None) or case_has_death(
        session, case
    )
    try:
        plan = postmortem.plan(
            directive,
            requester=requester,
            death_proven=proven,
            categories=tuple(categories(desk)),
            asked=asked,
            at=now,
        )
    except DirectiveRefused as refused:
        raise BadRequest(str(refused)) from None
    subject = _deceased(row, deceased)
    # Frozen after a death notified in another request: the execution belongs to that one.
    refuse_if_frozen(session, case, subject)
    package: AccessPackage | None = None
    communicated: dict[str, int] = {}
    if plan.communicate:
        designee = directive.designee_contact if directive is not None else None
        if not _is_designee(case, designee, desk.register.operator.addresses[0].country):
            raise BadRequest(
                N_(
                    "the data can only be communicated to the contact the directive designates: "
                    "record the request under that contact"
                )
            )
        shared = ProviderRegistry(p for p in desk.providers.providers if p.name in plan.communicate)
        package = export_package(
            session,
            Desk(desk.register, shared, desk.base_url),
            case,
            subject,
            now=now,
            actor=actor,
        )
        if package.failures:
            raise Conflict(N_("a store could not be read: nothing was applied, try again"))
        communicated = {name: found.total for name, found in package.found.items()}
    erased: dict[str, int] = {}
    for provider in desk.providers.providers:
        if provider.name in plan.erase and provider.name != "rights_requests":
            with session.begin_nested():
                erased[provider.name] = provider.erase(session, subject).erased
    outcome = (
        f"{requester.value}: "
        + "; ".join(
            [f"erased {name}={count}" for name, count in erased.items()]
            + [f"communicated {name}={count}" for name, count in communicated.items()]
            + (
                [f"heirs' actions: {', '.join(sorted(plan.heir_actions))}"]
                if plan.heir_actions
                else []
            )
        )
    )[:200]
    add_event(session, case, now, actor, APPLIED_EVENT, outcome)
    # Art. 19: the recipients of what was erased are told, of the deceased's identifiers.
    recipients.automatic(
        session,
        desk,
        case,
        "erasure",
        now=now,
        actor=actor,
        activities=[name for name, count in erased.items() if count],
        subject=subject,
    )
    # Settled: the freeze the death notice placed through this case ends with it.
    lift_freeze(session, case, now, actor, "directive executed")
    if row is not None and directive is not None:
        # Only a tombstone is left: dates, the certificate's hash, what was done.
        row.executed_at = now
        row.outcome = outcome
        row.body = None
        row.email = row.email_index = row.phone = row.phone_index = None
    session.flush()
    record(
        session,
        actor,
        "rights.directive",
        now,
        target_type="rights_case",
        target_id=case.reference,
        reason=outcome,
    )
    return Executed(erased, communicated, plan, package)


def _is_designee(case: RightsCase, contact: str | None, region: str) -> bool:
    """Whether the request ``case`` comes from the designated person's contact (the e-mail
    address or phone number the directive names). Phone numbers are compared in E.164, a
    number the person wrote in national form read in the operator's country ``region``."""
    if not contact:
        return False
    contact = contact.strip()
    if case.email and case.email.strip().casefold() == contact.casefold():
        return True
    if not case.phone or "@" in contact:
        return False
    designated = e164(contact, region)
    return designated is not None and designated == e164(case.phone, region)
