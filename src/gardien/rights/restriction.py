"""Restriction (GDPR Art. 18) and objection (Art. 21) in a case: recorded once, in
``storage.restriction``, keyed by the person's blind indexes, and passed to every provider so
each domain stops what it must (forms: messages held, not e-mailed, left out of exports;
analytics: further hits not stored). A restriction is lifted only after the person was told
(Art. 18(3)): ``announce_lift`` sends the notice, ``lift`` refuses to run before it.

An objection is weighed by the DPO against the activity's legitimate interests: the decision
(activity, outcome, grounds) is kept in the case (grounds in the encrypted notes); an upheld
one is recorded with the same mechanism, scoped to the activity, and passed to the
providers' ``object``. A provider that cannot stop its processing for one person (the
connection log keeps logging requests to secure the service) erases what it holds of them
instead, which its ``object`` docstring states.

Functions flush, never commit.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from gardien.backup import journal
from gardien.errors import N_, BadRequest, Conflict
from gardien.register.schema import LegalBasis
from gardien.rights import casework, recipients
from gardien.rights.models import RightsCase, RightsEvent
from gardien.rights.service import Desk, add_event, refuse_if_frozen, subject_of
from gardien.security.audit import Actor, record
from gardien.storage import restriction as store

OBJECTABLE = frozenset({LegalBasis.legitimate_interests, LegalBasis.public_task})
"""Art. 21(1): an objection applies to processing based on Art. 6(1)(e) or (f)."""
GROUNDS_LIMIT = 1800
"""Room for the grounds in one internal note (``casework.NOTE_LIMIT``)."""


def _ready(case: RightsCase) -> None:
    if case.status != "open":
        raise Conflict(N_("this case is closed"))
    if not casework.is_verified(case):
        raise Conflict(N_("the requester's identity is not verified yet"))


def _trace(session: Session, case: RightsCase, now: dt.datetime, actor: Actor, action: str) -> None:
    record(session, actor, action, now, target_type="rights_case", target_id=case.reference)


def is_active(session: Session, case: RightsCase, reason: str = store.RESTRICTION) -> bool:
    return any(r.reason == reason for r in store.active(session, case.id))


def restrict(
    session: Session, desk: Desk, case: RightsCase, *, now: dt.datetime, actor: Actor
) -> dict[str, int]:
    """Restrict every processing of the person's data: one record, then each provider."""
    _ready(case)
    if is_active(session, case):
        raise Conflict(N_("processing is already restricted for this case"))
    subject = subject_of(case)
    refuse_if_frozen(session, case, subject)  # a death notified in another case holds them
    journal.note(
        journal.RESTRICTION, subject, now, case.reference, reason=store.RESTRICTION, session=session
    )
    store.add(session, case.id, subject, store.RESTRICTION, None, now)
    counts = {p.name: p.restrict(session, subject, True) for p in desk.providers.providers}
    add_event(
        session,
        case,
        now,
        actor,
        "restricted",
        "; ".join(f"{name}: {count}" for name, count in counts.items()),
    )
    _trace(session, case, now, actor, "rights.restricted")
    recipients.automatic(session, desk, case, "restriction", now=now, actor=actor)
    return counts


def last_event(session: Session, case: RightsCase, kind: str) -> RightsEvent | None:
    return session.scalar(
        select(RightsEvent)
        .where(RightsEvent.case_id == case.id, RightsEvent.kind == kind)
        .order_by(RightsEvent.id.desc())
        .limit(1)
    )


def announce_lift(
    session: Session, desk: Desk, case: RightsCase, message: str, *, now: dt.datetime, actor: Actor
) -> None:
    """Tell the person the restriction is about to be lifted (Art. 18(3)), by the request's
    channel, the message kept with its hash like every answer."""
    if not is_active(session, case):
        raise Conflict(N_("processing is not restricted for this case"))
    answer = casework.record_answer(
        session,
        desk.register,
        case,
        "lift_notice",
        casework.free_text(message, "message", casework.MESSAGE_LIMIT),
        now=now,
        actor=actor,
    )
    add_event(session, case, now, actor, "lift_announced", f"answer {answer.id}")


def lift(
    session: Session, desk: Desk, case: RightsCase, *, now: dt.datetime, actor: Actor
) -> dict[str, int]:
    """Lift the restriction, once the person was told (a notice after the restriction)."""
    if not is_active(session, case):
        raise Conflict(N_("processing is not restricted for this case"))
    restricted = last_event(session, case, "restricted")
    announced = last_event(session, case, "lift_announced")
    if announced is None or (restricted is not None and announced.id < restricted.id):
        raise Conflict(N_("the person must be told before the restriction is lifted"))
    subject = subject_of(case)
    journal.note(
        journal.RESTRICTION_LIFTED,
        subject,
        now,
        case.reference,
        reason=store.RESTRICTION,
        session=session,
    )
    store.lift(session, case.id, store.RESTRICTION, now)
    counts = {p.name: p.restrict(session, subject, False) for p in desk.providers.providers}
    add_event(
        session,
        case,
        now,
        actor,
        "restriction_lifted",
        "; ".join(f"{name}: {count}" for name, count in counts.items()),
    )
    _trace(session, case, now, actor, "rights.restriction_lifted")
    return counts


def objectable(desk: Desk) -> list[str]:
    """The register's activities a person may object to (legitimate interests, public task)."""
    return [a.id for a in desk.register.activities if a.legal_basis.basis in OBJECTABLE]


def decide_objection(
    session: Session,
    desk: Desk,
    case: RightsCase,
    activity_id: str,
    upheld: bool,
    grounds: str,
    *,
    now: dt.datetime,
    actor: Actor,
) -> dict[str, int]:
    """Record the DPO's balancing of an objection to ``activity_id``; an upheld one stops the
    activity for the person (restriction record scoped to it, then each provider)."""
    _ready(case)
    activity = next((a for a in desk.register.activities if a.id == activity_id), None)
    if activity is None:
        raise BadRequest(N_("no such activity in the register"))
    if activity.legal_basis.basis not in OBJECTABLE:
        raise BadRequest(
            N_("an objection applies to processing based on legitimate interests (Art. 21(1))")
        )
    text = casework.free_text(grounds, "grounds", GROUNDS_LIMIT)
    if upheld:  # a death notified in another case holds the person's data; nothing written
        refuse_if_frozen(session, case, subject_of(case))
    outcome = "upheld" if upheld else "rejected"
    casework.add_note(
        session,
        case,
        f"Objection to {activity_id}: {outcome}. Grounds: {text}",
        now=now,
        actor=actor,
    )
    counts: dict[str, int] = {}
    erased: list[str] = []
    if upheld:
        subject = subject_of(case)
        journal.note(
            journal.RESTRICTION,
            subject,
            now,
            case.reference,
            reason=store.OBJECTION,
            activity=activity_id,
            session=session,
        )
        store.add(session, case.id, subject, store.OBJECTION, activity_id, now)
        for provider in desk.providers.providers:
            counts[provider.name] = provider.object(session, subject, activity_id)
            if provider.name == activity_id and counts[provider.name] == 0:
                # It cannot stop for one person: what it holds of them goes instead.
                counts[provider.name] = provider.erase(session, subject).erased
                erased += [provider.name] if counts[provider.name] else []
    add_event(
        session,
        case,
        now,
        actor,
        "objection_decided",
        f"{activity_id}: {outcome}"
        + (": " + "; ".join(f"{n}: {c}" for n, c in counts.items() if c) if counts else ""),
    )
    _trace(session, case, now, actor, f"rights.objection_{outcome}")
    if erased:  # Art. 19: an erasure (Art. 17(1)(c)), told to that activity's recipients
        recipients.automatic(
            session, desk, case, "erasure", now=now, actor=actor, activities=erased
        )
    return counts
