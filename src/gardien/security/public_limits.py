"""Budgets for public writes: one address cannot flood the forms, nor everyone together the site.

Every state-changing request outside the admin (anything but GET, HEAD and OPTIONS) counts
against two fixed-window budgets: one per client address and one for the whole site. Past
either, the answer is a 429 with ``Retry-After``, before the application reads the body or
touches its own tables. The admin has its own defences (sign-in lockout) and is exempt.

The budgets are shared by every instance through the database buckets of ``ratelimit``, but a
request does not wait for the database: each process decides from what it counted itself plus
the shared totals it last read, and merges its counts into the buckets in the background at
most every ``sync_every`` seconds (one transaction for all its buckets). One process is
therefore exact; with several, a budget may be overrun by what the others counted since their
last merge (about a second of traffic). This keeps public writes, whose own work is a group
commit, from paying a database transaction each for their rate limit.

A request refused for its address does not count against the global budget, so one flooding
address exhausts only its own. IPv6 clients are counted per /64, the block one subscriber
usually holds, or rotating addresses within it would escape the per-address budget.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from gardien.security.connection_log import canonical_ip, client_ip, matches_prefix
from gardien.security.ratelimit import RateLimit, hit, window_start
from gardien.storage.clock import Clock
from gardien.storage.database import unit_of_work

log = logging.getLogger("gardien.public_limits")
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
    """Count one public write in its own committed transaction; a ``Refusal`` past a budget.

    The synchronous, database-only form (scripts, tests); the middleware uses ``Budgets``."""
    with unit_of_work(sessions) as session:
        mine = hit(session, secret, per_address, subject, now)
        if not mine.allowed:
            return Refusal("address", mine.retry_after)
        everyone = hit(session, secret, overall, EVERYONE, now)
        if not everyone.allowed:
            return Refusal("overall", everyone.retry_after)
    return None


@dataclass(slots=True)
class _Tally:
    """One bucket as this process sees it during one window."""

    start: dt.datetime
    shared: int = 0
    """The total of every instance, as last read from the database (this one's merged counts
    included)."""
    inflight: int = 0
    """Counted here and being merged right now."""
    pending: int = 0
    """Counted here since the last merge began."""

    @property
    def used(self) -> int:
        return self.shared + self.inflight + self.pending


class Budgets:
    """The per-address and overall budgets of one process, merged into the shared buckets.

    ``take`` runs on the event loop and never touches the database; ``merge`` (blocking, run in
    a worker thread) adds what was counted since the last merge to the buckets and reads back
    every instance's totals.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        secret: Callable[[], bytes],
        per_address: RateLimit = PER_ADDRESS,
        overall: RateLimit = OVERALL,
        sync_every: float = 1.0,
    ) -> None:
        self.sessions = sessions
        self.secret = secret
        self.per_address = per_address
        self.overall = overall
        self.sync_every = sync_every
        self._tallies: dict[tuple[str, str], tuple[RateLimit, _Tally]] = {}
        self._merging = False
        self._last_merge = time.monotonic()
        """The first merge comes one interval after start, as every later one."""

    def take(self, subject: str, now: dt.datetime) -> Refusal | None:
        mine = self._count(self.per_address, subject, now)
        if mine is not None:
            return Refusal("address", mine)
        everyone = self._count(self.overall, EVERYONE, now)
        if everyone is not None:
            return Refusal("overall", everyone)
        return None

    def _count(self, rule: RateLimit, subject: str, now: dt.datetime) -> int | None:
        """Count one request; the seconds until the window reopens if it is over budget."""
        start = window_start(now, rule.window)
        key = (rule.scope, subject)
        entry = self._tallies.get(key)
        if entry is None or entry[1].start != start:
            entry = self._tallies[key] = (rule, _Tally(start))
        tally = entry[1]
        tally.pending += 1
        if tally.used <= rule.limit:
            return None
        return max(1, math.ceil((start + rule.window - now).total_seconds()))

    def due(self, monotonic: float) -> bool:
        return not self._merging and monotonic - self._last_merge >= self.sync_every

    @property
    def last_merge(self) -> float:
        return self._last_merge

    def has_pending(self) -> bool:
        return any(tally.pending for _, tally in self._tallies.values())

    def begin_merge(self, monotonic: float) -> list[tuple[RateLimit, str, dt.datetime, int]]:
        """On the loop: what to merge (pending counts move in flight); forgets ended windows."""
        self._merging = True
        self._last_merge = monotonic
        batch = []
        for (_scope, subject), (rule, tally) in list(self._tallies.items()):
            tally.inflight, tally.pending = tally.pending, 0
            batch.append((rule, subject, tally.start, tally.inflight))
        return batch

    def merge(
        self, batch: list[tuple[RateLimit, str, dt.datetime, int]], now: dt.datetime
    ) -> dict[tuple[str, str, dt.datetime], int]:
        """In a worker thread: add the counts to the buckets, one transaction; the totals."""
        secret = self.secret()
        totals: dict[tuple[str, str, dt.datetime], int] = {}
        with unit_of_work(self.sessions) as session:
            for rule, subject, start, count in batch:
                if window_start(now, rule.window) != start:
                    continue  # that window is over: its counts no longer matter
                decision = hit(session, secret, rule, subject, now, count=count)
                totals[(rule.scope, subject, start)] = decision.total
        return totals

    def end_merge(
        self, now: dt.datetime, totals: dict[tuple[str, str, dt.datetime], int] | None
    ) -> None:
        """On the loop: take in the totals (``None`` if the merge failed: counts stay local)."""
        self._merging = False
        for key, (rule, tally) in list(self._tallies.items()):
            total = None if totals is None else totals.get((*key, tally.start))
            if total is not None:
                tally.shared = total
            else:
                tally.pending += tally.inflight
            tally.inflight = 0
            if window_start(now, rule.window) != tally.start and not tally.pending:
                del self._tallies[key]

    def flush(self, now: dt.datetime) -> None:
        """Merge now, blocking (tests, shutdown); not while a background merge runs."""
        if self._merging:
            raise RuntimeError("a merge is already running")
        batch = self.begin_merge(time.monotonic())
        try:
            totals = self.merge(batch, now)
        except Exception:
            self.end_merge(now, None)
            raise
        self.end_merge(now, totals)


class PublicWriteLimits:
    """Pure ASGI middleware answering 429 to public writes past their budgets.

    ``secret`` is read when counts are merged because the keys file is opened after the app
    is built.
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
        sync_every: float = 1.0,
    ) -> None:
        self.app = app
        self.clock = clock
        self.secret = secret
        self.exempt = tuple(exempt)
        self.budgets = Budgets(sessions, secret, per_address, overall, sync_every)
        self._later: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in SAFE_METHODS
            or matches_prefix(scope["path"], self.exempt)
        ):
            await self.app(scope, receive, send)
            return
        if not self.secret():
            raise RuntimeError("the rate-limit secret is not loaded (runtime.start not called)")
        now = self.clock.now()
        refusal = self.budgets.take(budget_subject(client_ip(scope)), now)
        monotonic = time.monotonic()
        if self.budgets.due(monotonic):
            self._merge_soon(monotonic, now)
        elif self._later is None:
            # Counts must reach the other instances even if no request follows: a burst of
            # 40 on one instance, then silence, left 39 of them here, and the next instance
            # admitted 60 more (found by tests/e2e/test_instances.py).
            wait = max(0.0, self.budgets.sync_every - (monotonic - self.budgets.last_merge))
            self._later = asyncio.get_running_loop().call_later(wait, self._merge_later)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        await _too_many_requests(send, refusal)

    def _merge_later(self) -> None:
        """The timer set by a request that found a merge not yet due: merge what is pending
        (or try again once the running merge is over)."""
        self._later = None
        monotonic = time.monotonic()
        if self.budgets.due(monotonic):
            self._merge_soon(monotonic, self.clock.now())
        elif self.budgets.has_pending():
            wait = max(0.05, self.budgets.sync_every - (monotonic - self.budgets.last_merge))
            self._later = asyncio.get_running_loop().call_later(wait, self._merge_later)

    def _merge_soon(self, monotonic: float, now: dt.datetime) -> None:
        """Start a merge in a worker thread; the request does not wait for it."""
        budgets = self.budgets
        batch = budgets.begin_merge(monotonic)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, budgets.merge, batch, now)

        def done(finished: asyncio.Future[dict[tuple[str, str, dt.datetime], int]]) -> None:
            error = finished.exception()
            if error is not None:
                log.error("rate-limit merge failed", extra={"error": type(error).__name__})
                budgets.end_merge(self.clock.now(), None)
            else:
                budgets.end_merge(self.clock.now(), finished.result())

        future.add_done_callback(done)


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
