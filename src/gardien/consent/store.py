"""Retention and data-subject requests for the consent records.

Both end in tombstones: the record's content is emptied (consent id, choices, page, user
agent, everything the hash covers) while its sequence number and hashes stay, so the chain
still verifies after a lawful purge or an erasure and fails after any other edit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from gardien.consent.models import CONSENT_INDEX_CONTEXT, ConsentRecord
from gardien.register.schema import RetentionAction, RetentionTrigger
from gardien.retention.stores import due_keys
from gardien.security.crypto import blind_lookups
from gardien.storage.subjects import ErasureOutcome, FoundRecords, JsonScalar, SubjectIdentity

ACTIVITY = "consent_records"
TOMBSTONE: dict[str, Any] = {
    "purged": True,
    "consent_id": None,
    "consent_id_index": None,
    "action": None,
    "layer": None,
    "control": None,
    "choices": None,
    "revision": None,
    "content_hash": None,
    "policy_version": None,
    "language": None,
    "page": None,
    "user_agent": None,
    "client_time": None,
    "gpc": None,
    "dnt": None,
    "expires_at": None,
}


class ConsentRecordStore:
    """Records past the register's period become tombstones."""

    store_id = "consent_record"
    triggers = frozenset({RetentionTrigger.collected})
    actions = frozenset({RetentionAction.delete})

    def oldest(self, session: Session, trigger: RetentionTrigger) -> dt.datetime | None:
        return session.scalar(
            select(func.min(ConsentRecord.occurred_at)).where(ConsentRecord.purged.is_(False))
        )

    def count_due(self, session: Session, trigger: RetentionTrigger, cutoff: dt.datetime) -> int:
        return int(
            session.scalar(
                select(func.count()).where(
                    ConsentRecord.occurred_at < cutoff, ConsentRecord.purged.is_(False)
                )
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
        if action is not RetentionAction.delete:
            raise ValueError(f"consent records cannot {action}")
        seqs = due_keys(
            session,
            ConsentRecord.seq,
            ConsentRecord.occurred_at,
            cutoff,
            limit,
            ConsentRecord.purged.is_(False),
        )
        if seqs:
            session.execute(
                update(ConsentRecord).where(ConsentRecord.seq.in_(seqs)).values(**TOMBSTONE)
            )
        return len(seqs)


class ConsentProvider:
    """Finds, exports and erases a person's consent records by their consent id."""

    name = ACTIVITY
    tables = frozenset({"consent_record"})

    @staticmethod
    def _mine(subject: SubjectIdentity) -> ColumnElement[bool] | None:
        if not subject.consent_id:
            return None
        lookups = blind_lookups(subject.consent_id.strip().lower(), CONSENT_INDEX_CONTEXT)
        return ConsentRecord.consent_id_index.in_(lookups) & ConsentRecord.purged.is_(False)

    def find(self, session: Session, subject: SubjectIdentity) -> FoundRecords:
        mine = self._mine(subject)
        if mine is None:
            return FoundRecords(
                self.name,
                {ACTIVITY: 0},
                note=(
                    "Consent records are kept under the random consent id shown in the "
                    "cookie panel; without it they cannot be tied to a person (Art. 11(2))."
                ),
            )
        count = session.scalar(select(func.count()).select_from(ConsentRecord).where(mine))
        return FoundRecords(self.name, {ACTIVITY: int(count or 0)})

    def export(
        self, session: Session, subject: SubjectIdentity
    ) -> dict[str, list[dict[str, JsonScalar]]]:
        from gardien.consent.service import public

        mine = self._mine(subject)
        if mine is None:
            return {ACTIVITY: []}
        rows = []
        for record in session.scalars(
            select(ConsentRecord).where(mine).order_by(ConsentRecord.seq)
        ):
            fields = public(record)
            choices = fields.pop("choices") or {}
            for kind in ("categories", "services"):
                for name, granted in (choices.get(kind) or {}).items():
                    fields[f"{kind}.{name}"] = bool(granted)
            rows.append(fields)
        return {ACTIVITY: rows}

    def erase(self, session: Session, subject: SubjectIdentity) -> ErasureOutcome:
        mine = self._mine(subject)
        if mine is None:
            return ErasureOutcome(self.name, erased=0)
        result = session.execute(update(ConsentRecord).where(mine).values(**TOMBSTONE))
        return ErasureOutcome(self.name, erased=int(getattr(result, "rowcount", 0)))

    def rectify(
        self, session: Session, subject: SubjectIdentity, corrections: Mapping[str, str]
    ) -> int:
        """Nothing to rectify: a record states what the visitor decided, when; a new decision
        is a new record, never an edit of an old one."""
        return 0

    def restrict(self, session: Session, subject: SubjectIdentity, restricted: bool) -> int:
        """Records are only ever kept as evidence (storage and legal claims, which Art. 18(2)
        allows during a restriction); nothing else processes them."""
        return 0

    def object(self, session: Session, subject: SubjectIdentity, activity_id: str) -> int:
        """The basis is a legal obligation (proof of consent, Art. 7(1)): no objection applies."""
        return 0
