"""Budgets for public writes: per address, for everyone, 429 with Retry-After; reads are free."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.types import ASGIApp, Receive, Scope, Send

from gardien.deps import State
from gardien.security.connection_log import ConnectionLog, top_sources
from gardien.security.models import RateLimitBucket
from gardien.security.public_limits import Budgets, PublicWriteLimits, budget_subject
from gardien.security.ratelimit import RateLimit
from gardien.storage.clock import FrozenClock
from gardien.storage.groupcommit import GroupCommit

PER_ADDRESS = RateLimit("public_write_ip", 3, dt.timedelta(minutes=1))
OVERALL = RateLimit("public_write_global", 5, dt.timedelta(minutes=1))


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """The protected application: reads the whole body and says how long it was."""
    assert scope["type"] == "http"
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"received": size}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def limited(state: State, app: ASGIApp = echo) -> PublicWriteLimits:
    return PublicWriteLimits(
        app,
        sessions=state.sessions,
        secret=lambda: state.secret,
        clock=state.clock,
        per_address=PER_ADDRESS,
        overall=OVERALL,
        sync_every=3600,  # merged only when a test says so (``budgets.flush``)
    )


def client_from(app: ASGIApp, ip: str) -> TestClient:
    return TestClient(app, client=(ip, 40000))  # no lifespan: the apps here have none


def test_past_the_per_address_budget_429_with_retry_after(state: State, clock: FrozenClock) -> None:
    app = limited(state)
    alice = client_from(app, "203.0.113.1")
    for _ in range(3):
        assert alice.post("/api/forms/contact", content=b"x" * 10).json() == {"received": 10}
    refused = alice.post("/api/forms/contact", content=b"x" * 10)
    assert refused.status_code == 429
    assert refused.json()["error"] == "too_many_requests"
    assert "your address" in refused.json()["detail"]
    # The clock is frozen at 09:30:00, the start of a one-minute window.
    assert refused.headers["retry-after"] == "60" == str(refused.json()["retry_after"])
    for method in ("PUT", "PATCH", "DELETE"):
        assert alice.request(method, "/api/forms/contact").status_code == 429
    # Another address has its own budget.
    assert client_from(app, "198.51.100.2").post("/api/forms/contact").status_code == 200
    clock.advance(dt.timedelta(seconds=45))
    assert alice.post("/api/forms/contact").headers["retry-after"] == "15"
    clock.advance(dt.timedelta(seconds=15))
    assert alice.post("/api/forms/contact").status_code == 200  # a new window


def test_past_the_overall_budget_everyone_waits(state: State) -> None:
    app = limited(state)
    alice, bob, carol = (client_from(app, f"203.0.113.{n}") for n in (1, 2, 3))
    assert [alice.post("/contact").status_code for _ in range(4)] == [200, 200, 200, 429]
    # Alice's refused write did not count against everyone: Bob still has two.
    assert [bob.post("/contact").status_code for _ in range(3)] == [200, 200, 429]
    refused = carol.post("/contact")
    assert refused.status_code == 429
    assert "receiving too many requests" in refused.json()["detail"]
    assert refused.headers["retry-after"] == "60"


def test_reads_and_the_admin_are_never_limited(state: State) -> None:
    app = limited(state)
    alice = client_from(app, "203.0.113.1")
    for _ in range(20):
        assert alice.get("/privacy").status_code == 200
        assert alice.head("/privacy").status_code == 200
        assert alice.options("/api/forms/contact").status_code == 200
        assert alice.post("/admin/login").status_code == 200
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RateLimitBucket)) == 0
    assert [alice.post("/administrator").status_code for _ in range(4)][-1] == 429


def test_addresses_of_one_ipv6_block_share_a_budget(state: State) -> None:
    app = limited(state)
    statuses = [
        client_from(app, f"2001:db8:1:2::{n}").post("/contact").status_code for n in range(1, 5)
    ]
    assert statuses == [200, 200, 200, 429]
    assert client_from(app, "2001:db8:1:3::1").post("/contact").status_code == 200
    assert budget_subject("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert budget_subject("::ffff:203.0.113.1") == "203.0.113.1"


def test_buckets_store_no_address(state: State) -> None:
    app = limited(state)
    client_from(app, "203.0.113.77").post("/contact")
    app.budgets.flush(state.clock.now())
    with state.sessions() as session:
        keys = session.scalars(select(RateLimitBucket.key)).all()
    assert len(keys) == 2  # the address's bucket and everyone's
    assert all("203.0.113.77" not in key for key in keys)


def test_instances_share_their_budgets_through_the_database(state: State) -> None:
    """Two processes: each decides alone, then merges; after a merge each counts the other's
    requests, so together they never exceed a budget by more than one merge's worth."""
    first, second = limited(state), limited(state)
    alice_here, alice_there = client_from(first, "203.0.113.1"), client_from(second, "203.0.113.1")
    assert [alice_here.post("/contact").status_code for _ in range(2)] == [200, 200]
    assert alice_there.post("/contact").status_code == 200  # the second knows only its own
    first.budgets.flush(state.clock.now())
    second.budgets.flush(state.clock.now())  # adds its one, reads the first's two: three
    assert alice_there.post("/contact").status_code == 429
    first.budgets.flush(state.clock.now())  # the first now reads them all
    assert alice_here.post("/contact").status_code == 429
    with state.sessions() as session:
        counts = sorted(session.scalars(select(RateLimitBucket.count)).all())
    assert counts == [3, 3]  # merged so far: three writes, for the address and for everyone


def test_merges_start_in_the_background_and_keep_counts_when_they_fail(
    state: State,
) -> None:
    app = PublicWriteLimits(
        echo,
        sessions=state.sessions,
        secret=lambda: state.secret,
        clock=state.clock,
        per_address=PER_ADDRESS,
        overall=OVERALL,
        sync_every=0.0,
    )
    client = client_from(app, "203.0.113.5")
    assert client.post("/contact").status_code == 200  # starts a merge in a worker thread
    for _ in range(200):  # the merge commits on its own, shortly
        with state.sessions() as session:
            if session.scalar(select(func.count()).select_from(RateLimitBucket)) == 2:
                break
        threading.Event().wait(0.01)
    else:
        raise AssertionError("no background merge reached the database")


def test_a_failed_merge_keeps_its_counts(state: State) -> None:
    budgets = Budgets(state.sessions, lambda: state.secret, PER_ADDRESS, OVERALL)
    now = state.clock.now()
    assert [budgets.take("203.0.113.5", now) for _ in range(2)] == [None, None]
    budgets.begin_merge(0.0)
    budgets.end_merge(now, None)  # the database was unreachable: nothing was merged
    assert budgets.take("203.0.113.5", now) is None
    refusal = budgets.take("203.0.113.5", now)
    assert refusal is not None and refusal.budget == "address"


def test_a_missing_secret_refuses_to_count(state: State) -> None:
    app = PublicWriteLimits(echo, sessions=state.sessions, secret=lambda: b"", clock=state.clock)
    with pytest.raises(RuntimeError, match="secret is not loaded"):
        client_from(app, "203.0.113.1").post("/contact")


@pytest.fixture
def writer(state: State) -> Iterator[GroupCommit]:
    writer = GroupCommit(state.engine)
    yield writer
    writer.stop()


def test_a_burst_is_refused_and_shows_in_the_abuse_view(
    state: State, writer: GroupCommit, clock: FrozenClock
) -> None:
    app = ConnectionLog(limited(state), writer=writer, clock=clock)
    burst = client_from(app, "203.0.113.66")
    statuses = [burst.post("/api/forms/contact").status_code for _ in range(10)]
    assert statuses == [200] * 3 + [429] * 7
    client_from(app, "198.51.100.9").get("/privacy")
    with state.sessions() as session:
        [source] = top_sources(session, since=clock.now() - dt.timedelta(hours=1))
    assert (source.ip, source.requests, source.errors, source.rejected) == (
        "203.0.113.66",
        10,
        7,
        7,
    )
