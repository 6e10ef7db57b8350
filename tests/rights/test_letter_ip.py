"""A letter may name an IP address the person used, and when: the case then reaches the
connection log (found by that address within that period only); bad values are refused with
their reason and nothing is written."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gardien.deps import State
from gardien.rights.models import RightsCase
from gardien.storage.clock import FrozenClock
from tests.rights.conftest import IP, Seeded
from tests.rights.test_admin import record, reference_of
from tests.security.signin import signed_in

MARCH_DAYS: dict[str, Any] = {"ip": IP, "ip_from": "2026-03-01", "ip_to": "2026-03-31"}


def test_a_letter_with_an_ip_address_and_a_period_reaches_the_connection_log(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    state = seeded.state
    clock.moment = dt.datetime(2026, 4, 10, 9, tzinfo=dt.UTC)
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    reference = reference_of(record(agent, clock.now().date(), **MARCH_DAYS))
    with state.sessions() as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()
        assert case.ip_address == IP and case.period_start is not None
    verified = agent.client.post(
        f"/admin/rights/{reference}/verify",
        data={"csrf": agent.csrf, "basis": "signed letter, address matches"},
    )
    assert verified.status_code == 200
    package = agent.client.post(f"/admin/rights/{reference}/export", data={"csrf": agent.csrf})
    assert package.status_code == 200
    data = json.loads(zipfile.ZipFile(io.BytesIO(package.content)).read("data.json"))
    rows = [r for rs in data["stores"]["connection_log"]["records"].values() for r in rs]
    # the two requests of March from that address; not the one of 2 April, nor another address
    assert len(rows) == 2 and all(r["ip_address"] == IP for r in rows)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"ip": "203.0.113.300", "ip_from": "2026-03-01", "ip_to": "2026-03-31"}, "not valid"),
        ({"ip": IP}, "period"),
        ({"ip": IP, "ip_from": "2026-03-31", "ip_to": "2026-03-01"}, "after it starts"),
        ({"ip": IP, "ip_from": "2024-01-01", "ip_to": "2026-03-01"}, "at most"),
        ({"ip_from": "2026-03-01", "ip_to": "2026-03-31"}, "IP address the period"),
    ],
)
def test_a_bad_ip_address_or_period_is_refused_with_nothing_written(
    client: TestClient, state: State, clock: FrozenClock, changes: dict[str, Any], reason: str
) -> None:
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    refused = record(agent, clock.now().date(), **changes)
    assert refused.status_code == 400 and reason in refused.text, refused.text
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RightsCase)) == 0
