"""Retention and data-subject requests for form submissions, their outbox and disclosures.

A submission, its outbox messages (and their ``.eml`` copies) and its disclosure entries go
together: the retention engine purges them at the register's period (counted from receipt),
and an erasure removes them at once. People are found by the blind index of their e-mail
address or phone number.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session

from gardien.forms.models import DisclosureEntry, FormSubmission, OutboxMessage
from gardien.register.schema import RetentionAction, RetentionTrigger
from gardien.retention.stores import due_keys
from gardien.security.crypto import blind_index, blind_lookups
from gardien.storage.subjects import ErasureOutcome, FoundRecords, JsonScalar, SubjectIdentity

log = logging.getLogger("gardien.forms")
ACTIVITY = "contact_forms"
EMAIL_INDEX = "form_submission.email_index"
PHONE_INDEX = "form_submission.phone_index"
WITHDRAWN = "withdrawn"
"""The status of a submission (and of its unsent e-mails) whose consent was withdrawn."""


def email_index(email: str) -> str:
    return blind_index(email, EMAIL_INDEX, "email")


def phone_index(phone: str) -> str:
    return blind_index(phone, PHONE_INDEX)


def _remove_files(paths: list[str | None]) -> None:
    for path in paths:
        if path:
            try:
                Path(path).unlink(missing_ok=True)
            except OSError as exc:
                log.error("cannot remove an .eml copy", extra={"error": type(exc).__name__})


def remove_submissions(session: Session, ids: list[int]) -> int:
    """Delete submissions with their outbox rows, ``.eml`` copies and disclosure entries."""
    if not ids:
        return 0
    files = list(
        session.scalars(select(OutboxMessage.eml_path).where(OutboxMessage.submission_id.in_(ids)))
    )
    session.execute(delete(OutboxMessage).where(OutboxMessage.submission_id.in_(ids)))
    session.execute(delete(DisclosureEntry).where(DisclosureEntry.submission_id.in_(ids)))
    session.execute(delete(FormSubmission).where(FormSubmission.id.in_(ids)))
    session.flush()
    _remove_files(files)
    return len(ids)


class FormSubmissionStore:
    """Submissions past the register's period are deleted with everything attached."""

    store_id = "form_submission"
    triggers = frozenset({RetentionTrigger.collected})
    actions = frozenset({RetentionAction.delete})

    def oldest(self, session: Session, trigger: RetentionTrigger) -> dt.datetime | None:
        return session.scalar(select(func.min(FormSubmission.received_at)))

    def count_due(self, session: Session, trigger: RetentionTrigger, cutoff: dt.datetime) -> int:
        return int(
            session.scalar(select(func.count()).where(FormSubmission.received_at < cutoff)) or 0
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
            raise ValueError(f"form submissions cannot {action}")
        ids = due_keys(session, FormSubmission.id, FormSubmission.received_at, cutoff, limit)
        return remove_submissions(session, ids)


class FormsProvider:
    """Finds, exports, rectifies, erases and restricts a person's submissions by e-mail or
    phone."""

    name = ACTIVITY
    tables = frozenset({"form_submission", "outbox_message", "disclosure_log"})

    @staticmethod
    def _mine(subject: SubjectIdentity) -> ColumnElement[bool] | None:
        conditions = []
        if subject.email:
            conditions.append(
                FormSubmission.email_index.in_(blind_lookups(subject.email, EMAIL_INDEX, "email"))
            )
        if subject.phone:
            conditions.append(
                FormSubmission.phone_index.in_(blind_lookups(subject.phone, PHONE_INDEX))
            )
        return or_(*conditions) if conditions else None

    def _submissions(self, session: Session, subject: SubjectIdentity) -> list[FormSubmission]:
        mine = self._mine(subject)
        if mine is None:
            return []
        return list(session.scalars(select(FormSubmission).where(mine).order_by(FormSubmission.id)))

    def find(self, session: Session, subject: SubjectIdentity) -> FoundRecords:
        mine = self._mine(subject)
        if mine is None:
            return FoundRecords(
                self.name,
                {ACTIVITY: 0},
                note="Form submissions are found by the e-mail address or phone number given.",
            )
        count = session.scalar(select(func.count()).select_from(FormSubmission).where(mine))
        return FoundRecords(self.name, {ACTIVITY: int(count or 0)})

    def export(
        self, session: Session, subject: SubjectIdentity
    ) -> dict[str, list[dict[str, JsonScalar]]]:
        rows: list[dict[str, JsonScalar]] = []
        for submission in self._submissions(session, subject):
            values: dict[str, Any] = json.loads(submission.fields)
            disclosures = session.scalars(
                select(DisclosureEntry).where(DisclosureEntry.submission_id == submission.id)
            )
            rows.append(
                {
                    "form": submission.form_id,
                    "received_at": submission.received_at.isoformat(),
                    "delete_after": submission.delete_after.isoformat(),
                    "language": submission.language,
                    "legal_basis": submission.legal_basis,
                    "policy_version": submission.policy_version,
                    "status": submission.status,
                    **{f"field.{k}": v for k, v in values.items()},
                    "sent_to": ", ".join(
                        f"{d.recipient} ({d.at.date().isoformat()})" for d in disclosures
                    ),
                }
            )
        return {ACTIVITY: rows}

    def rectify(
        self, session: Session, subject: SubjectIdentity, corrections: Mapping[str, str]
    ) -> int:
        """Apply corrections to the submitted values (field name → new value)."""
        changed = 0
        for submission in self._submissions(session, subject):
            values = json.loads(submission.fields)
            updated = {**values, **{k: v for k, v in corrections.items() if k in values}}
            if updated != values:
                submission.fields = json.dumps(updated, ensure_ascii=False)
                if updated.get("email"):
                    submission.email_index = email_index(str(updated["email"]))
                if updated.get("phone"):
                    submission.phone_index = phone_index(str(updated["phone"]))
                changed += 1
        session.flush()
        return changed

    def withdraw(self, session: Session, subject: SubjectIdentity, now: dt.datetime) -> int:
        """Withdraw the consent given with the person's submissions (Art. 7(3)): each one
        whose basis is consent is marked ``withdrawn`` and its e-mails not yet sent are
        not sent; nothing further is done with it until retention deletes it."""
        ids = [
            s.id
            for s in self._submissions(session, subject)
            if s.legal_basis == "consent" and s.status != WITHDRAWN
        ]
        if not ids:
            return 0
        session.execute(
            update(FormSubmission).where(FormSubmission.id.in_(ids)).values(status=WITHDRAWN)
        )
        session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.submission_id.in_(ids),
                OutboxMessage.status.in_(("pending", "held")),
            )
            .values(status=WITHDRAWN)
        )
        session.flush()
        return len(ids)

    def erase(self, session: Session, subject: SubjectIdentity) -> ErasureOutcome:
        ids = [s.id for s in self._submissions(session, subject)]
        return ErasureOutcome(self.name, erased=remove_submissions(session, ids))

    def restrict(self, session: Session, subject: SubjectIdentity, restricted: bool) -> int:
        ids = [s.id for s in self._submissions(session, subject)]
        if not ids:
            return 0
        session.execute(
            update(FormSubmission).where(FormSubmission.id.in_(ids)).values(restricted=restricted)
        )
        if restricted:  # not e-mailed while restricted
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.submission_id.in_(ids), OutboxMessage.status == "pending")
                .values(status="held")
            )
        else:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.submission_id.in_(ids), OutboxMessage.status == "held")
                .values(status="pending")
            )
        return len(ids)

    def object(self, session: Session, subject: SubjectIdentity, activity_id: str) -> int:
        """The basis is consent: objection does not apply; withdrawal erases (Art. 7(3))."""
        return 0
