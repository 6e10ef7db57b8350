"""The one record of who restricted processing (GDPR Art. 18) or won an objection (Art. 21),
and the check every processing point consults.

A restriction is keyed by the blind indexes of the identifiers the person gave (e-mail,
phone, consent id, visitor id, IP address), under a context of its own, never by a clear
value. It names its ``reason`` (``restriction``, ``objection``, or ``deceased``: the freeze
between a notified death and the execution of the post-mortem directive), its scope (``activity``:
``None`` for every activity, which is what a restriction means; one register activity for an
upheld objection) and when it was lifted. Domains do not import ``rights``: they ask
``is_restricted`` here, and each place that processes personal data beyond storing it
registers itself with ``processing_point`` so the coverage test can enumerate them (see
docs/rights.md, "Restriction and objection").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import ForeignKey, Integer, String, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from gardien.security.crypto import blind_index, blind_lookups
from gardien.storage.base import Base
from gardien.storage.subjects import SubjectIdentity

KEY_INDEX = "rights_restriction.key_index"
RESTRICTION = "restriction"
OBJECTION = "objection"
DECEASED = "deceased"
"""The freeze of a deceased person's data between the death notice and the execution of
their post-mortem directive (or of the heirs' limited rights), legal-requirements §2.9.6."""
REASONS = (RESTRICTION, OBJECTION, DECEASED)
_NORMALISERS = {
    "email": "email",
    "phone": "text",
    "consent_id": "text",
    "visitor_id": "text",
    "ip_address": "ip",
}
KINDS = tuple(_NORMALISERS)


class SubjectRestriction(Base):
    """One identifier of one person whose processing is restricted (or objected to)."""

    __tablename__ = "rights_restriction"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("rights_case.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(12))
    key_index: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(String(12))
    activity: Mapped[str | None] = mapped_column(String(64), default=None)
    """``None``: every activity (a restriction); else the one activity objected to."""
    created_at: Mapped[dt.datetime]
    lifted_at: Mapped[dt.datetime | None] = mapped_column(default=None, index=True)


def _value(kind: str, value: str) -> str:
    value = value.strip()
    return value.lower() if kind in ("consent_id", "visitor_id") else value


def keys_of(subject: SubjectIdentity) -> list[tuple[str, str]]:
    """``(kind, blind index)`` of each identifier of ``subject``."""
    keys = []
    for kind in KINDS:
        value = getattr(subject, kind)
        if value and value.strip():
            keys.append((kind, blind_index(_value(kind, value), KEY_INDEX, _NORMALISERS[kind])))
    return keys


def add(
    session: Session,
    case_id: int,
    subject: SubjectIdentity,
    reason: str,
    activity: str | None,
    now: dt.datetime,
) -> int:
    """Record the restriction of each identifier (one already active is not repeated)."""
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}")
    added = 0
    for kind, index in keys_of(subject):
        existing = session.scalar(
            select(SubjectRestriction.id).where(
                SubjectRestriction.key_index == index,
                SubjectRestriction.reason == reason,
                SubjectRestriction.lifted_at.is_(None),
                SubjectRestriction.activity.is_(None)
                if activity is None
                else SubjectRestriction.activity == activity,
            )
        )
        if existing is None:
            session.add(
                SubjectRestriction(
                    case_id=case_id,
                    kind=kind,
                    key_index=index,
                    reason=reason,
                    activity=activity,
                    created_at=now,
                )
            )
            added += 1
    session.flush()
    return added


def lift(session: Session, case_id: int, reason: str, now: dt.datetime) -> int:
    """Lift the case's active records of ``reason``; returns how many."""
    result = session.execute(
        update(SubjectRestriction)
        .where(
            SubjectRestriction.case_id == case_id,
            SubjectRestriction.reason == reason,
            SubjectRestriction.lifted_at.is_(None),
        )
        .values(lifted_at=now)
    )
    session.flush()
    return int(getattr(result, "rowcount", 0) or 0)


def active(session: Session, case_id: int) -> list[SubjectRestriction]:
    return list(
        session.scalars(
            select(SubjectRestriction)
            .where(SubjectRestriction.case_id == case_id, SubjectRestriction.lifted_at.is_(None))
            .order_by(SubjectRestriction.id)
        )
    )


def frozen_by(session: Session, subject: SubjectIdentity, reason: str) -> list[int]:
    """The cases holding an active record of ``reason`` on any identifier of ``subject``."""
    keys = [
        lookup
        for kind in KINDS
        if (value := getattr(subject, kind)) and value.strip()
        for lookup in blind_lookups(_value(kind, value), KEY_INDEX, _NORMALISERS[kind])
    ]
    if not keys:
        return []
    return list(
        session.scalars(
            select(SubjectRestriction.case_id)
            .where(
                SubjectRestriction.key_index.in_(keys),
                SubjectRestriction.reason == reason,
                SubjectRestriction.lifted_at.is_(None),
            )
            .distinct()
            .order_by(SubjectRestriction.case_id)
        )
    )


def any_active(session: Session) -> bool:
    """Whether anyone is restricted at all (lets a batch skip the per-row checks)."""
    found = select(SubjectRestriction.id).where(SubjectRestriction.lifted_at.is_(None)).limit(1)
    return session.scalar(found) is not None


def is_restricted(session: Session, activity: str, **identifiers: str | None) -> bool:
    """Whether any of the given identifiers (``email=``, ``phone=``...) is restricted for
    ``activity``: by a restriction (every activity) or an upheld objection to it."""
    lookups: list[str] = []
    for kind, value in identifiers.items():
        if kind not in _NORMALISERS:
            raise ValueError(f"unknown identifier kind {kind!r}")
        if value and value.strip():
            lookups += blind_lookups(_value(kind, value), KEY_INDEX, _NORMALISERS[kind])
    if not lookups:
        return False
    found = session.scalar(
        select(SubjectRestriction.id)
        .where(
            SubjectRestriction.key_index.in_(lookups),
            SubjectRestriction.lifted_at.is_(None),
            or_(SubjectRestriction.activity.is_(None), SubjectRestriction.activity == activity),
        )
        .limit(1)
    )
    return found is not None


F = TypeVar("F", bound=Callable[..., object])
PROCESSING_POINTS: dict[str, str] = {}
"""Every place that processes personal data beyond storing it and honours restrictions:
point name → the function's dotted name. ``tests/rights/test_restriction_coverage.py`` checks
the list against the providers and each function's use of a restriction check."""


def processing_point(name: str) -> Callable[[F], F]:
    """Register the decorated function as a processing point named ``name``."""

    def register(function: F) -> F:
        PROCESSING_POINTS[name] = f"{function.__module__}.{function.__qualname__}"
        return function

    return register
