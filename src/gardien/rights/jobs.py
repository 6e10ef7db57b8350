"""The rights domain's sweeps: short-lived working data deleted at every retention run, each
with a purge receipt (``retention.stores.Sweep``).

- ``rights_download``: an access package whose one-time link expired unused;
- ``rights_document``: an identity document still undecided after the register's
  ``rights.identity_document_max_days``;
- ``rights_unverified``: a portal request never confirmed with its code within
  ``rights.verification_window_days``: the case is closed, its identifiers (encrypted values
  and blind indexes) and its codes with their messages are erased. The case keeps only the
  rights asked, the dates and its timeline, so the portal's answers are unaffected (it never
  looks at what Gardien holds) and the person is no longer identifiable from it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from gardien.register.schema import Register
from gardien.retention.stores import Sweep
from gardien.rights import documents
from gardien.rights.exchange import RightsDocument, RightsDownload
from gardien.rights.models import RightsCase
from gardien.rights.provider import ACTIVITY, forget_codes
from gardien.rights.service import add_event
from gardien.security.audit import Actor

RETENTION = Actor.system("retention")
IDENTIFIERS = (
    "email",
    "email_index",
    "phone",
    "phone_index",
    "consent_id",
    "consent_id_index",
    "visitor_id",
    "visitor_id_index",
    "ip_address",
    "ip_index",
)


class ExpiredDownloads:
    sweep_id = "rights_download"
    activity = ACTIVITY
    trigger = "link_expired"

    def limit(self, register: Register) -> dt.timedelta:
        return dt.timedelta(days=register.rights.download_link_days)

    def sweep_chunk(
        self, session: Session, cutoff: dt.datetime, now: dt.datetime, limit: int
    ) -> int:
        # Each link carries its own expiry, fixed when it was made.
        return documents.expire_packages(session, now, limit)

    def count_due(self, session: Session, cutoff: dt.datetime, now: dt.datetime) -> int:
        return _count(session, RightsDownload, documents.expired_packages(now))


class UndecidedDocuments:
    sweep_id = "rights_document"
    activity = ACTIVITY
    trigger = "document_received"

    def limit(self, register: Register) -> dt.timedelta:
        return dt.timedelta(days=register.rights.identity_document_max_days)

    def sweep_chunk(
        self, session: Session, cutoff: dt.datetime, now: dt.datetime, limit: int
    ) -> int:
        return documents.expire_documents(session, cutoff, now, limit)

    def count_due(self, session: Session, cutoff: dt.datetime, now: dt.datetime) -> int:
        return _count(session, RightsDocument, documents.overdue_documents(cutoff))


class UnverifiedRequests:
    sweep_id = "rights_unverified"
    activity = ACTIVITY
    trigger = "request_received"

    def limit(self, register: Register) -> dt.timedelta:
        return dt.timedelta(days=register.rights.verification_window_days)

    def sweep_chunk(
        self, session: Session, cutoff: dt.datetime, now: dt.datetime, limit: int
    ) -> int:
        return close_unverified(session, cutoff, now, limit)

    def count_due(self, session: Session, cutoff: dt.datetime, now: dt.datetime) -> int:
        return _count(session, RightsCase, unverified(cutoff))


def unverified(cutoff: dt.datetime) -> ColumnElement[bool]:
    """Open portal cases received before ``cutoff`` and never verified."""
    return and_(
        RightsCase.channel == "portal",
        RightsCase.status == "open",
        RightsCase.verified_at.is_(None),
        RightsCase.received_at < cutoff,
    )


def _count(session: Session, table: type[object], condition: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count()).select_from(table).where(condition)) or 0)


def close_unverified(session: Session, cutoff: dt.datetime, now: dt.datetime, limit: int) -> int:
    """Close up to ``limit`` portal cases received before ``cutoff`` and never verified, and
    erase their identifiers, codes and code messages."""
    cases = session.scalars(
        select(RightsCase).where(unverified(cutoff)).order_by(RightsCase.id).limit(limit)
    ).all()
    if not cases:
        return 0
    forget_codes(session, [case.id for case in cases])
    for case in cases:
        for name in IDENTIFIERS:
            setattr(case, name, None)
        case.status = "closed"
        case.closed_at = now
        case.outcome = "not_verified"
        add_event(
            session,
            case,
            now,
            RETENTION,
            "identifiers_erased",
            "never confirmed within the verification window: closed, identifiers and codes erased",
        )
    session.flush()
    return len(cases)


def sweeps() -> list[Sweep]:
    return [ExpiredDownloads(), UndecidedDocuments(), UnverifiedRequests()]
