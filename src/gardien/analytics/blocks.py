"""People whose further hits are not stored: restrictions (Art. 18) and upheld objections
(Art. 21) recorded by the rights workflow through the analytics provider.

A block names an identifier the tracker sends, by kind: ``visitor:`` (the tracker's or the
cookie's visitor id), ``user:`` (a consenting site's user id) or ``consent:`` (the banner's
consent id). Only their blind indexes are compared on the hot path: every instance keeps the
set of blocked indexes in memory and re-reads it from the database every few seconds, so a
block recorded on one instance holds on all of them within ``REFRESH`` (documented in
docs/analytics.md).

A withdrawal of consent (Art. 7(3)) is not forever: it withdraws the consents given **before**
it. Its block keeps the time of the latest withdrawal, and a hit is refused only when the
consent cookie it carries states a decision made at or before that time; a consent the person
gives again in the banner afterwards (a new decision, a new cookie) is honoured.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.orm import Session

from gardien.analytics.models import BLOCK_KEY_INDEX_CONTEXT, AnalyticsBlock
from gardien.security.crypto import blind_index, blind_lookups
from gardien.storage.subjects import SubjectIdentity

REFRESH = 5.0
"""Seconds a process trusts its copy of the block list."""
RESTRICTION = "restriction"
OBJECTION = "objection"
WITHDRAWAL = "withdrawal"
"""Consent withdrawn through the rights portal: hits under that consent id sent with a consent
given before the withdrawal are not stored."""


@dataclass(frozen=True)
class Blocks:
    """One process's copy of the block list, by blind index: ``always`` (restrictions and
    objections) and ``withdrawn`` (index → the latest withdrawal, UTC)."""

    always: frozenset[str] = frozenset()
    withdrawn: Mapping[str, dt.datetime] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.always or self.withdrawn)


def block_keys(subject: SubjectIdentity) -> list[str]:
    """The identifiers a person is known by in audience measurement, as block keys."""
    keys: list[str] = []
    if subject.visitor_id and subject.visitor_id.strip():
        value = subject.visitor_id.strip()
        keys.append(f"visitor:{value.lower()}")
        keys.append(f"user:{value}")
    if subject.consent_id and subject.consent_id.strip():
        keys.append(f"consent:{subject.consent_id.strip().lower()}")
    return keys


def hit_keys(visitor_id: str | None, user_id: str | None, consent_id: str | None) -> Iterator[str]:
    """The block keys one hit would match."""
    if visitor_id:
        yield f"visitor:{visitor_id.lower()}"
    if user_id:
        yield f"user:{user_id}"
    if consent_id:
        yield f"consent:{consent_id.lower()}"


def add_blocks(session: Session, keys: Iterable[str], reason: str, now: dt.datetime) -> int:
    """Record a block for each key not already blocked for ``reason``; returns how many. A
    withdrawal already recorded is moved to ``now`` (and counted): it withdraws every consent
    given up to now, including one given again since the last withdrawal."""
    added = 0
    for key in keys:
        lookups = blind_lookups(key, BLOCK_KEY_INDEX_CONTEXT)
        existing = session.scalars(
            select(AnalyticsBlock).where(
                AnalyticsBlock.key_index.in_(lookups), AnalyticsBlock.reason == reason
            )
        ).first()
        if existing is not None and reason == WITHDRAWAL and existing.created_at < now:
            existing.created_at = now
            added += 1
        elif existing is None:
            session.add(
                AnalyticsBlock(
                    key=key,
                    key_index=blind_index(key, BLOCK_KEY_INDEX_CONTEXT),
                    reason=reason,
                    created_at=now,
                )
            )
            added += 1
    session.flush()
    return added


def remove_blocks(session: Session, keys: Iterable[str], reason: str) -> int:
    """Lift the ``reason`` blocks of these keys; returns how many were lifted."""
    removed = 0
    for key in keys:
        result = session.execute(
            delete(AnalyticsBlock).where(
                AnalyticsBlock.key_index.in_(blind_lookups(key, BLOCK_KEY_INDEX_CONTEXT)),
                AnalyticsBlock.reason == reason,
            )
        )
        removed += int(getattr(result, "rowcount", 0) or 0)
    return removed


class BlockList:
    """Each engine's blocked indexes, read at most every ``REFRESH`` seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: weakref.WeakKeyDictionary[Engine, tuple[float, Blocks]] = (
            weakref.WeakKeyDictionary()
        )

    def fresh(self, engine: Engine) -> Blocks | None:
        """The cached set if it is recent enough (no database access), else ``None``."""
        with self._lock:
            cached = self._cache.get(engine)
        if cached is None or time.monotonic() - cached[0] > REFRESH:
            return None
        return cached[1]

    def load(self, engine: Engine) -> Blocks:
        always: set[str] = set()
        withdrawn: dict[str, dt.datetime] = {}
        with Session(engine) as session:
            for index, reason, at in session.execute(
                select(AnalyticsBlock.key_index, AnalyticsBlock.reason, AnalyticsBlock.created_at)
            ):
                if reason == WITHDRAWAL:
                    withdrawn[index] = max(at, withdrawn.get(index, at))
                else:
                    always.add(index)
        indexes = Blocks(frozenset(always), withdrawn)
        with self._lock:
            self._cache[engine] = (time.monotonic(), indexes)
        return indexes

    def forget(self, bind: Engine | Connection) -> None:
        """Drop this process's copy (after recording a block here): the next hit re-reads."""
        engine = bind.engine if isinstance(bind, Connection) else bind
        with self._lock:
            self._cache.pop(engine, None)


def blocked(blocks: Blocks, keys: Iterable[str], decided_at: dt.datetime | None = None) -> bool:
    """Whether any of ``keys`` is blocked: restricted or objected to, or a consent id whose
    consent was withdrawn after ``decided_at`` (the decision the hit's consent cookie states;
    without one, any withdrawal blocks)."""
    if not blocks:
        return False
    for key in keys:
        for index in blind_lookups(key, BLOCK_KEY_INDEX_CONTEXT):
            if index in blocks.always:
                return True
            withdrawn = blocks.withdrawn.get(index)
            if withdrawn is not None and (decided_at is None or decided_at <= withdrawn):
                return True
    return False


block_list = BlockList()
