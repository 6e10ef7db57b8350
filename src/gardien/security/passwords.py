"""Password hashing (argon2id, argon2-cffi's defaults) and the rules a new password meets."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gardien.errors import N_, Localised

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
MIN_LENGTH = 12
MAX_LENGTH = 256


class WeakPassword(Localised, ValueError):
    """Refused by the strength rules; the message says which."""


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(N_("a password needs at least %(count)s characters"), count=MIN_LENGTH)
    if len(password) > MAX_LENGTH:
        raise WeakPassword(N_("a password has at most %(count)s characters"), count=MAX_LENGTH)
    if len(set(password)) < 5:
        raise WeakPassword(N_("a password needs more than a few distinct characters"))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)


@cache
def _dummy() -> str:
    # Computed on first use, not at import: a hash costs a few hundred ms of start-up.
    return _hasher.hash("gardien-timing-equaliser")


def burn_time(password: str) -> None:
    """Verify against a dummy hash so an unknown account costs the same time as a known one."""
    verify_password(_dummy(), password)
