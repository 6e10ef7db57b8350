"""The issue's "done when", end to end: a burst from one address is rate-limited, shows up in
the abuse view (traced in the audit trail), and six-month-old connection rows are purged."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gardien.deps import State
from gardien.retention.models import PurgeReceipt
from gardien.retention.service import run_retention
from gardien.security.connection_log import ConnectionLogEntry
from gardien.security.models import AuditEntry
from gardien.storage.clock import FrozenClock
from tests.security.signin import new_client, signed_in

BURST_IP = "203.0.113.77"


def test_a_burst_is_limited_and_shows_in_the_abuse_view(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    attacker = new_client(client, BURST_IP)
    answers = [attacker.post("/api/policy", content=b"x").status_code for _ in range(70)]
    assert answers.count(429) == 10  # the per-address budget is 60 writes a minute
    limited = attacker.post("/api/policy", content=b"x")
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert attacker.get("/privacy").status_code == 200  # reading is never limited

    dpo = signed_in(client, state, clock, "dpo@example.org", "dpo")
    view = dpo.client.get("/admin/abuse")
    assert view.status_code == 200
    row = view.text.split(f"<code>{BURST_IP}</code>")[1].split("</tr>")[0]
    assert "<td>11</td>" in row  # 11 rejected writes (429), among the errors
    with state.sessions() as session:
        traced = session.scalar(select(func.count()).where(AuditEntry.action == "view.abuse"))
    assert traced == 1
    agent = signed_in(new_client(client), state, clock, "agent@example.org", "agent")
    assert agent.client.get("/admin/abuse").status_code == 403


def test_six_month_old_connection_rows_are_purged_with_a_receipt(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    visitor = new_client(client, "198.51.100.4")
    for _ in range(3):
        visitor.get("/privacy")
    clock.advance(dt.timedelta(days=150))
    visitor.get("/cookies")
    clock.advance(dt.timedelta(days=40))  # the first three are now past six months
    run_retention(state.sessions, state.register, state.stores, clock)
    with state.sessions() as session:
        left = session.scalars(select(ConnectionLogEntry.path)).all()
        receipt = session.scalars(
            select(PurgeReceipt).where(PurgeReceipt.activity == "connection_log")
        ).one()
    assert "/cookies" in left and "/privacy" not in left
    assert receipt.rows_affected >= 3 and receipt.status == "purged"
