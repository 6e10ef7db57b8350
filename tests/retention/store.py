"""A test-only store of personal data, to prove the retention engine before real stores exist.

It lives in its own MetaData (never in Gardien's migrations) and implements both the
retention store contract and the subject-provider contract, like a real domain would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from gardien.register.schema import RetentionAction, RetentionTrigger
from gardien.storage.base import PERSONAL_DATA, UTCDateTime
from gardien.storage.subjects import ErasureOutcome, FoundRecords, JsonScalar, SubjectIdentity

test_metadata = MetaData()

sample_record = Table(
    "sample_record",
    test_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(200), nullable=True),
    Column("collected_at", UTCDateTime(), nullable=False),
    Column("anonymised", Integer, nullable=False, default=0),
    info={PERSONAL_DATA: True},
)
assert isinstance(sample_record.c.collected_at.type, UTCDateTime | DateTime)


class SampleStore:
    store_id = "sample_store"
    triggers = frozenset({RetentionTrigger.collected})
    actions = frozenset({RetentionAction.delete, RetentionAction.anonymise})
    name = "sample"
    tables = frozenset({"sample_record"})

    # -- retention --------------------------------------------------------------------------
    def _due(self, cutoff: dt.datetime):  # type: ignore[no-untyped-def]
        return (sample_record.c.collected_at < cutoff) & (sample_record.c.anonymised == 0)

    def oldest(self, session: Session, trigger: RetentionTrigger) -> dt.datetime | None:
        value = session.scalar(
            select(func.min(sample_record.c.collected_at)).where(sample_record.c.anonymised == 0)
        )
        return UTCDateTime().process_result_value(value, session.get_bind().dialect)

    def count_due(self, session: Session, trigger: RetentionTrigger, cutoff: dt.datetime) -> int:
        return int(session.scalar(select(func.count()).where(self._due(cutoff))) or 0)

    def purge_chunk(
        self,
        session: Session,
        trigger: RetentionTrigger,
        action: RetentionAction,
        cutoff: dt.datetime,
        limit: int,
    ) -> int:
        ids = list(
            session.scalars(
                select(sample_record.c.id)
                .where(self._due(cutoff))
                .order_by(sample_record.c.id)
                .limit(limit)
            )
        )
        if not ids:
            return 0
        where = sample_record.c.id.in_(ids)
        if action is RetentionAction.delete:
            session.execute(delete(sample_record).where(where))
        else:
            session.execute(update(sample_record).where(where).values(email=None, anonymised=1))
        return len(ids)

    # -- subject provider -------------------------------------------------------------------
    def _mine(self, subject: SubjectIdentity):  # type: ignore[no-untyped-def]
        return sample_record.c.email == subject.email

    def find(self, session: Session, subject: SubjectIdentity) -> FoundRecords:
        count = session.scalar(select(func.count()).where(self._mine(subject))) or 0
        return FoundRecords(self.name, {"sample_activity": int(count)})

    def export(
        self, session: Session, subject: SubjectIdentity
    ) -> dict[str, list[dict[str, JsonScalar]]]:
        rows = session.execute(select(sample_record.c.email).where(self._mine(subject)))
        return {"sample_activity": [{"email": r.email} for r in rows]}

    def rectify(
        self, session: Session, subject: SubjectIdentity, corrections: Mapping[str, str]
    ) -> int:
        return 0

    def erase(self, session: Session, subject: SubjectIdentity) -> ErasureOutcome:
        result = session.execute(delete(sample_record).where(self._mine(subject)))
        return ErasureOutcome(self.name, erased=int(getattr(result, "rowcount", 0)))

    def restrict(self, session: Session, subject: SubjectIdentity, restricted: bool) -> int:
        return 0

    def object(self, session: Session, subject: SubjectIdentity, activity_id: str) -> int:
        return 0
