"""Publishing policy versions: a new version whenever the rendered content changes."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from gardien.errors import N_, BadRequest, NotFound
from gardien.policy import repository
from gardien.policy.document import (
    PolicyDocument,
    build_documents,
    content_hash,
    document_from_json,
)
from gardien.policy.models import PolicyVersion
from gardien.register.loader import snapshot
from gardien.register.schema import Register


@dataclass(frozen=True)
class Published:
    version: PolicyVersion
    created: bool


def publish(session: Session, register: Register, now: dt.datetime, published_by: str) -> Published:
    """Record a new version if the policy's content differs from the latest; flushes only.

    Two instances publishing at once race on the primary key (the number); the loser's
    transaction fails and it finds the winner's version on retry.
    """
    documents = build_documents(register)
    digest = content_hash(documents)
    current = repository.latest(session)
    if current is not None and current.content_hash == digest:
        return Published(current, created=False)
    version = PolicyVersion(
        number=(current.number + 1) if current else 1,
        effective_at=now,
        content_hash=digest,
        register_snapshot=json.dumps(snapshot(register), ensure_ascii=False, sort_keys=True),
        documents=json.dumps(
            {code: doc.to_json() for code, doc in documents.items()}, ensure_ascii=False
        ),
        published_by=published_by,
    )
    session.add(version)
    session.flush()
    return Published(version, created=True)


def documents_of(version: PolicyVersion) -> dict[str, PolicyDocument]:
    raw: dict[str, Any] = json.loads(version.documents)
    return {code: document_from_json(data) for code, data in raw.items()}


def get_version(session: Session, number: int) -> PolicyVersion:
    version = repository.by_number(session, number)
    if version is None:
        raise NotFound(N_("policy version %(number)s does not exist"), number=number)
    return version


def in_force_on(session: Session, day: str) -> PolicyVersion:
    """The version in force at the end of ``day`` (YYYY-MM-DD, UTC)."""
    try:
        date = dt.date.fromisoformat(day)
    except ValueError as exc:
        raise BadRequest(N_("'at' must be a date in the form YYYY-MM-DD")) from exc
    if len(day) != 10:
        raise BadRequest(N_("'at' must be a date in the form YYYY-MM-DD"))
    end_of_day = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(), dt.UTC)
    version = repository.in_force_at(session, end_of_day - dt.timedelta(microseconds=1))
    if version is None:
        raise NotFound(N_("no policy version was in force on %(date)s"), date=date.isoformat())
    return version
