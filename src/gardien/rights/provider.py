"""Retention and data-subject requests for the rights case files themselves.

A case file is the evidence that a request was handled lawfully (Art. 5(2), legal-requirements
§4.1): an erasure request keeps it, stating why, but erases the documents attached to the
person's cases (a scanned letter: its SHA-256 stays in the timeline); the retention engine
deletes a case, with its timeline, notes, answers and attachments, once the register's period
has run from its closure.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping

from sqlalchemy import ColumnElement, Select, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from gardien.forms.models import DisclosureEntry, OutboxMessage
from gardien.register.schema import RetentionAction, RetentionTrigger
from gardien.retention.stores import due_keys
from gardien.rights.amendments import (
    DIRECTIVE_EMAIL_INDEX,
    DIRECTIVE_PHONE_INDEX,
    RightsDirective,
    RightsRectification,
)
from gardien.rights.exchange import RightsDocument, RightsDownload, RightsNotice, shred
from gardien.rights.models import (
    CONSENT_ID_INDEX,
    EMAIL_INDEX,
    IP_INDEX,
    PHONE_INDEX,
    VISITOR_ID_INDEX,
    RightsAnswer,
    RightsAttachment,
    RightsCase,
    RightsEvent,
    RightsVerification,
)
from gardien.security.crypto import blind_lookups
from gardien.storage.subjects import ErasureOutcome, FoundRecords, JsonScalar, SubjectIdentity

ACTIVITY = "rights_requests"
KEPT_REASON = (
    "the case file is the evidence that the request was handled (Art. 5(2)); it is kept for "
    "the establishment, exercise or defence of legal claims (Art. 17(3)(b) and (e)) and "
    "deleted when the register's retention period has run from the case's closure"
)


def normalised_consent_id(value: str) -> str:
    return value.strip().lower()


def cases_of(subject: SubjectIdentity) -> ColumnElement[bool]:
    """The condition matching the cases opened for any identifier of ``subject``."""
    conditions: list[ColumnElement[bool]] = []
    if subject.email:
        conditions.append(
            RightsCase.email_index.in_(blind_lookups(subject.email, EMAIL_INDEX, "email"))
        )
    if subject.phone:
        conditions.append(RightsCase.phone_index.in_(blind_lookups(subject.phone, PHONE_INDEX)))
    if subject.consent_id:
        lookups = blind_lookups(normalised_consent_id(subject.consent_id), CONSENT_ID_INDEX)
        conditions.append(RightsCase.consent_id_index.in_(lookups))
    if subject.visitor_id:
        lookups = blind_lookups(subject.visitor_id, VISITOR_ID_INDEX)
        conditions.append(RightsCase.visitor_id_index.in_(lookups))
    if subject.ip_address:
        conditions.append(
            RightsCase.ip_index.in_(blind_lookups(subject.ip_address, IP_INDEX, "ip"))
        )
    return or_(*conditions)


def _forget_messages(session: Session, outbox_ids: Select[tuple[int | None]]) -> None:
    """Delete outbox rows and the disclosure entries of what they sent."""
    message_ids = select(OutboxMessage.message_id).where(OutboxMessage.id.in_(outbox_ids))
    session.execute(delete(DisclosureEntry).where(DisclosureEntry.message_id.in_(message_ids)))
    session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(outbox_ids)))


def forget_codes(session: Session, ids: list[int]) -> None:
    """Delete the cases' one-time codes with the messages that carried them."""
    _forget_messages(
        session, select(RightsVerification.outbox_id).where(RightsVerification.case_id.in_(ids))
    )
    session.execute(delete(RightsVerification).where(RightsVerification.case_id.in_(ids)))


def remove_cases(session: Session, ids: list[int]) -> int:
    if not ids:
        return 0
    session.execute(delete(RightsEvent).where(RightsEvent.case_id.in_(ids)))
    session.execute(delete(RightsAttachment).where(RightsAttachment.case_id.in_(ids)))
    session.execute(delete(RightsAnswer).where(RightsAnswer.case_id.in_(ids)))
    session.execute(delete(RightsRectification).where(RightsRectification.case_id.in_(ids)))
    # A directive outlives the case that recorded it (it is for after the person's death).
    session.execute(
        update(RightsDirective).where(RightsDirective.case_id.in_(ids)).values(case_id=None)
    )
    # The portal's code e-mails and the notices (outbox rows and their disclosure entries)
    # go with the case, and so do a package or a document still on disk.
    forget_codes(session, ids)
    outbox_ids = select(RightsNotice.outbox_id).where(RightsNotice.case_id.in_(ids))
    _forget_messages(session, outbox_ids)
    session.execute(delete(RightsNotice).where(RightsNotice.case_id.in_(ids)))
    # The messages that told recipients (Art. 19) name the person: they go too, with the
    # restriction records and the notifications (imported here: they import this module).
    from gardien.rights.recipients import RightsRecipientNotice
    from gardien.storage.restriction import SubjectRestriction

    told = select(RightsRecipientNotice.outbox_id).where(RightsRecipientNotice.case_id.in_(ids))
    _forget_messages(session, told)
    session.execute(delete(RightsRecipientNotice).where(RightsRecipientNotice.case_id.in_(ids)))
    session.execute(delete(SubjectRestriction).where(SubjectRestriction.case_id.in_(ids)))
    for table in (RightsDownload, RightsDocument):
        for path in session.scalars(
            select(table.path).where(table.case_id.in_(ids), table.path.is_not(None))
        ):
            shred(path or "")
        session.execute(delete(table).where(table.case_id.in_(ids)))
    session.execute(delete(RightsCase).where(RightsCase.id.in_(ids)))
    session.flush()
    return len(ids)


class RightsCaseProvider:
    """Finds and exports a person's case files; an erasure keeps them, stating why, and
    erases the documents attached to them."""

    name = ACTIVITY
    tables = frozenset(
        {
            "rights_case",
            "rights_event",
            "rights_verification",
            "rights_attachment",
            "rights_answer",
            "rights_notice",
            "rights_download",
            "rights_document",
            "rights_rectification",
            "rights_directive",
        }
    )

    def find(self, session: Session, subject: SubjectIdentity) -> FoundRecords:
        """The person's cases and the documents attached to them."""
        cases = session.scalar(
            select(func.count()).select_from(RightsCase).where(cases_of(subject))
        )
        return FoundRecords(
            self.name, {ACTIVITY: int(cases or 0) + self._attachments(session, subject)}
        )

    @staticmethod
    def _attachment_ids(subject: SubjectIdentity) -> Select[tuple[int]]:
        return (
            select(RightsAttachment.id)
            .join(RightsCase, RightsCase.id == RightsAttachment.case_id)
            .where(cases_of(subject))
        )

    def _attachments(self, session: Session, subject: SubjectIdentity) -> int:
        ids = self._attachment_ids(subject).subquery()
        return int(session.scalar(select(func.count()).select_from(ids)) or 0)

    def export(
        self, session: Session, subject: SubjectIdentity
    ) -> dict[str, list[dict[str, JsonScalar]]]:
        rows: list[dict[str, JsonScalar]] = []
        for case in session.scalars(
            select(RightsCase).where(cases_of(subject)).order_by(RightsCase.id)
        ):
            rows.append(
                {
                    "reference": case.reference,
                    "rights": case.rights,
                    "channel": case.channel,
                    "status": case.status,
                    "received_at": case.received_at.isoformat(),
                    "due_date": case.due_at.isoformat(),
                    "closed_at": case.closed_at.isoformat() if case.closed_at else None,
                    "outcome": case.outcome,
                    "email": case.email,
                    "phone": case.phone,
                    "consent_id": case.consent_id,
                    "visitor_id": case.visitor_id,
                    "ip_address": case.ip_address,
                    "verification_basis": case.verification_basis,
                    "notes": case.notes,
                    "answers": json.dumps(
                        [
                            {"at": a.at.isoformat(), "kind": a.kind, "text": a.body}
                            for a in session.scalars(
                                select(RightsAnswer)
                                .where(RightsAnswer.case_id == case.id)
                                .order_by(RightsAnswer.id)
                            )
                        ],
                        ensure_ascii=False,
                    ),
                    "attachments": json.dumps(
                        [
                            {"added_at": at.isoformat(), "type": kind, "bytes": size}
                            for at, kind, size in session.execute(
                                select(
                                    RightsAttachment.added_at,
                                    RightsAttachment.media_type,
                                    RightsAttachment.size,
                                )
                                .where(RightsAttachment.case_id == case.id)
                                .order_by(RightsAttachment.id)
                            )
                        ]
                    ),
                }
            )
        return {ACTIVITY: rows}

    def rectify(
        self, session: Session, subject: SubjectIdentity, corrections: Mapping[str, str]
    ) -> int:
        """Nothing to rectify: a case records what was asked and done; a correction of the
        person's details is a step of the case, not an edit of the past."""
        return 0

    def erase(self, session: Session, subject: SubjectIdentity) -> ErasureOutcome:
        """Deletes the attached documents; the case files themselves are kept (``KEPT_REASON``)."""
        ids = list(session.scalars(self._attachment_ids(subject)))
        if ids:
            session.execute(delete(RightsAttachment).where(RightsAttachment.id.in_(ids)))
            session.flush()
        ids.extend(tombstone_directives(session, subject))
        kept = self.find(session, subject).total
        return ErasureOutcome(
            self.name, erased=len(ids), kept=kept, kept_reason=KEPT_REASON if kept else None
        )

    def restrict(self, session: Session, subject: SubjectIdentity, restricted: bool) -> int:
        """Case files are only ever kept as evidence, which Art. 18(2) allows."""
        return 0

    def object(self, session: Session, subject: SubjectIdentity, activity_id: str) -> int:
        """The basis is a legal obligation (Arts. 12 and 5(2)): no objection applies."""
        return 0


def directives_of(subject: SubjectIdentity) -> ColumnElement[bool]:
    """The directives recorded under the person's e-mail address or phone number."""
    found: list[ColumnElement[bool]] = []
    if subject.email:
        lookups = blind_lookups(subject.email, DIRECTIVE_EMAIL_INDEX, "email")
        found.append(RightsDirective.email_index.in_(lookups))
    if subject.phone:
        lookups = blind_lookups(subject.phone, DIRECTIVE_PHONE_INDEX)
        found.append(RightsDirective.phone_index.in_(lookups))
    return or_(*found) if found else RightsDirective.id.is_(None)


def tombstone_directives(session: Session, subject: SubjectIdentity) -> list[int]:
    """Empty the person's post-mortem directives, keeping their dates and outcome (the
    evidence of what was recorded and done, never its content)."""
    ids = list(session.scalars(select(RightsDirective.id).where(directives_of(subject))))
    if ids:
        session.execute(
            update(RightsDirective)
            .where(RightsDirective.id.in_(ids))
            .values(email=None, email_index=None, phone=None, phone_index=None, body=None)
        )
        session.flush()
    return ids


def not_restricting() -> ColumnElement[bool]:
    """Cases with no active restriction or upheld objection: a case that still restricts
    processing is kept past its period, so a purge never lifts one without the notice
    (Art. 18(3)); lifting it lets the next run delete the case."""
    from gardien.storage.restriction import SubjectRestriction

    return ~exists().where(
        SubjectRestriction.case_id == RightsCase.id, SubjectRestriction.lifted_at.is_(None)
    )


class RightsCaseStore:
    """Closed case files past the register's period are deleted with their timeline."""

    store_id = "rights_request"
    triggers = frozenset({RetentionTrigger.case_closed})
    actions = frozenset({RetentionAction.delete})

    def oldest(self, session: Session, trigger: RetentionTrigger) -> dt.datetime | None:
        return session.scalar(select(func.min(RightsCase.closed_at)))

    def count_due(self, session: Session, trigger: RetentionTrigger, cutoff: dt.datetime) -> int:
        return int(
            session.scalar(
                select(func.count())
                .select_from(RightsCase)
                .where(
                    RightsCase.closed_at.is_not(None),
                    RightsCase.closed_at < cutoff,
                    not_restricting(),
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
            raise ValueError(f"rights case files cannot {action}")
        ids = due_keys(
            session,
            RightsCase.id,
            RightsCase.closed_at,
            cutoff,
            limit,
            RightsCase.closed_at.is_not(None),
            not_restricting(),
        )
        return remove_cases(session, ids)
