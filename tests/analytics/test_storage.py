"""The raw hit table, the daily salts, IP anonymisation, retention and the provider."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from gardien.analytics.models import AnalyticsHit, AnalyticsSalt, analytics_hit
from gardien.analytics.privacy import anonymise_ip, salt_of_day, visitor_id
from gardien.analytics.store import AnalyticsHitStore, AnalyticsProvider
from gardien.deps import State
from gardien.retention.models import PurgeReceipt
from gardien.retention.service import run_retention
from gardien.security.crypto import blind_index
from gardien.storage.clock import FrozenClock
from gardien.storage.subjects import SubjectIdentity


def hit(at: dt.datetime, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "site_id": 1,
        "received_at": at,
        "visitor_id": "0123456789abcdef",
        "network": "192.168.0.0",
        "action": "pageview",
        "url": "https://www.cegedim-rx.ro/",
        "new_visit": 0,
        "consented": 0,
    }
    row.update(fields)
    return row


def test_ipv4_loses_two_bytes_and_ipv6_keeps_48_bits() -> None:
    assert anonymise_ip("192.168.54.21") == "192.168.0.0"
    assert anonymise_ip("192.168.54.21", 1) == "192.168.54.0"
    assert anonymise_ip("192.168.54.21", 3) == "192.0.0.0"
    assert anonymise_ip("2001:db8:85a3:8d3:1319:8a2e:370:7348") == "2001:db8:85a3::"
    assert anonymise_ip("::ffff:10.1.2.3") == "10.1.0.0"
    assert anonymise_ip("not an ip") is None
    with pytest.raises(ValueError, match="1 to 4"):
        anonymise_ip("10.0.0.1", 0)


def test_visitor_id_depends_on_salt_ip_agent_and_site() -> None:
    salt = b"s" * 32
    one = visitor_id(salt, "10.0.0.1", "Firefox", 1)
    assert len(one) == 16 and int(one, 16) >= 0
    assert one == visitor_id(salt, "10.0.0.1", "Firefox", 1)
    assert one != visitor_id(b"t" * 32, "10.0.0.1", "Firefox", 1)
    assert one != visitor_id(salt, "10.0.0.2", "Firefox", 1)
    assert one != visitor_id(salt, "10.0.0.1", "Chrome", 1)
    assert one != visitor_id(salt, "10.0.0.1", "Firefox", 2)


def test_a_salt_per_day_created_once_and_old_ones_forgotten(state: State) -> None:
    day = dt.date(2026, 1, 15)
    with state.sessions() as session, session.begin():
        first = salt_of_day(session, day)
        assert len(first) == 32
        assert salt_of_day(session, day) == first
        following = [salt_of_day(session, day + dt.timedelta(days=n)) for n in (1, 2)]
    assert len({first, *following}) == 3
    with state.sessions() as session:
        days = sorted(session.scalars(select(AnalyticsSalt.day)))
    assert days == [day + dt.timedelta(days=1), day + dt.timedelta(days=2)]


def test_retention_deletes_hits_past_six_months_with_a_receipt(
    state: State, clock: FrozenClock
) -> None:
    now = clock.now()
    with state.sessions() as session, session.begin():
        session.execute(
            insert(analytics_hit),
            [hit(now - dt.timedelta(days=d)) for d in (200, 190, 170, 1)],
        )
    results = run_retention(state.sessions, state.register, state.stores, clock)
    [result] = [r for r in results if r.activity == "audience_measurement"]
    assert result.rows == 2
    with state.sessions() as session:
        left = sorted((now - at).days for at in session.scalars(select(AnalyticsHit.received_at)))
        assert left == [1, 170]
        receipt = session.scalars(
            select(PurgeReceipt).where(PurgeReceipt.activity == "audience_measurement")
        ).one()
        assert (receipt.status, receipt.rows_affected, receipt.period) == ("purged", 2, "P6M")
        assert receipt.store == AnalyticsHitStore.store_id


def test_provider_finds_exports_and_erases_by_visitor_user_and_consent_id(
    state: State, clock: FrozenClock
) -> None:
    now = clock.now()
    consent = "6f1c2d3e-0000-4000-8000-00000000abcd"
    with state.sessions() as session, session.begin():
        session.add_all(
            [
                AnalyticsHit(**hit(now, visitor_id="aaaaaaaaaaaaaaaa")),
                AnalyticsHit(**hit(now, visitor_id="aaaaaaaaaaaaaaaa")),
                AnalyticsHit(
                    **hit(now, visitor_id="bbbbbbbbbbbbbbbb", consented=1),
                    user_id="jeanne@example.org",
                    user_id_index=blind_index("jeanne@example.org", "analytics_hit.user_id_index"),
                    consent_id=consent,
                    consent_id_index=blind_index(consent, "analytics_hit.consent_id_index"),
                ),
                AnalyticsHit(**hit(now, visitor_id="cccccccccccccccc")),
            ]
        )
    provider = AnalyticsProvider()
    with state.sessions() as session, session.begin():
        assert provider.find(session, SubjectIdentity(visitor_id="aaaaaaaaaaaaaaaa")).total == 2
        by_user = SubjectIdentity(visitor_id="jeanne@example.org")
        assert provider.find(session, by_user).total == 1
        assert provider.find(session, SubjectIdentity(consent_id=consent)).total == 1
        assert provider.find(session, SubjectIdentity(email="x@example.org")).note
        [row] = provider.export(session, by_user)["audience_measurement"]
        assert row["user_id"] == "jeanne@example.org" and row["consent_id"] == consent
        assert provider.erase(session, SubjectIdentity(visitor_id="aaaaaaaaaaaaaaaa")).erased == 2
        assert provider.erase(session, SubjectIdentity(consent_id=consent)).erased == 1
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AnalyticsHit)) == 1


def test_retention_forgets_the_salts_of_past_days(state: State, clock: FrozenClock) -> None:
    with state.sessions() as session, session.begin():
        session.add(AnalyticsSalt(day=dt.date(2020, 1, 1), salt=b"x" * 32))
    run_retention(state.sessions, state.register, state.stores, clock)
    with state.sessions() as session:
        assert list(session.scalars(select(AnalyticsSalt.day))) == []
