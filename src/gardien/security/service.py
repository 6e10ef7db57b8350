"""Admin accounts: sign-in with lockout and backoff, TOTP, server-side sessions, API tokens.

Every function flushes and leaves the commit to its caller (the request or the command).
Secrets are generated with ``secrets``; what is stored of them is a hash (session tokens,
API tokens, recovery codes) or ciphertext (TOTP secrets, e-mail addresses).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import unicodedata
from dataclasses import dataclass

import pyotp
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from gardien.errors import N_, BadRequest, Conflict, Localised, NotFound
from gardien.security.crypto import blind_index, blind_lookups, normalise_email
from gardien.security.models import AdminSession, AdminUser, ApiToken, AuthThrottle, RecoveryCode
from gardien.security.passwords import (
    burn_time,
    check_strength,
    hash_password,
    needs_rehash,
    verify_password,
)
from gardien.security.permissions import Role, can_grant

IDLE_TIMEOUT = dt.timedelta(minutes=30)
ABSOLUTE_TIMEOUT = dt.timedelta(hours=12)
FREE_FAILURES = 5
"""Failed sign-ins allowed before the first lock; each further failure doubles the lock."""
FIRST_LOCK = dt.timedelta(minutes=1)
FAILURE_WINDOW = dt.timedelta(hours=24)
"""Failures older than this are forgotten: last month's typos do not count against today."""
LONGEST_LOCK = dt.timedelta(hours=1)
RECOVERY_CODES = 10
TOKEN_PREFIX = "gdn_"  # noqa: S105 - a public marker, not a secret


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)


def plain_text(value: str, field: str, limit: int) -> str:
    """A one-line free-text value: trimmed, bounded, without control characters."""
    value = value.strip()
    if not value or len(value) > limit:
        raise BadRequest(N_("%(field)s needs 1 to %(limit)s characters"), field=field, limit=limit)
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        raise BadRequest(N_("%(field)s must not contain control characters"), field=field)
    return value


def _email_context() -> str:
    return "admin_user.email_index"


# -- accounts -------------------------------------------------------------------------------


def find_user_by_email(session: Session, email: str) -> AdminUser | None:
    lookups = blind_lookups(email, _email_context(), "email")
    return session.scalars(select(AdminUser).where(AdminUser.email_index.in_(lookups))).first()


def create_user(
    session: Session, email: str, role: str, password: str, now: dt.datetime
) -> AdminUser:
    try:
        role = Role(role).value
    except ValueError as exc:
        raise BadRequest(
            N_("unknown role (one of %(roles)s)"), roles=", ".join(r.value for r in Role)
        ) from exc
    if not _EMAIL.fullmatch(email.strip()) or len(email) > 254:
        raise BadRequest(N_("not an e-mail address"))
    check_strength(password)
    if find_user_by_email(session, email) is not None:
        raise Conflict(N_("an account with this e-mail address already exists"))
    user = AdminUser(
        email=email.strip(),
        email_index=blind_index(email, _email_context(), "email"),
        role=role,
        password_hash=hash_password(password),
        created_at=now,
        password_changed_at=now,
        mfa_required=True,
        totp_last_step=0,
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, user_id: int) -> AdminUser:
    user = session.get(AdminUser, user_id)
    if user is None:
        raise NotFound(N_("no such account"))
    return user


def list_users(session: Session) -> list[AdminUser]:
    return list(session.scalars(select(AdminUser).order_by(AdminUser.id)))


def change_password(
    session: Session, user: AdminUser, current: str, new: str, now: dt.datetime
) -> None:
    if not verify_password(user.password_hash, current):
        raise BadRequest(N_("the current password is wrong"))
    check_strength(new)
    user.password_hash = hash_password(new)
    user.password_changed_at = now
    # Every other session of the account ends: a changed password locks out whoever knew it.
    session.execute(delete(AdminSession).where(AdminSession.user_id == user.id))
    session.flush()


# -- throttling -----------------------------------------------------------------------------


def _throttle_key(secret: bytes, scope: str, subject: str) -> str:
    return hmac.new(secret, f"login\x00{scope}\x00{subject}".encode(), hashlib.sha256).hexdigest()


def locked_until(
    session: Session, secret: bytes, keys: list[tuple[str, str]], now: dt.datetime
) -> dt.datetime | None:
    hashed = [_throttle_key(secret, scope, subject) for scope, subject in keys]
    until = session.scalars(
        select(AuthThrottle.locked_until).where(
            AuthThrottle.key.in_(hashed), AuthThrottle.locked_until > now
        )
    ).all()
    present = [moment for moment in until if moment is not None]
    return max(present) if present else None


def record_failure(
    session: Session, secret: bytes, keys: list[tuple[str, str]], now: dt.datetime
) -> None:
    for scope, subject in keys:
        key = _throttle_key(secret, scope, subject)
        row = session.get(AuthThrottle, key, with_for_update=True)
        if row is None:
            row = AuthThrottle(key=key, failures=0, last_failure_at=now)
            session.add(row)
        if now - row.last_failure_at > FAILURE_WINDOW:
            row.failures = 0
        row.failures += 1
        row.last_failure_at = now
        if row.failures >= FREE_FAILURES:
            lock = min(FIRST_LOCK * 2 ** (row.failures - FREE_FAILURES), LONGEST_LOCK)
            row.locked_until = now + lock
    session.flush()


def clear_failures(session: Session, secret: bytes, scope: str, subject: str) -> None:
    session.execute(
        delete(AuthThrottle).where(AuthThrottle.key == _throttle_key(secret, scope, subject))
    )


class SignInRefused(Localised):
    """Wrong credentials or a lock; the message is the same for an unknown account."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def authenticate(
    session: Session, secret: bytes, email: str, password: str, ip: str, now: dt.datetime
) -> AdminUser:
    account = normalise_email(email)
    keys = [("account", account), ("ip", ip)]
    until = locked_until(session, secret, keys, now)
    if until is not None:
        burn_time(password)
        raise SignInRefused(
            N_("too many failed attempts: try again later"),
            retry_after=max(1, int((until - now).total_seconds())),
        )
    user = find_user_by_email(session, email)
    if user is None or user.disabled_at is not None:
        burn_time(password)
        record_failure(session, secret, keys, now)
        raise SignInRefused(N_("wrong e-mail address or password"))
    if not verify_password(user.password_hash, password):
        record_failure(session, secret, keys, now)
        raise SignInRefused(N_("wrong e-mail address or password"))
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    clear_failures(session, secret, "account", account)
    return user


# -- TOTP and recovery codes ----------------------------------------------------------------


def start_enrolment(user: AdminUser) -> str:
    """A fresh secret for the enrolment page (kept encrypted until confirmed)."""
    if user.totp_enrolled_at is None:
        user.totp_secret = pyotp.random_base32()
    assert user.totp_secret is not None
    return user.totp_secret


def provisioning_uri(user: AdminUser, issuer: str) -> str:
    assert user.totp_secret is not None
    return pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.email, issuer_name=issuer)


def verify_totp(user: AdminUser, code: str, now: dt.datetime) -> bool:
    """Accept the current step (±1 for clock drift), never a step already used (no replay)."""
    if user.totp_secret is None or not code.strip().isdigit() or len(code.strip()) != 6:
        return False
    totp = pyotp.TOTP(user.totp_secret)
    step = int(now.timestamp()) // totp.interval
    for candidate in (step - 1, step, step + 1):
        if candidate <= user.totp_last_step:
            continue
        # Bytes: compare_digest raises on non-ASCII text, and a code is whatever was typed.
        if hmac.compare_digest(
            totp.at(candidate * totp.interval).encode(), code.strip().encode(errors="replace")
        ):
            user.totp_last_step = candidate
            return True
    return False


def confirm_enrolment(session: Session, user: AdminUser, code: str, now: dt.datetime) -> list[str]:
    if not verify_totp(user, code, now):
        raise BadRequest(N_("the code does not match: check your device's clock and try again"))
    user.totp_enrolled_at = now
    return new_recovery_codes(session, user)


def new_recovery_codes(session: Session, user: AdminUser) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [f"{secrets.token_hex(4)}-{secrets.token_hex(4)}" for _ in range(RECOVERY_CODES)]
    session.add_all(RecoveryCode(user_id=user.id, code_hash=_sha256(code)) for code in codes)
    session.flush()
    return codes


def use_recovery_code(session: Session, user: AdminUser, code: str, now: dt.datetime) -> bool:
    row = session.scalars(
        select(RecoveryCode).where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _sha256(code.strip().lower()),
            RecoveryCode.used_at.is_(None),
        )
    ).first()
    if row is None:
        return False
    row.used_at = now
    return True


# -- sessions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewSession:
    token: str
    record: AdminSession


def open_session(session: Session, user: AdminUser, now: dt.datetime) -> NewSession:
    token = secrets.token_urlsafe(32)
    record = AdminSession(
        token_hash=_sha256(token),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + ABSOLUTE_TIMEOUT,
        mfa_passed=False,
        csrf_token=secrets.token_urlsafe(32),
    )
    session.add(record)
    session.flush()
    return NewSession(token, record)


def resume_session(session: Session, token: str, now: dt.datetime) -> AdminSession | None:
    """The live session for a cookie token, touched; expired ones are deleted."""
    if not token or len(token) > 100:
        return None
    record = session.get(AdminSession, _sha256(token))
    if record is None:
        return None
    if now >= record.expires_at or now - record.last_seen_at >= IDLE_TIMEOUT:
        session.delete(record)
        session.flush()
        return None
    record.last_seen_at = now
    return record


def close_session(session: Session, record: AdminSession) -> None:
    session.delete(record)
    session.flush()


def set_flash(record: AdminSession, kind: str, message: str) -> None:
    messages = json.loads(record.flash) if record.flash else []
    messages.append({"kind": kind, "message": message})
    record.flash = json.dumps(messages[-5:])


def pop_flash(record: AdminSession) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = json.loads(record.flash) if record.flash else []
    record.flash = None
    return messages


def purge_expired_sessions(session: Session, now: dt.datetime) -> int:
    """Drop ended sessions and forgotten sign-in failures (run with the scheduled jobs)."""
    result = session.execute(
        delete(AdminSession).where(
            (AdminSession.expires_at <= now) | (AdminSession.last_seen_at <= now - IDLE_TIMEOUT)
        )
    )
    session.execute(
        delete(AuthThrottle).where(
            AuthThrottle.last_failure_at <= now - FAILURE_WINDOW,
            (AuthThrottle.locked_until.is_(None)) | (AuthThrottle.locked_until <= now),
        )
    )
    return int(getattr(result, "rowcount", 0))


# -- API tokens -----------------------------------------------------------------------------


def create_token(
    session: Session, user: AdminUser, name: str, role: str, now: dt.datetime
) -> tuple[ApiToken, str]:
    """Returns the token row and the token itself, which is shown once and never stored."""
    name = plain_text(name, "a token's name", 80)
    try:
        Role(role)
    except ValueError as exc:
        raise BadRequest(N_("unknown role")) from exc
    if not can_grant(user.role, role):
        raise BadRequest(N_("a token cannot have more rights than its owner"))
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        role=role,
        token_hash=_sha256(secret),
        prefix=secret[:10],
        created_at=now,
    )
    session.add(token)
    session.flush()
    return token, secret


def tokens_of(session: Session, user: AdminUser) -> list[ApiToken]:
    return list(
        session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id))
    )


def revoke_token(session: Session, user: AdminUser, token_id: int, now: dt.datetime) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound(N_("no such token"))
    token.revoked_at = token.revoked_at or now
    return token


def authenticate_token(session: Session, secret: str, now: dt.datetime) -> ApiToken | None:
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 100:
        return None
    token = session.scalars(
        select(ApiToken).where(
            ApiToken.token_hash == _sha256(secret), ApiToken.revoked_at.is_(None)
        )
    ).first()
    if token is None:
        return None
    owner = session.get(AdminUser, token.user_id)
    if owner is None or owner.disabled_at is not None:
        return None
    session.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
    return token
