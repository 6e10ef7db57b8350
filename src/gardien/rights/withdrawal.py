"""Withdrawal of consent (GDPR Art. 7(3), legal-requirements §2.7) through the rights portal:
one step once the request is verified, no account, no form to fill beyond the request.

Every provider whose store processes data on the person's consent (``ConsentWithdrawal``)
withdraws it from now on: the consent log gets a ``withdraw`` record for the consent id,
chained like the cookie panel's; audience measurement stops storing hits sent under that
consent id; the contact forms mark the submissions given on consent ``withdrawn`` and send
nothing more for them. What was done before the withdrawal stays lawful (Art. 7(3)); what
is kept is kept until its retention period.

The withdrawal is journalled first (``backup.journal``, blind indexes only), so a restore of a
backup taken before it withdraws the consent again instead of resuming processing under it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from gardien.backup import journal
from gardien.errors import N_, BadRequest, Conflict
from gardien.rights import casework, notify
from gardien.rights.models import RightsCase
from gardien.rights.service import Desk, add_event, subject_of
from gardien.security.audit import Actor, record
from gardien.storage.subjects import ConsentWithdrawal

RIGHT = "withdraw_consent"


def withdraw(
    session: Session,
    desk: Desk,
    case: RightsCase,
    *,
    now: dt.datetime,
    actor: Actor,
) -> dict[str, int]:
    """Withdraw every consent the person of ``case`` gave; per store, how many. Flushes."""
    if RIGHT not in case.rights.split(","):
        raise BadRequest(N_("this request does not ask to withdraw consent"))
    if not casework.is_verified(case):
        raise Conflict(N_("confirm your request with the code first"))
    subject = subject_of(case)
    journal.note(journal.WITHDRAWAL, subject, now, case.reference, session=session)
    counts: dict[str, int] = {}
    for provider in desk.providers.providers:
        if not isinstance(provider, ConsentWithdrawal):
            continue
        counts[provider.name] = provider.withdraw(session, subject, now)
        add_event(
            session,
            case,
            now,
            actor,
            "consent_withdrawn",
            f"{provider.name}: {counts[provider.name]} consent(s) withdrawn",
        )
    record(
        session,
        actor,
        "rights.withdraw_consent",
        now,
        target_type="rights_case",
        target_id=case.reference,
        reason=", ".join(f"{name}={count}" for name, count in counts.items()),
    )
    return counts


def on_verified(
    session: Session, desk: Desk, case: RightsCase, *, now: dt.datetime
) -> dict[str, int] | None:
    """Once a request asking to withdraw consent is verified, withdraw at once (one step, as
    easy as giving it) and tell the person; ``None`` for a request that does not ask it."""
    if RIGHT not in case.rights.split(","):
        return None
    counts = withdraw(session, desk, case, now=now, actor=notify.NOTIFIER)
    notify.outcome(
        session,
        case,
        "withdrawal",
        register=desk.register,
        now=now,
        details={"count": sum(counts.values()), "stores": counts},
    )
    return counts
