"""The connection log: one durable, encrypted row per request; rights; retention; abuse view."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import LargeBinary, inspect, select, type_coerce
from sqlalchemy.exc import StatementError
from starlette.types import Receive, Scope, Send

from gardien.app import create_app
from gardien.config import Settings
from gardien.deps import State
from gardien.models import metadata
from gardien.register.schema import RetentionTrigger
from gardien.retention.models import PurgeReceipt
from gardien.retention.service import run_retention
from gardien.retention.stores import StoreRegistry
from gardien.security.connection_log import (
    CANNOT_BE_TIED,
    ConnectionLog,
    ConnectionLogEntry,
    ConnectionLogProvider,
    ConnectionLogStore,
    connection_log,
    declares_fingerprint,
    top_sources,
)
from gardien.security.crypto import KeyRing, Sealed, blind_index, ring
from gardien.security.rotation import reencrypt
from gardien.storage.clock import FrozenClock
from gardien.storage.groupcommit import GroupCommit
from gardien.storage.subjects import SubjectIdentity, SubjectProvider

VISITOR = "203.0.113.7"
OTHER = "198.51.100.23"


@pytest.fixture
def log_table(state: State) -> State:
    """A migrated database: ``connection_log`` is one of its tables."""
    assert connection_log.name in inspect(state.engine).get_table_names()
    return state


@pytest.fixture
def writer(log_table: State) -> Iterator[GroupCommit]:
    writer = GroupCommit(log_table.engine)
    yield writer
    writer.stop()


@pytest.fixture
def logged_app(settings: Settings, log_table: State) -> FastAPI:
    """Gardien's app as ``create_app`` wires it: the connection log is part of it."""
    app = create_app(settings, state=log_table, scheduler=False)
    wired: list[object] = [middleware.cls for middleware in app.user_middleware]
    assert wired.count(ConnectionLog) == 1
    return app


@pytest.fixture
def visitor(logged_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(
        logged_app, raise_server_exceptions=False, client=(VISITOR, 50000)
    ) as test_client:
        yield test_client


def entries(state: State) -> list[ConnectionLogEntry]:
    with state.sessions() as session:
        return list(session.scalars(select(ConnectionLogEntry).order_by(ConnectionLogEntry.id)))


def add_entries(state: State, *rows: tuple[str | None, dt.datetime, int]) -> None:
    """Rows as the middleware writes them: (ip, at, status)."""
    with state.sessions.begin() as session:
        for ip, at, status in rows:
            session.add(
                ConnectionLogEntry(
                    at=at,
                    ip=ip,
                    ip_index=blind_index(ip, "connection_log.ip_index", "ip") if ip else None,
                    user_agent="Mozilla/5.0",
                    method="POST",
                    path="/contact",
                    status=status,
                    latency_ms=1.5,
                )
            )


def test_one_row_per_request_ip_encrypted_no_query_string(
    visitor: TestClient, log_table: State
) -> None:
    response = visitor.get(
        "/privacy?lang=fr&email=alice@example.org", headers={"user-agent": "Firefox/140 " * 40}
    )
    assert response.status_code == 200
    assert visitor.get("/no-such-page").status_code == 404

    first, second = entries(log_table)
    assert first.at == log_table.clock.now()
    assert first.ip == VISITOR
    assert first.ip_index == blind_index(VISITOR, "connection_log.ip_index", "ip")
    assert (first.method, first.path, first.status) == ("GET", "/privacy", 200)
    assert first.user_agent is not None and len(first.user_agent) == 300
    assert first.user_agent.startswith("Firefox/140")
    assert first.latency_ms >= 0
    assert (second.path, second.status) == ("/no-such-page", 404)

    with log_table.sessions() as session:
        raw = session.scalars(select(type_coerce(ConnectionLogEntry.ip, LargeBinary))).all()
        assert len(raw) == 2
        for blob in raw:
            assert VISITOR.encode() not in bytes(blob)
            assert bytes(blob).startswith(b"\x01")  # a Gardien ciphertext
        stored_paths = session.scalars(select(ConnectionLogEntry.path)).all()
    assert all("?" not in p and "alice" not in p for p in stored_paths)


def stored_ips(state: State) -> list[bytes]:
    with state.sessions() as session:
        query = select(type_coerce(ConnectionLogEntry.ip, LargeBinary)).order_by(
            ConnectionLogEntry.id
        )
        return [bytes(blob) for blob in session.scalars(query)]


def test_an_address_is_sealed_once_per_data_key_and_rotates_like_any_value(
    visitor: TestClient, log_table: State
) -> None:
    for _ in range(3):
        visitor.get("/privacy")
    first_key = KeyRing.key_id_of(stored_ips(log_table)[0])
    new_key = log_table.keys.add_key("data")
    visitor.get("/privacy")

    blobs = stored_ips(log_table)
    # One ciphertext per address and key: equal rows show no more than their blind index does.
    assert blobs[0] == blobs[1] == blobs[2]
    assert KeyRing.key_id_of(blobs[3]) == new_key != first_key
    assert [e.ip for e in entries(log_table)] == [VISITOR] * 4

    assert reencrypt(log_table.sessions, ring(), metadata) >= 3
    assert {KeyRing.key_id_of(blob) for blob in stored_ips(log_table)} == {new_key}
    assert [e.ip for e in entries(log_table)] == [VISITOR] * 4


def test_a_stale_key_ring_is_refreshed_before_an_address_is_reused(
    visitor: TestClient, log_table: State
) -> None:
    visitor.get("/privacy")
    keys = ring()
    keys.loaded_at -= keys.max_age + 1  # as if the last refresh were long ago
    visitor.get("/privacy")
    first, second = stored_ips(log_table)
    assert second != first  # sealed afresh, through the ring
    assert time.monotonic() - keys.loaded_at < keys.max_age  # which reloaded its keys
    assert [e.ip for e in entries(log_table)] == [VISITOR] * 2


def test_a_value_sealed_for_another_column_is_refused(log_table: State) -> None:
    sealed = Sealed(ring().encrypt(VISITOR, "forms.email"), "forms.email")
    row = {"at": log_table.clock.now(), "ip": sealed, "method": "GET", "path": "/"}
    insert = connection_log.insert().values(**row, status=200, latency_ms=0.0)
    with log_table.engine.connect() as connection, pytest.raises(StatementError, match="sealed"):
        connection.execute(insert)  # it would never decrypt as connection_log.ip
    assert entries(log_table) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # reads the SQLite files
def test_the_address_is_nowhere_on_disk_in_clear(
    visitor: TestClient, log_table: State, settings: Settings
) -> None:
    for _ in range(5):
        visitor.get("/privacy")
    assert len(entries(log_table)) == 5
    database = Path(settings.resolved_database_url.split("///", 1)[1])
    files = [p for p in database.parent.iterdir() if p.name.startswith(database.name)]
    assert any(p.name.endswith("-wal") for p in files)
    for path in files:
        assert VISITOR.encode() not in path.read_bytes(), path.name


def test_static_files_and_healthz_are_not_logged(visitor: TestClient, log_table: State) -> None:
    assert visitor.get("/healthz").status_code == 200
    visitor.get("/metrics")  # the monitoring's scrapes (refused or not) are not visits
    assert visitor.get("/static/gardien.css").status_code == 200
    assert visitor.get("/static/missing.css").status_code == 404
    assert entries(log_table) == []
    assert visitor.get("/healthzx").status_code == 404  # a prefix is a path, not a string
    assert [e.path for e in entries(log_table)] == ["/healthzx"]


def test_each_response_follows_its_committed_row(visitor: TestClient, log_table: State) -> None:
    for count in range(1, 4):
        visitor.get("/privacy")
        assert len(entries(log_table)) == count


def test_a_row_that_cannot_be_written_means_503(visitor: TestClient, log_table: State) -> None:
    connection_log.drop(log_table.engine)
    response = visitor.get("/privacy")
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    assert "Privacy" not in response.text  # the application's body never went out


def test_a_stopped_writer_means_503_too(visitor: TestClient, log_table: State) -> None:
    log_table.writer.stop()  # e.g. a request still arriving while the server shuts down
    response = visitor.get("/privacy")
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    assert entries(log_table) == []


async def _crashing_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("boom")


def test_an_application_crash_is_logged_as_500(log_table: State, writer: GroupCommit) -> None:
    app = ConnectionLog(_crashing_app, writer=writer, clock=log_table.clock)
    client = TestClient(app, raise_server_exceptions=False, client=(VISITOR, 1))  # no lifespan
    assert client.post("/api/forms/contact").status_code == 500
    [entry] = entries(log_table)
    assert (entry.method, entry.path, entry.status) == ("POST", "/api/forms/contact", 500)


def test_a_peer_that_is_no_ip_address_is_logged_without_one(
    logged_app: FastAPI, log_table: State
) -> None:
    with TestClient(logged_app, client=("testclient", 50000)) as client:
        client.get("/privacy")
    [entry] = entries(log_table)
    assert entry.ip is None and entry.ip_index is None


def test_concurrent_requests_share_commits(log_table: State, writer: GroupCommit) -> None:
    async def hello(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = ConnectionLog(hello, writer=writer, clock=log_table.clock)
    commits = 0

    def count() -> None:
        nonlocal commits
        commits += 1

    writer.before_commit = count
    requests = 200

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=app, client=(VISITOR, 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://gardien") as client:
            responses = await asyncio.gather(
                *(client.get(f"/page/{i}?q=secret") for i in range(requests))
            )
        return [r.status_code for r in responses]

    statuses = asyncio.run(burst())
    assert statuses == [200] * requests
    logged = entries(log_table)
    assert sorted(e.path for e in logged) == sorted(f"/page/{i}" for i in range(requests))
    assert commits >= 1
    assert commits < requests  # rows shared commits
    assert writer.batches == commits


# -- data-subject requests ----------------------------------------------------------------------


MARCH = (dt.datetime(2026, 3, 1, tzinfo=dt.UTC), dt.datetime(2026, 4, 1, tzinfo=dt.UTC))


@pytest.fixture
def logged_people(log_table: State) -> State:
    add_entries(
        log_table,
        (VISITOR, dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC), 200),
        (VISITOR, dt.datetime(2026, 3, 31, 23, 59, tzinfo=dt.UTC), 404),
        (VISITOR, dt.datetime(2026, 4, 1, tzinfo=dt.UTC), 200),  # after the period
        (OTHER, dt.datetime(2026, 3, 5, tzinfo=dt.UTC), 200),
        (None, dt.datetime(2026, 3, 6, tzinfo=dt.UTC), 200),
    )
    return log_table


def test_provider_finds_exports_and_erases_by_address_and_period(logged_people: State) -> None:
    provider = ConnectionLogProvider()
    assert isinstance(provider, SubjectProvider)
    person = SubjectIdentity(ip_address=VISITOR, period=MARCH)
    with logged_people.sessions.begin() as session:
        found = provider.find(session, person)
        assert found.counts == {"connection_log": 2}
        assert found.note is not None and "other people" in found.note
        # The same address however it is written: IPv4-mapped IPv6, spaces.
        mapped = SubjectIdentity(ip_address=f" ::ffff:{VISITOR} ", period=MARCH)
        assert provider.find(session, mapped).total == 2
        assert provider.find(session, SubjectIdentity(ip_address=VISITOR)).total == 3

        exported = provider.export(session, person)["connection_log"]
        assert [row["at"] for row in exported] == [
            "2026-03-02T10:00:00+00:00",
            "2026-03-31T23:59:00+00:00",
        ]
        assert {row["ip_address"] for row in exported} == {VISITOR}
        assert exported[1]["status"] == 404 and exported[1]["path"] == "/contact"

        assert provider.rectify(session, person, {"ip_address": OTHER}) == 0
        assert provider.restrict(session, person, True) == 0
        assert provider.object(session, person, "connection_log") == 0
        assert provider.erase(session, person).erased == 2

    remaining = [(e.ip, e.at.month) for e in entries(logged_people)]
    assert remaining == [(VISITOR, 4), (OTHER, 3), (None, 3)]


def test_without_an_address_the_log_cannot_be_tied_to_the_person(logged_people: State) -> None:
    provider = ConnectionLogProvider()
    person = SubjectIdentity(email="alice@example.org", period=MARCH)
    with logged_people.sessions.begin() as session:
        found = provider.find(session, person)
        assert found.total == 0
        assert found.note == CANNOT_BE_TIED and "Art. 11(2)" in found.note
        assert provider.export(session, person) == {"connection_log": []}
        assert provider.erase(session, person).erased == 0
    assert len(entries(logged_people)) == 5


def test_an_invalid_address_is_refused_without_being_quoted(logged_people: State) -> None:
    with (
        logged_people.sessions() as session,
        pytest.raises(ValueError, match="not an IP address") as raised,
    ):
        ConnectionLogProvider().find(session, SubjectIdentity(ip_address="alice.example"))
    assert "alice" not in str(raised.value)


def test_identity_with_an_address_hides_it() -> None:
    identity = SubjectIdentity(ip_address=VISITOR, period=MARCH)
    assert VISITOR not in repr(identity) and "ip_address" in repr(identity)
    with pytest.raises(ValueError, match="at least one identifier"):
        SubjectIdentity(period=MARCH)
    with pytest.raises(ValueError, match="end after it starts"):
        SubjectIdentity(ip_address=VISITOR, period=(MARCH[1], MARCH[0]))
    with pytest.raises(ValueError, match="timezone-aware"):
        SubjectIdentity(ip_address=VISITOR, period=(dt.datetime(2026, 3, 1), MARCH[1]))


# -- retention --------------------------------------------------------------------------------


def test_retention_deletes_rows_older_than_six_months(log_table: State, clock: FrozenClock) -> None:
    now = clock.now()
    add_entries(
        log_table,
        (VISITOR, now - dt.timedelta(days=200), 200),
        (OTHER, now - dt.timedelta(days=185), 200),
        (VISITOR, now - dt.timedelta(days=170), 200),
        (OTHER, now - dt.timedelta(days=1), 200),
    )
    log_table.stores = StoreRegistry([ConnectionLogStore()])
    results = run_retention(log_table.sessions, log_table.register, log_table.stores, clock)
    [result] = [r for r in results if r.activity == "connection_log"]
    assert result.rows == 2
    assert [round((now - e.at).days) for e in entries(log_table)] == [170, 1]
    with log_table.sessions() as session:
        receipt = session.scalars(
            select(PurgeReceipt).where(PurgeReceipt.activity == "connection_log")
        ).one()
        assert (receipt.status, receipt.rows_affected, receipt.period) == ("purged", 2, "P6M")
        store = ConnectionLogStore()
        oldest = store.oldest(session, RetentionTrigger.collected)
        assert oldest == now - dt.timedelta(days=170)
    again = run_retention(log_table.sessions, log_table.register, log_table.stores, clock)
    assert [r.rows for r in again if r.activity == "connection_log"] == [0]


# -- abuse view -------------------------------------------------------------------------------


def test_top_sources_ranks_addresses_by_errors(log_table: State, clock: FrozenClock) -> None:
    now = clock.now()
    recent = now - dt.timedelta(minutes=5)
    add_entries(
        log_table,
        *[(VISITOR, recent, 429)] * 5,
        *[(VISITOR, recent, 404)] * 2,
        *[(VISITOR, now, 200)] * 3,
        (OTHER, recent, 500),
        ("192.0.2.1", recent, 200),  # no error: not a source of abuse
        ("192.0.2.2", now - dt.timedelta(days=2), 429),  # before the window
        (None, recent, 400),  # an unknown peer cannot be shown
    )
    with log_table.sessions() as session:
        sources = top_sources(session, since=now - dt.timedelta(hours=1), limit=10)
        assert [(s.ip, s.requests, s.errors, s.rejected) for s in sources] == [
            (VISITOR, 10, 7, 5),
            (OTHER, 1, 1, 0),
        ]
        assert sources[0].last_seen == now
        assert sources[0].ip_index == blind_index(VISITOR, "connection_log.ip_index", "ip")
        assert len(top_sources(session, since=now - dt.timedelta(hours=1), limit=1)) == 1
        assert top_sources(session, since=now + dt.timedelta(seconds=1)) == []


def test_a_fingerprint_only_when_the_register_declares_it(
    log_table: State, writer: GroupCommit
) -> None:
    async def hello(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    assert declares_fingerprint(log_table.register) is False  # the seed does not
    declared = log_table.register.model_copy(deep=True)
    activity = next(a for a in declared.activities if a.id == "connection_log")
    object.__setattr__(
        activity.data_categories[0],
        "fields",
        [*activity.data_categories[0].fields, "client_fingerprint"],
    )
    assert declares_fingerprint(declared) is True
    plain = TestClient(
        ConnectionLog(hello, writer=writer, clock=log_table.clock), client=(VISITOR, 1)
    )
    printing = TestClient(
        ConnectionLog(hello, writer=writer, clock=log_table.clock, fingerprints=True),
        client=(VISITOR, 1),
    )
    firefox = {"User-Agent": "Mozilla/5.0 Firefox/140.0", "Accept-Language": "fr"}
    chrome = {"User-Agent": "Mozilla/5.0 Chrome/141.0", "Accept-Language": "fr"}
    plain.get("/a", headers=firefox)
    printing.get("/b", headers=firefox)
    printing.get("/c?x=1", headers=firefox)
    printing.get("/d", headers=chrome)
    prints = [entry.fingerprint for entry in entries(log_table)]
    assert prints[0] is None
    assert prints[1] == prints[2] and prints[1] != prints[3]
    assert all(re.fullmatch(r"[0-9a-f]{16}", p or "") for p in prints[1:])
