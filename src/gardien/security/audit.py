"""The audit trail: append-only, hash-chained, purged only into tombstones.

``record`` appends within the caller's transaction under a database lock (an advisory lock on
PostgreSQL; SQLite's write transactions are already exclusive), so entries written by several
instances form one chain, never a fork. Entries name actors and targets by id and never carry
personal values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from gardien.register.schema import RetentionAction, RetentionTrigger
from gardien.retention.stores import due_keys
from gardien.security.models import AuditEntry
from gardien.storage.chain import GENESIS, Break, ChainRow, link, verify

AUDIT_LOCK = 0x6761726469656E01  # "gardien" + 1: the advisory-lock key of the audit chain


@dataclass(frozen=True)
class Actor:
    id: str
    role: str

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls(name, "system")


def _fields(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at.astimezone(dt.UTC).isoformat(),
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "reason": entry.reason,
        "outcome": entry.outcome,
    }


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})


def record(
    session: Session,
    actor: Actor,
    action: str,
    now: dt.datetime,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    reason: str | None = None,
    outcome: str = "ok",
) -> AuditEntry:
    """Append one entry to the chain; flushes, the caller's transaction commits it."""
    _lock(session)
    head = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, previous = (head[0] + 1, head[1]) if head else (1, GENESIS)
    entry = AuditEntry(
        seq=seq,
        at=now,
        actor=actor.id,
        role=actor.role,
        action=action,
        target_type=target_type,
        target_id=target_id,
        reason=(reason or None) and reason[:300],
        outcome=outcome,
        prev_hash=previous,
        hash="",
        purged=False,
    )
    entry.hash = link(previous, _fields(entry))
    session.add(entry)
    session.flush()
    return entry


def head(session: Session) -> tuple[int, str]:
    row = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    return (row[0], row[1]) if row else (0, GENESIS)


def _rows(session: Session) -> Iterator[ChainRow]:
    for entry in session.scalars(
        select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=1000)
    ):
        yield ChainRow(
            entry.seq, entry.prev_hash, entry.hash, None if entry.purged else _fields(entry)
        )


def verify_chain(session: Session) -> Break | None:
    return verify(_rows(session))


def recent(session: Session, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit).offset(offset)
        )
    )


class AuditStore:
    """Retention of the audit trail: entries past the period become tombstones."""

    store_id = "audit_log"
    triggers = frozenset({RetentionTrigger.collected, RetentionTrigger.created})
    actions = frozenset({RetentionAction.delete, RetentionAction.anonymise})

    def oldest(self, session: Session, trigger: RetentionTrigger) -> dt.datetime | None:
        return session.scalar(select(func.min(AuditEntry.at)).where(AuditEntry.purged.is_(False)))

    def count_due(self, session: Session, trigger: RetentionTrigger, cutoff: dt.datetime) -> int:
        return int(
            session.scalar(
                select(func.count()).where(AuditEntry.at < cutoff, AuditEntry.purged.is_(False))
            )
            or 0
        )

    def purge_chunk(
        self,
        session: Session,
        trigger: RetentionTrigger,
        action: RetentionAction,
        cutoff: dt.datetime,
        limit: int,
    ) -> int:
        seqs = due_keys(
            session, AuditEntry.seq, AuditEntry.at, cutoff, limit, AuditEntry.purged.is_(False)
        )
        if seqs:
            session.execute(
                update(AuditEntry)
                .where(AuditEntry.seq.in_(seqs))
                .values(
                    purged=True,
                    actor=None,
                    role=None,
                    action=None,
                    target_type=None,
                    target_id=None,
                    reason=None,
                    outcome=None,
                )
            )
        return len(seqs)
