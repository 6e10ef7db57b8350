"""One person, Ana, present in every store that holds personal data, next to other people.

The data arrive the way Gardien receives them where a test of that domain does so (a form
submission and its e-mails through the app and the sender job, cookie-panel decisions through
the consent API), and as the writers store them elsewhere (analytics hits, connection log).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from gardien.analytics.models import AnalyticsHit
from gardien.deps import State
from gardien.security.connection_log import ConnectionLogEntry
from gardien.security.crypto import blind_index
from gardien.storage.clock import FrozenClock
from gardien.storage.subjects import SubjectIdentity
from tests.consent.test_records import decision
from tests.forms.test_retention import submit_and_send
from tests.forms.test_submit import GOOD

EMAIL = str(GOOD["email"])
PHONE = "+40211234567"  # GOOD's "021 123 4567" in E.164, as the form stores it
VISITOR_ID = "a1b2c3d4e5f60718"
IP = "203.0.113.7"
OTHER_IP = "198.51.100.23"
MARCH = (dt.datetime(2026, 3, 1, tzinfo=dt.UTC), dt.datetime(2026, 4, 1, tzinfo=dt.UTC))


@dataclass(frozen=True)
class Seeded:
    state: State
    subject: SubjectIdentity
    consent_id: str
    other_consent_id: str


def _hit(at: dt.datetime, visitor: str, consent_id: str | None = None) -> AnalyticsHit:
    return AnalyticsHit(
        site_id=1,
        received_at=at,
        visitor_id=visitor,
        network="203.0.0.0",
        action="pageview",
        url="https://www.cegedim-rx.ro/produse",
        new_visit=0,
        consented=1 if consent_id else 0,
        consent_id=consent_id,
        consent_id_index=(
            blind_index(consent_id, "analytics_hit.consent_id_index") if consent_id else None
        ),
    )


def _request(ip: str, at: dt.datetime) -> ConnectionLogEntry:
    return ConnectionLogEntry(
        at=at,
        ip=ip,
        ip_index=blind_index(ip, "connection_log.ip_index", "ip"),
        user_agent="Mozilla/5.0",
        method="POST",
        path="/contact",
        status=201,
        latency_ms=2.0,
    )


@pytest.fixture
def seeded(client: TestClient, state: State, clock: FrozenClock) -> Seeded:
    submit_and_send(client, state, clock)
    submit_and_send(
        client,
        state,
        clock,
        email="someone.else@example.org",
        phone="021 765 4321",
        last_name="Ionescu",
    )
    consent_id = secrets.token_hex(16)
    other = secrets.token_hex(16)
    for body in (
        decision(client, consent_id=consent_id),
        decision(client, consent_id=other),
        decision(
            client,
            consent_id=consent_id,
            action="withdraw",
            layer="panel",
            control="save",
            choices={"audience_measurement": False},
        ),
    ):
        assert client.post("/api/consent/records", json=body).status_code == 201
    now = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)  # within the period Ana gives
    with state.sessions.begin() as session:
        session.add_all(
            [
                _hit(now, "00000000000000aa", consent_id),
                _hit(now, "00000000000000aa", consent_id),
                _hit(now, VISITOR_ID),
                _hit(now, "ffffffffffffffff", other),
                _hit(now, "eeeeeeeeeeeeeeee"),
                _request(IP, dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)),
                _request(IP, dt.datetime(2026, 3, 30, 18, tzinfo=dt.UTC)),
                _request(IP, dt.datetime(2026, 4, 2, tzinfo=dt.UTC)),  # after the period
                _request(OTHER_IP, dt.datetime(2026, 3, 5, tzinfo=dt.UTC)),
            ]
        )
    subject = SubjectIdentity(
        email=EMAIL,
        phone=PHONE,
        consent_id=consent_id,
        visitor_id=VISITOR_ID,
        ip_address=IP,
        period=MARCH,
    )
    return Seeded(state, subject, consent_id, other)
