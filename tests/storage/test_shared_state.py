"""Shared state lives in the database: rate limits and job leases work across processes."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select

from gardien.deps import State
from gardien.errors import TooManyRequests
from gardien.security.models import RateLimitBucket
from gardien.security.ratelimit import RateLimit, enforce, hit, purge_expired
from gardien.storage.clock import FrozenClock
from gardien.storage.database import make_engine, session_factory, unit_of_work
from gardien.storage.locks import LockBusy, acquire, job_lease

RULE = RateLimit(scope="test", limit=5, window=dt.timedelta(minutes=1))


def test_rate_limit_counts_per_window(state: State, clock: FrozenClock) -> None:
    decisions = []
    for _ in range(7):
        with unit_of_work(state.sessions) as session:
            decisions.append(hit(session, state.secret, RULE, "198.51.100.7", clock.now()))
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert decisions[4].remaining == 0
    assert decisions[5].retry_after > 0
    with unit_of_work(state.sessions) as session:
        assert hit(session, state.secret, RULE, "198.51.100.8", clock.now()).allowed
    clock.advance(dt.timedelta(minutes=1))
    with unit_of_work(state.sessions) as session:
        assert hit(session, state.secret, RULE, "198.51.100.7", clock.now()).allowed


def test_rate_limit_stores_no_raw_subject(state: State, clock: FrozenClock) -> None:
    with unit_of_work(state.sessions) as session:
        hit(session, state.secret, RULE, "alice@example.org", clock.now())
    with state.sessions() as session:
        keys = session.scalars(select(RateLimitBucket.key)).all()
    assert len(keys) == 1
    assert "alice" not in keys[0]
    assert len(keys[0]) == 64


def test_enforce_raises_429_past_the_limit(state: State, clock: FrozenClock) -> None:
    with unit_of_work(state.sessions) as session:
        for _ in range(RULE.limit):
            enforce(session, state.secret, RULE, "x", clock.now())
        with pytest.raises(TooManyRequests) as caught:
            enforce(session, state.secret, RULE, "x", clock.now())
    assert caught.value.status == 429
    assert caught.value.retry_after > 0


def test_rate_limit_is_shared_between_engines(state: State, clock: FrozenClock) -> None:
    """Two engines stand for two Gardien processes: the limit holds across both, under load."""
    other = make_engine(state.settings.resolved_database_url)
    sessions = [state.sessions, session_factory(other)]
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        for _ in range(5):
            with unit_of_work(sessions[index % 2]) as session:
                decision = hit(session, state.secret, RULE, "shared", clock.now())
            with lock:
                allowed.append(decision.allowed)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.dispose()
    assert len(allowed) == 20
    assert allowed.count(True) == RULE.limit


def test_expired_buckets_are_purged(state: State, clock: FrozenClock) -> None:
    with unit_of_work(state.sessions) as session:
        hit(session, state.secret, RULE, "old", clock.now())
    clock.advance(dt.timedelta(hours=2))
    with unit_of_work(state.sessions) as session:
        hit(session, state.secret, RULE, "new", clock.now())
        assert purge_expired(session, clock.now() - dt.timedelta(hours=1)) == 1


def test_job_lease_excludes_others_until_released_or_expired(
    state: State, clock: FrozenClock
) -> None:
    with job_lease(state.sessions, "job", clock, ttl=dt.timedelta(minutes=10)):
        with pytest.raises(LockBusy), job_lease(state.sessions, "job", clock):
            pass
    with job_lease(state.sessions, "job", clock):
        pass  # released: free again
    assert acquire(state.sessions, "job", "dead-process", dt.timedelta(minutes=10), clock)
    assert not acquire(state.sessions, "job", "another", dt.timedelta(minutes=10), clock)
    clock.advance(dt.timedelta(minutes=11))
    assert acquire(state.sessions, "job", "another", dt.timedelta(minutes=10), clock)
