"""Banner revisions: a number for each distinct banner content, archived at start-up.

``ensure_current`` runs when Gardien starts (as the policy publication does): if the register
now yields a content whose hash no revision has, it archives it as the next revision, with
what changed, and leaves an audit entry. Several instances starting together serialise on the
audit lock, so they agree on one number. The result is cached in the process (``Current``) so
recording a decision costs no query.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gardien.consent import content as banner
from gardien.consent.models import ConsentRevision
from gardien.policy.models import PolicyVersion
from gardien.register.durations import parse_period
from gardien.register.schema import Register
from gardien.security import audit


@dataclass(frozen=True)
class Current:
    """The revision in force and what recording a decision against it needs."""

    number: int
    content_hash: str
    optional: tuple[str, ...]
    required: tuple[str, ...]
    services: dict[str, tuple[str, ...]]
    changes: dict[str, list[str]]
    document: dict[str, Any] = field(repr=False)
    policy_version: int | None = None
    lifetime: str | None = None
    configs: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def expires(self, decided: dt.datetime) -> dt.datetime | None:
        return parse_period(self.lifetime).after(decided) if self.lifetime else None


def ensure_current(session: Session, register: Register, now: dt.datetime) -> Current:
    """The revision matching the register, archived first if it is new. Flushes; the caller
    commits."""
    document = banner.content(register)
    digest = banner.content_hash(document)
    audit._lock(session)  # one chain lock for audit and revisions: instances agree on numbers
    existing = session.scalar(select(ConsentRevision).where(ConsentRevision.content_hash == digest))
    if existing is None:
        latest = session.scalar(select(ConsentRevision).order_by(ConsentRevision.number.desc()))
        previous = json.loads(latest.content) if latest else None
        changes = banner.changes(previous, document)
        existing = ConsentRevision(
            number=(latest.number + 1) if latest else 1,
            content_hash=digest,
            created_at=now,
            content=banner.canonical(document),
            changes=dict(changes),
        )
        session.add(existing)
        session.flush()
        audit.record(
            session,
            audit.Actor.system("serve"),
            "consent.revision",
            now,
            target_type="consent_revision",
            target_id=str(existing.number),
            reason=digest,
        )
    categories = banner.categories(register)
    policy = session.scalar(select(PolicyVersion.number).order_by(PolicyVersion.number.desc()))
    changes_ids: dict[str, list[str]] = {
        str(k): list(v) for k, v in (existing.changes or {}).items() if isinstance(v, list)
    }
    return Current(
        number=existing.number,
        content_hash=digest,
        optional=tuple(c.id for c in categories if not c.required),
        required=tuple(c.id for c in categories if c.required),
        services={c.id: c.services for c in categories},
        changes=changes_ids,
        document=document,
        policy_version=policy,
        lifetime=register.consent.lifetime if register.consent else None,
    )


def known_revisions(session: Session) -> dict[int, str]:
    return dict(
        session.execute(select(ConsentRevision.number, ConsentRevision.content_hash)).tuples().all()
    )
