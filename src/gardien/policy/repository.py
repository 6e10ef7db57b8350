"""All SQL on policy versions."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gardien.policy.models import PolicyVersion


def latest(session: Session) -> PolicyVersion | None:
    return session.scalars(
        select(PolicyVersion).order_by(PolicyVersion.number.desc()).limit(1)
    ).first()


def latest_number(session: Session) -> int | None:
    return session.scalar(select(func.max(PolicyVersion.number)))


def by_number(session: Session, number: int) -> PolicyVersion | None:
    return session.get(PolicyVersion, number)


def in_force_at(session: Session, moment: dt.datetime) -> PolicyVersion | None:
    return session.scalars(
        select(PolicyVersion)
        .where(PolicyVersion.effective_at <= moment)
        .order_by(PolicyVersion.number.desc())
        .limit(1)
    ).first()


def all_versions(session: Session) -> list[PolicyVersion]:
    return list(session.scalars(select(PolicyVersion).order_by(PolicyVersion.number)))
