"""Settling a journal entry left pending by a crash, from the database's own record.

An entry is written before the transaction that acts and marked once it ends
(``backup.journal``). A crash between the two leaves it pending: the database then says what
happened. Every action the journal records also leaves a step in the case's timeline, written
in the same transaction, at the same instant as the entry (``rights_event.at``): ``requeried``
for an erasure (with the case's receipt, which names the stores it left alone), ``restricted``,
``objection_decided`` (upheld), ``restriction_lifted``, ``consent_withdrawn``. Found: the action
committed. Not found in the database the entry was written against: it never did, provided the
case itself is there (a database that does not even hold the case proves nothing, which is
why only the case's own record is trusted).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gardien.backup.journal import (
    ABORTED,
    DONE,
    ERASURE,
    PENDING,
    RESTRICTION,
    RESTRICTION_LIFTED,
    WITHDRAWAL,
    ErasureJournal,
    JournalEntry,
)

_EVENTS = {
    ERASURE: "requeried",
    RESTRICTION: "restricted",
    RESTRICTION_LIFTED: "restriction_lifted",
    WITHDRAWAL: "consent_withdrawn",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    state: str
    """``done``, ``aborted``, or ``pending`` when the database cannot say."""
    skip: tuple[str, ...] = ()


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _same_instant(a: dt.datetime, b: dt.datetime) -> bool:
    # Some databases keep microseconds, some round them: within a millisecond is the same step.
    return abs(_utc(a) - _utc(b)) < dt.timedelta(milliseconds=1)


def skipped_stores(receipt: dict[str, Any]) -> tuple[str, ...]:
    """The stores an erasure receipt says were left alone: failed, or all they matched kept
    (a legal hold)."""
    left = []
    for store in receipt.get("stores") or []:
        name = str(store.get("store"))
        if store.get("status") != "done":
            left.append(name)
        elif not store.get("erased") and store.get("kept") and store.get("kept_reason"):
            left.append(name)
    return tuple(sorted(left))


def receipt_verdict(receipt_text: str | None, entry: JournalEntry) -> Verdict | None:
    """``done`` with the stores left alone when the case's receipt is this erasure's."""
    if not receipt_text:
        return None
    try:
        receipt = json.loads(receipt_text)
        erased_at = dt.datetime.fromisoformat(str(receipt["erased_at"]))
    except (ValueError, KeyError, TypeError):
        return None
    if not _same_instant(erased_at, entry.at):
        return None
    return Verdict(DONE, skipped_stores(receipt))


def verdict(session: Session, entry: JournalEntry) -> Verdict:
    """What this database records of the entry's action (reads only)."""
    from gardien.rights.models import RightsCase, RightsEvent

    # Two plain columns: the keys may not be open yet (a restore settles before opening them).
    case = session.execute(
        select(RightsCase.id, RightsCase.receipt).where(RightsCase.reference == entry.case)
    ).first()
    if case is None:
        return Verdict(PENDING)
    if entry.kind == ERASURE:
        from_receipt = receipt_verdict(case.receipt, entry)
        if from_receipt is not None:
            return from_receipt
    kind = "objection_decided" if entry.reason == "objection" else _EVENTS[entry.kind]
    events = session.scalars(
        select(RightsEvent).where(RightsEvent.case_id == case.id, RightsEvent.kind == kind)
    ).all()
    for step in events:
        if not _same_instant(step.at, entry.at):
            continue
        if kind == "objection_decided" and not (step.detail or "").startswith(
            f"{entry.activity}: upheld"
        ):
            continue
        return Verdict(DONE)
    return Verdict(ABORTED)


def settle_pending(session: Session, journal: ErasureJournal, after_seq: int) -> dict[str, int]:
    """Mark every pending entry after ``after_seq`` from what this database records: the
    database the entries were written against, every instance stopped (a restore, before it
    replaces it), so a transaction still running cannot be taken for one that rolled back.
    Returns how many entries were marked, by state."""
    counts = {DONE: 0, ABORTED: 0}
    for entry in list(journal.entries()):
        if entry.seq <= after_seq or entry.state != PENDING:
            continue
        found = verdict(session, entry)
        if found.state == PENDING:
            continue
        journal.mark(entry.seq, found.state, list(found.skip), by="database")
        counts[found.state] += 1
    return counts
