"""Retention and data-subject requests for the consent records.

Both end in tombstones: the record's content is emptied (consent id, choices, page, user
agent, everything the hash covers) while its sequence number and hashes stay, so the chain
still verifies after a lawful purge or an erasure and fails after any other edit.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select, update
from sqlalchemy.orm import Session

from gardien.consent.models import (
    CONSENT_INDEX_CONTEXT,
    ConsentRecord,
    ConsentRevision,
    consent_record,
)
from gardien.consent.records import extend_chain
from gardien.register.schema import RetentionAction, RetentionTrigger
from gardien.retention.stores import due_keys
from gardien.security.crypto import blind_index, blind_lookups
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


def _required(session: Session, revision: int) -> tuple[frozenset[str], frozenset[str]]:
    """The strictly necessary categories of a banner revision and their services (never
    refused)."""
    content = session.scalar(
        select(ConsentRevision.content).where(ConsentRevision.number == revision)
    )
    categories: set[str] = set()
    services: set[str] = set()
    for language in ((json.loads(content) if content else {}).get("languages") or {}).values():
        for category in language.get("categories") or []:
            if category.get("required"):
                categories.add(str(category["id"]))
                services.update(str(s) for s in category.get("services") or [])
    return frozenset(categories), frozenset(services)


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

    def withdraw(self, session: Session, subject: SubjectIdentity, now: dt.datetime) -> int:
        """Withdraw what the consent id still grants, as the cookie panel does: a new record
        ``withdraw`` in the hash-chain (layer ``api``, through the rights portal), every
        optional category refused, against the revision of the person's last decision.
        Nothing is written when their last decision already refuses everything."""
        mine = self._mine(subject)
        if mine is None or subject.consent_id is None:
            return 0
        last = session.scalars(
            select(ConsentRecord).where(mine).order_by(ConsentRecord.seq.desc()).limit(1)
        ).first()
        if last is None or last.revision is None:
            return 0
        required, kept_services = _required(session, last.revision)
        choices: dict[str, Any] = dict(last.choices or {})
        categories: dict[str, Any] = dict(choices.get("categories") or {})
        services: dict[str, Any] = dict(choices.get("services") or {})
        granted = [c for c, on in categories.items() if on and c not in required]
        if not granted:
            return 0
        refused = {c: c in required for c in categories}
        consent_id = subject.consent_id.strip().lower()
        row: dict[str, Any] = {
            "seq": 0,
            "event_id": uuid.uuid4().hex,
            "occurred_at": now,
            "consent_id": consent_id,
            "consent_id_index": blind_index(consent_id, CONSENT_INDEX_CONTEXT),
            "action": "withdraw",
            "layer": "api",
            "control": "api",
            "choices": {
                "categories": refused,
                "services": {s: s in kept_services for s in services},
            },
            "revision": last.revision,
            "content_hash": last.content_hash,
            "policy_version": last.policy_version,
            "language": last.language,
            "page": "/rights",
            "user_agent": None,
            "client_time": None,
            "gpc": False,
            "dnt": False,
            "expires_at": last.expires_at,
            "prev_hash": "",
            "hash": "",
            "purged": False,
        }
        connection = session.connection()
        extend_chain(connection, [row])
        connection.execute(insert(consent_record), [row])
        return len(granted)

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
