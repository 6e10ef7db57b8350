"""Rectification (GDPR Art. 16, legal-requirements §2.2): the person proposes corrections,
an agent approves or refuses them with reasons, every provider applies an approved one.

The fields a person may correct are those the register declares for the forms of the
activities that hold their data (the values Gardien received from them, found by the
providers for the case's identity: a field of another activity is refused with the reason,
nothing stored); each new value is checked as the form checked the original (an e-mail
normalised, a phone in E.164). Consent records and audience measurement hold no value to
correct: a record states what was decided and when, a hit what was observed; the answer says
so.

The proposal is kept encrypted only until it is decided. The case file then keeps the names
of the fields changed and a SHA-256 of the proposal, never a value in clear; the old values
are not kept anywhere by Gardien (the form's encrypted document is replaced as a whole, its
blind indexes recomputed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gardien.errors import N_, BadRequest, Conflict, NotFound
from gardien.forms.validation import check_field
from gardien.i18n import translator
from gardien.register.schema import FormField, Register
from gardien.rights import casework, recipients
from gardien.rights import restriction as restricting
from gardien.rights.amendments import RightsRectification
from gardien.rights.models import RightsCase
from gardien.rights.service import Desk, add_event, refuse_if_frozen, subject_of
from gardien.security.audit import Actor, record

RIGHT = "rectification"
RIGHT_RESTRICTION = "restriction"
CONTESTED = "restricted_contested"
"""The event marking a restriction made because the person contested accuracy."""
MAX_DESCRIPTION = 2000
MAX_FIELDS = 20
NOT_RECTIFIABLE = {
    "consent_records": (
        "a consent record states what was decided, when: it is never edited; a new decision "
        "is a new record"
    ),
    "audience_measurement": (
        "audience measurement holds observations (pages seen, times), not values you gave"
    ),
    "connection_log": "the connection log records requests as they arrived (security evidence)",
    "rights_requests": "the case file records what was asked and done",
}
"""What the answer says of the stores that hold nothing to correct."""


@dataclass(frozen=True)
class Decision:
    rectification: RightsRectification
    changed: dict[str, int]


def rectifiable_fields(
    register: Register, holding: Collection[str] | None = None
) -> dict[str, FormField]:
    """Field name → its declaration, for every form of the register (the first wins), or
    only the forms of the activities in ``holding``."""
    fields: dict[str, FormField] = {}
    for form in register.forms:
        if holding is not None and form.activity not in holding:
            continue
        for spec in form.fields:
            fields.setdefault(spec.name, spec)
    return fields


def held_fields(session: Session, desk: Desk, case: RightsCase) -> dict[str, FormField]:
    """The fields the person may correct: those of the forms whose activity holds their data
    (found by the providers for the case's identity), not every form of the register."""
    subject = subject_of(case)
    holding = {
        activity
        for provider in desk.providers.providers
        for activity, count in provider.find(session, subject).counts.items()
        if count
    }
    return rectifiable_fields(desk.register, holding)


def _verified(case: RightsCase) -> None:
    if RIGHT not in case.rights.split(","):
        raise BadRequest(N_("this request does not ask for rectification"))
    if not casework.is_verified(case):
        raise Conflict(N_("confirm your request with the code first"))
    if case.status != "open":
        raise Conflict(N_("this request is already answered"))


def check_corrections(
    register: Register,
    corrections: Mapping[str, object],
    description: object,
    known: Mapping[str, FormField] | None = None,
) -> tuple[dict[str, str], str]:
    """Clean values and description, or ``BadRequest`` naming the field (never the value);
    ``known`` the fields the person may correct (default: every form's)."""
    known = rectifiable_fields(register) if known is None else known
    if len(corrections) > MAX_FIELDS:
        raise BadRequest(N_("at most %(limit)s fields at once"), limit=MAX_FIELDS)
    country = register.operator.addresses[0].country
    clean: dict[str, str] = {}
    for name, value in corrections.items():
        spec = known.get(name)
        if spec is None:
            raise BadRequest(N_("%(field)s is not a field we hold"), field=name[:64])
        if not isinstance(value, str) or not value.strip():
            continue
        checked, error = check_field(spec, value, country)
        if error is not None:
            raise BadRequest(N_("%(field)s: the new value is not valid"), field=name)
        clean[name] = checked
    text = description.strip() if isinstance(description, str) else ""
    if len(text) > MAX_DESCRIPTION:
        raise BadRequest(
            N_("the description has at most %(limit)s characters"), limit=MAX_DESCRIPTION
        )
    if not text.isprintable() and any(c not in "\n\r\t" and not c.isprintable() for c in text):
        raise BadRequest(N_("the description contains characters that are not allowed"))
    if not clean and not text:
        raise BadRequest(N_("give at least one corrected value or a description"))
    return clean, text


def _digest(proposal: str) -> str:
    return hashlib.sha256(proposal.encode()).hexdigest()


def propose(
    session: Session,
    desk: Desk,
    case: RightsCase,
    corrections: Mapping[str, object],
    description: object,
    *,
    now: dt.datetime,
    actor: Actor,
) -> RightsRectification:
    """Record the person's proposal in their verified case. Flushes."""
    _verified(case)
    clean, text = check_corrections(
        desk.register, corrections, description, held_fields(session, desk, case)
    )
    pending = session.scalar(
        select(RightsRectification.id).where(
            RightsRectification.case_id == case.id, RightsRectification.status == "proposed"
        )
    )
    if pending is not None:
        raise Conflict(N_("a proposal of this request is already awaiting a decision"))
    proposal = json.dumps({"fields": clean, "description": text}, ensure_ascii=False)
    row = RightsRectification(
        case_id=case.id,
        proposed_at=now,
        proposal=proposal,
        fields=",".join(sorted(clean))[:400],
        digest=_digest(proposal),
        status="proposed",
        changed=0,
    )
    session.add(row)
    session.flush()
    add_event(
        session,
        case,
        now,
        actor,
        "rectification_proposed",
        f"fields: {row.fields or '-'}; description: {'yes' if text else 'no'}; sha256 {row.digest}",
    )
    if not restricting.is_active(session, case):
        # Art. 18(1)(a): accuracy contested, restricted while the agent checks it.
        restricting.restrict(session, desk, case, now=now, actor=actor)
        add_event(session, case, now, actor, CONTESTED, "until the rectification is decided")
    return row


def _lift_contested(
    session: Session, desk: Desk, case: RightsCase, *, now: dt.datetime, actor: Actor
) -> None:
    """Lift the restriction the proposal made, the person told first (Art. 18(3)); one the
    person asked for or an agent applied since is left to the restriction page."""
    restricted = restricting.last_event(session, case, "restricted")
    contested = restricting.last_event(session, case, CONTESTED)
    if not restricting.is_active(session, case) or contested is None or restricted is None:
        return
    if contested.id < restricted.id or RIGHT_RESTRICTION in case.rights.split(","):
        return
    _ = translator(case.language).gettext
    notice = _(
        "While we checked the correction you asked for, your data was kept but not otherwise "
        "used (GDPR Art. 18(1)(a)). We have now decided on it, so this restriction is lifted."
    )
    restricting.announce_lift(session, desk, case, notice, now=now, actor=actor)
    restricting.lift(session, desk, case, now=now, actor=actor)


def pending(session: Session, case: RightsCase) -> RightsRectification | None:
    return session.scalars(
        select(RightsRectification)
        .where(RightsRectification.case_id == case.id)
        .order_by(RightsRectification.id.desc())
        .limit(1)
    ).first()


def proposal_of(row: RightsRectification) -> dict[str, object]:
    """The proposed values and description (only while awaiting a decision)."""
    return json.loads(row.proposal) if row.proposal else {"fields": {}, "description": ""}


def decide(
    session: Session,
    desk: Desk,
    case: RightsCase,
    *,
    approve: bool,
    reasons: str | None,
    now: dt.datetime,
    actor: Actor,
) -> Decision:
    """Apply the case's pending proposal through every provider, or refuse it with reasons.
    The proposal's values are dropped either way. Flushes."""
    row = pending(session, case)
    if row is None or row.status != "proposed":
        raise NotFound(N_("there is no proposal awaiting a decision"))
    reasons = (reasons or "").strip()
    if len(reasons) > MAX_DESCRIPTION:
        raise BadRequest(N_("the reasons have at most %(limit)s characters"), limit=MAX_DESCRIPTION)
    changed: dict[str, int] = {}
    if approve:
        # A death notified in another case holds the person's data: refused, nothing written.
        refuse_if_frozen(session, case, subject_of(case))
        fields = {k: str(v) for k, v in dict(proposal_of(row).get("fields") or {}).items()}  # type: ignore[call-overload]
        subject = subject_of(case)
        # Read before rectifying: a corrected e-mail no longer finds what it was stored under.
        held = recipients.involved(session, desk, case)
        for provider in desk.providers.providers:
            count = provider.rectify(session, subject, fields) if fields else 0
            changed[provider.name] = count
            add_event(
                session,
                case,
                now,
                actor,
                "rectified",
                f"{provider.name}: {count} record(s); fields: {row.fields or '-'}"
                if provider.name not in NOT_RECTIFIABLE
                else f"{provider.name}: nothing to rectify ({NOT_RECTIFIABLE[provider.name]})",
            )
        row.status = "applied"
        row.changed = sum(changed.values())
        recipients.automatic(session, desk, case, RIGHT, now=now, actor=actor, activities=held)
    else:
        if not reasons:
            raise BadRequest(N_("a refusal must state its reasons"))
        row.status = "refused"
        add_event(session, case, now, actor, "rectification_refused", f"sha256 {row.digest}")
    _lift_contested(session, desk, case, now=now, actor=actor)
    row.reasons = reasons or None
    row.decided_at = now
    row.decided_by = actor.id
    row.proposal = None
    session.flush()
    record(
        session,
        actor,
        "rights.rectify" if approve else "rights.rectify_refused",
        now,
        target_type="rights_case",
        target_id=case.reference,
        reason=row.fields or None,
    )
    return Decision(row, changed)
