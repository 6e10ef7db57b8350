"""Rate limits kept in the database, so every instance behind a load balancer shares them.

Fixed windows: one row per (scope, subject), counted with a single UPDATE ... RETURNING so two
requests on two processes can never both take the last slot. Subjects (an IP, an e-mail) are
stored only as a keyed hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
from dataclasses import dataclass

from sqlalchemy import case, delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gardien.errors import N_, TooManyRequests
from gardien.security.models import RateLimitBucket


@dataclass(frozen=True, slots=True)
class RateLimit:
    scope: str
    limit: int
    window: dt.timedelta


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    remaining: int
    retry_after: int
    total: int = 0
    """Requests counted in the window so far, by every instance."""


def bucket_key(secret: bytes, scope: str, subject: str) -> str:
    return hmac.new(secret, f"{scope}\x00{subject}".encode(), hashlib.sha256).hexdigest()


def _window_start(now: dt.datetime, window: dt.timedelta) -> dt.datetime:
    seconds = window.total_seconds()
    epoch = now.timestamp()
    return dt.datetime.fromtimestamp(math.floor(epoch / seconds) * seconds, dt.UTC)


def window_start(now: dt.datetime, window: dt.timedelta) -> dt.datetime:
    return _window_start(now, window)


def hit(
    session: Session,
    secret: bytes,
    rule: RateLimit,
    subject: str,
    now: dt.datetime,
    count: int = 1,
) -> RateDecision:
    """Count ``count`` requests of ``subject`` against ``rule`` (one by default; zero reads
    the window's total); flushes, the caller commits."""
    key = bucket_key(secret, rule.scope, subject)
    start = _window_start(now, rule.window)
    statement = (
        update(RateLimitBucket)
        .where(RateLimitBucket.key == key)
        .values(
            count=case(
                (RateLimitBucket.window_start == start, RateLimitBucket.count + count),
                else_=count,
            ),
            window_start=start,
        )
        .returning(RateLimitBucket.count)
    )
    total = session.execute(statement).scalar_one_or_none()
    if total is None:
        try:
            with session.begin_nested():
                session.add(RateLimitBucket(key=key, window_start=start, count=count))
            total = count
        except IntegrityError:
            total = session.execute(statement).scalar_one()
    retry_after = max(1, math.ceil((start + rule.window - now).total_seconds()))
    return RateDecision(
        allowed=total <= rule.limit,
        remaining=max(0, rule.limit - total),
        retry_after=retry_after,
        total=total,
    )


def enforce(
    session: Session, secret: bytes, rule: RateLimit, subject: str, now: dt.datetime
) -> None:
    """Like ``hit`` but raise ``TooManyRequests`` (429 with Retry-After) past the limit."""
    decision = hit(session, secret, rule, subject, now)
    if not decision.allowed:
        raise TooManyRequests(
            N_("too many requests for %(scope)s"), decision.retry_after, scope=rule.scope
        )


def purge_expired(session: Session, older_than: dt.datetime) -> int:
    result = session.execute(
        delete(RateLimitBucket).where(RateLimitBucket.window_start < older_than)
    )
    return int(getattr(result, "rowcount", 0))
