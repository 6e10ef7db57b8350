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

With ``GARDIEN_REDIS_URL`` set, the budgets are counted in Redis instead (``SharedBudgets``):
each request is one atomic script on the Redis server, so several instances share one exact
budget with no slack. If Redis cannot be reached, a request is counted by the database path
above, and Redis is tried again a few seconds later: a limiter outage never refuses a write.

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
from typing import Any, Literal

from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from gardien.security.connection_log import canonical_ip, client_ip, matches_prefix
from gardien.security.ratelimit import RateLimit, bucket_key, hit, window_start
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
        return _reopens(rule, now)

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


_TAKE = """
local mine = redis.call('INCR', KEYS[1])
if mine == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if mine > tonumber(ARGV[2]) then return {mine, 0} end
local everyone = redis.call('INCR', KEYS[2])
if everyone == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return {mine, everyone}
"""
"""Count one write of an address and, unless that address is over its budget, of everyone,
atomically; a bucket expires a minute after its window ends."""


class SharedBudgets:
    """The budgets counted in Redis (``GARDIEN_REDIS_URL``): exact across instances.

    A bucket's key is ``gardien:rate:<keyed hash of scope and subject>:<window start>``: no
    address reaches Redis, and two installations sharing one Redis never share a bucket (the
    hash is keyed by each one's own secret). ``take`` raises ``RedisError`` or ``OSError``
    when Redis cannot answer; the middleware then counts the request in the database.
    """

    RETRY_AFTER_FAILURE = 5.0
    """Seconds the middleware counts in the database after a failure before trying again."""

    def __init__(
        self,
        url: str,
        secret: Callable[[], bytes],
        per_address: RateLimit = PER_ADDRESS,
        overall: RateLimit = OVERALL,
    ) -> None:
        self.url = url
        self.secret = secret
        self.per_address = per_address
        self.overall = overall
        self._client: Any = None
        self._script: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.down_until = 0.0
        # Imported here, like the client: Redis is some 6 MB a server without it never needs.
        from redis.exceptions import RedisError

        self.failures: tuple[type[Exception], ...] = (RedisError, OSError)
        """What ``take`` raises when Redis cannot answer."""

    def _connect(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            from redis.asyncio import Redis

            # A client's connections belong to the loop that opened them.
            self._client = Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
            self._script = self._client.register_script(_TAKE)
            self._loop = loop
        return self._script

    def _key(self, secret: bytes, rule: RateLimit, subject: str, now: dt.datetime) -> str:
        start = window_start(now, rule.window)
        hashed = bucket_key(secret, rule.scope, subject)
        return f"gardien:rate:{hashed}:{int(start.timestamp())}"

    async def take(self, subject: str, now: dt.datetime) -> Refusal | None:
        script = self._connect()
        secret = self.secret()
        mine_rule, all_rule = self.per_address, self.overall
        mine, everyone = await script(
            keys=[
                self._key(secret, mine_rule, subject, now),
                self._key(secret, all_rule, EVERYONE, now),
            ],
            args=[
                int(mine_rule.window.total_seconds()) + 60,
                mine_rule.limit,
                int(all_rule.window.total_seconds()) + 60,
            ],
        )
        if int(mine) > mine_rule.limit:
            return Refusal("address", _reopens(mine_rule, now))
        if int(everyone) > all_rule.limit:
            return Refusal("overall", _reopens(all_rule, now))
        return None


def _reopens(rule: RateLimit, now: dt.datetime) -> int:
    start = window_start(now, rule.window)
    return max(1, math.ceil((start + rule.window - now).total_seconds()))


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
        redis_url: str | None = None,
    ) -> None:
        self.app = app
        self.clock = clock
        self.secret = secret
        self.exempt = tuple(exempt)
        self.budgets = Budgets(sessions, secret, per_address, overall, sync_every)
        self.shared = SharedBudgets(redis_url, secret, per_address, overall) if redis_url else None
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
        subject = budget_subject(client_ip(scope))
        shared = self.shared
        if shared is not None and time.monotonic() >= shared.down_until:
            try:
                refusal = await shared.take(subject, now)
            except shared.failures as exc:
                log.error("rate limits: Redis unavailable", extra={"error": type(exc).__name__})
                shared.down_until = time.monotonic() + shared.RETRY_AFTER_FAILURE
            else:
                await self._answer(refusal, scope, receive, send)
                return
        refusal = self.budgets.take(subject, now)
        monotonic = time.monotonic()
        if self.budgets.due(monotonic):
            self._merge_soon(monotonic, now)
        elif self._later is None:
            # Counts must reach the other instances even if no request follows: a burst of
            # 40 on one instance, then silence, left 39 of them here, and the next instance
            # admitted 60 more (found by tests/e2e/test_instances.py).
            wait = max(0.0, self.budgets.sync_every - (monotonic - self.budgets.last_merge))
            self._later = asyncio.get_running_loop().call_later(wait, self._merge_later)
        await self._answer(refusal, scope, receive, send)

    async def _answer(
        self, refusal: Refusal | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if refusal is None:
            await self.app(scope, receive, send)
        else:
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
