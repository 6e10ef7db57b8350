"""Budgets for public writes: one address cannot flood the forms, nor everyone together the site.

Every state-changing request outside the admin (anything but GET, HEAD and OPTIONS) counts
against two fixed-window budgets kept in the database (``ratelimit``), so all instances share
them: one per client address and one for the whole site. Past either, the answer is a 429 with
``Retry-After``, before the application reads the body or touches its own tables. The admin has
its own defences (sign-in lockout) and is exempt.

A request refused for its address does not count against the global budget, so one flooding
address exhausts only its own. IPv6 clients are counted per /64, the block one subscriber
usually holds, or rotating addresses within it would escape the per-address budget.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from gardien.security.connection_log import canonical_ip, client_ip, matches_prefix
from gardien.security.ratelimit import RateLimit, hit
from gardien.storage.clock import Clock
from gardien.storage.database import unit_of_work

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PER_ADDRESS = RateLimit("public_write_ip", 60, dt.timedelta(minutes=1))
OVERALL = RateLimit("public_write_global", 600, dt.timedelta(minutes=1))
DEFAULT_EXEMPT = ("/admin/",)
EVERYONE = "*"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Which budget a request exceeded and when its window reopens (seconds)."""

    budget: Literal["address", "overall"]
    retry_after: int


def budget_subject(ip: str | None) -> str:
    """The per-address bucket's subject: the address, or its /64 for IPv6 (hashed by
    ``ratelimit``, never stored as is)."""
    if ip is None:
        return "unknown"
    address = ipaddress.ip_address(canonical_ip(ip))
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def count_public_write(
    sessions: sessionmaker[Session],
    secret: bytes,
    subject: str,
    now: dt.datetime,
    per_address: RateLimit = PER_ADDRESS,
    overall: RateLimit = OVERALL,
) -> Refusal | None:
    """Count one public write in its own committed transaction; a ``Refusal`` past a budget."""
    with unit_of_work(sessions) as session:
        mine = hit(session, secret, per_address, subject, now)
        if not mine.allowed:
            return Refusal("address", mine.retry_after)
        everyone = hit(session, secret, overall, EVERYONE, now)
        if not everyone.allowed:
            return Refusal("overall", everyone.retry_after)
    return None


class PublicWriteLimits:
    """Pure ASGI middleware answering 429 to public writes past their budgets.

    ``secret`` is read per request because the keys file is opened after the app is built.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        sessions: sessionmaker[Session],
        secret: Callable[[], bytes],
        clock: Clock,
        per_address: RateLimit = PER_ADDRESS,
        overall: RateLimit = OVERALL,
        exempt: Sequence[str] = DEFAULT_EXEMPT,
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.secret = secret
        self.clock = clock
        self.per_address = per_address
        self.overall = overall
        self.exempt = tuple(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in SAFE_METHODS
            or matches_prefix(scope["path"], self.exempt)
        ):
            await self.app(scope, receive, send)
            return
        secret = self.secret()
        if not secret:
            raise RuntimeError("the rate-limit secret is not loaded (runtime.start not called)")
        refusal = await anyio.to_thread.run_sync(
            count_public_write,
            self.sessions,
            secret,
            budget_subject(client_ip(scope)),
            self.clock.now(),
            self.per_address,
            self.overall,
        )
        if refusal is None:
            await self.app(scope, receive, send)
            return
        await _too_many_requests(send, refusal)


async def _too_many_requests(send: Send, refusal: Refusal) -> None:
    detail = (
        "Too many requests from your address; please retry later."
        if refusal.budget == "address"
        else "The service is receiving too many requests; please retry later."
    )
    body = json.dumps(
        {"error": "too_many_requests", "detail": detail, "retry_after": refusal.retry_after}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(refusal.retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
