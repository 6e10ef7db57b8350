"""Security tables shared by every instance."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gardien.security.crypto import BlindIndex, Encrypted
from gardien.storage.base import PERSONAL_DATA, Base


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


class AdminUser(Base):
    """A person of the operator's staff who signs in to the admin."""

    __tablename__ = "admin_user"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(Encrypted("admin_user.email"))
    email_index: Mapped[str] = mapped_column(
        BlindIndex("admin_user.email_index", source="email", normaliser="email"), unique=True
    )
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(200))
    totp_secret: Mapped[str | None] = mapped_column(Encrypted("admin_user.totp_secret"))
    totp_enrolled_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)
    mfa_required: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime]
    password_changed_at: Mapped[dt.datetime]
    disabled_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class AdminSession(Base):
    """A server-side session; the cookie holds a random token, the table only its hash."""

    __tablename__ = "admin_session"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("admin_user.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    mfa_passed: Mapped[bool] = mapped_column(default=False)
    csrf_token: Mapped[str] = mapped_column(String(64))
    flash: Mapped[str | None] = mapped_column(Text, default=None)


class RecoveryCode(Base):
    __tablename__ = "admin_recovery_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("admin_user.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ApiToken(Base):
    """A personal API token: shown once, stored as a hash, scoped to a role."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("admin_user.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(80))
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class AuthThrottle(Base):
    """Failed sign-ins per account or per IP (keyed hash), with the lock they earned."""

    __tablename__ = "auth_throttle"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[dt.datetime]
    locked_until: Mapped[dt.datetime | None] = mapped_column(default=None)
