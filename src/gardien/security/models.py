"""Security tables shared by every instance."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from gardien.storage.base import Base


class RateLimitBucket(Base):
    """A fixed-window counter; the key is a keyed hash, never the raw IP or e-mail."""

    __tablename__ = "rate_limit_bucket"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[dt.datetime]
    count: Mapped[int] = mapped_column(Integer)


class EncryptionKey(Base):
    """A data or index key, wrapped by a master key that never enters the database.

    ``state``: ``active`` (used for new writes), ``reindexing`` (an index key still tried by
    lookups while rows move to the new one) or ``retired`` (kept to read old rows and backups).
    """

    __tablename__ = "encryption_key"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(8))
    master_id: Mapped[str] = mapped_column(String(16))
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[dt.datetime]
    retired_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class AuditEntry(Base):
    """One hash-chained audit event: who did what to which record, never the data itself."""

    __tablename__ = "audit_entry"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    actor: Mapped[str | None] = mapped_column(String(80))
    role: Mapped[str | None] = mapped_column(String(20))
    action: Mapped[str | None] = mapped_column(String(60))
    target_type: Mapped[str | None] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(80))
    reason: Mapped[str | None] = mapped_column(String(300))
    outcome: Mapped[str | None] = mapped_column(String(20))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    purged: Mapped[bool] = mapped_column(default=False)
