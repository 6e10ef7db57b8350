"""People whose further hits are not stored: restrictions (Art. 18) and upheld objections
(Art. 21) recorded by the rights workflow through the analytics provider.

A block names an identifier the tracker sends, by kind: ``visitor:`` (the tracker's or the
cookie's visitor id), ``user:`` (a consenting site's user id) or ``consent:`` (the banner's
consent id). Only their blind indexes are compared on the hot path: every instance keeps the
set of blocked indexes in memory and re-reads it from the database every few seconds, so a
block recorded on one instance holds on all of them within ``REFRESH`` (documented in
docs/analytics.md).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import weakref
from collections.abc import Iterable, Iterator

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
"""Consent withdrawn through the rights portal: hits under that consent id are not stored."""


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
    """Record a block for each key not already blocked for ``reason``; returns how many."""
    added = 0
    for key in keys:
        lookups = blind_lookups(key, BLOCK_KEY_INDEX_CONTEXT)
        existing = session.scalar(
            select(AnalyticsBlock.id).where(
                AnalyticsBlock.key_index.in_(lookups), AnalyticsBlock.reason == reason
            )
        )
        if existing is None:
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
        self._cache: weakref.WeakKeyDictionary[Engine, tuple[float, frozenset[str]]] = (
            weakref.WeakKeyDictionary()
        )

    def fresh(self, engine: Engine) -> frozenset[str] | None:
        """The cached set if it is recent enough (no database access), else ``None``."""
        with self._lock:
            cached = self._cache.get(engine)
        if cached is None or time.monotonic() - cached[0] > REFRESH:
            return None
        return cached[1]

    def load(self, engine: Engine) -> frozenset[str]:
        with Session(engine) as session:
            indexes = frozenset(session.scalars(select(AnalyticsBlock.key_index)))
        with self._lock:
            self._cache[engine] = (time.monotonic(), indexes)
        return indexes

    def forget(self, bind: Engine | Connection) -> None:
        """Drop this process's copy (after recording a block here): the next hit re-reads."""
        engine = bind.engine if isinstance(bind, Connection) else bind
        with self._lock:
            self._cache.pop(engine, None)


def blocked(indexes: frozenset[str], keys: Iterable[str]) -> bool:
    """Whether any of ``keys`` is in the blocked ``indexes``."""
    if not indexes:
        return False
    return any(
        index in indexes for key in keys for index in blind_lookups(key, BLOCK_KEY_INDEX_CONTEXT)
    )


block_list = BlockList()
