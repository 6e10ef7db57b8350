"""Every calendar day of the rights workflow is cut on the operator's clock (the register's
``rights.time_zone``, here Europe/Paris), with the deadlines' one helper pair
(``deadlines.local_day`` / ``deadlines.day_start``), not on the UTC date: the evidence pack's
"deadline met", the system pack's end of day, the admin queue's date filters and the access
package's "answered" date. 23:30 UTC on 10 March 2026 is already 00:30 on 11 March in Paris."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gardien.deps import State
from gardien.rights import evidence
from gardien.rights.deadlines import day_start, local_day
from gardien.rights.models import RightsCase
from gardien.rights.service import Desk, close_case, export_package, open_case
from gardien.security.audit import Actor
from gardien.security.models import AuditEntry
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from gardien.storage.subjects import SubjectIdentity
from tests.rights.test_register_person_settings import with_setting
from tests.security.signin import signed_in

DPO = Actor("user:1", "dpo")
PARIS = "Europe/Paris"
LATE = dt.datetime(2026, 3, 10, 23, 30, tzinfo=dt.UTC)
"""11 March, 00:30 in Paris (UTC+1)."""
IN_TIME = dt.datetime(2026, 3, 10, 22, 30, tzinfo=dt.UTC)
"""10 March, 23:30 in Paris."""
DUE = dt.date(2026, 3, 10)
RECEIVED = dt.datetime(2026, 2, 10, 9, tzinfo=dt.UTC)
"""10 February: due on Tuesday 10 March, a working day."""


@pytest.fixture
def register_path(tmp_path: Path) -> Path:
    return with_setting(tmp_path, f"time_zone: {PARIS}")


def test_a_local_day_starts_at_local_midnight_even_when_the_clocks_change() -> None:
    start = day_start(dt.date(2026, 3, 11), PARIS)
    assert start == dt.datetime(2026, 3, 10, 23, tzinfo=dt.UTC)
    assert local_day(start, PARIS) == dt.date(2026, 3, 11)
    assert local_day(start - dt.timedelta(microseconds=1), PARIS) == dt.date(2026, 3, 10)
    assert local_day(LATE, PARIS) == dt.date(2026, 3, 11) and LATE.date() == DUE
    # summer time begins on 29 March 2026 in Paris: a day of 23 hours, starting at 22:00 UTC
    spring = day_start(dt.date(2026, 3, 29), PARIS)
    assert day_start(dt.date(2026, 3, 30), PARIS) - spring == dt.timedelta(hours=23)
    assert day_start(dt.date(2026, 7, 1), PARIS) == dt.datetime(2026, 6, 30, 22, tzinfo=dt.UTC)


def _case(state: State, email: str, received: dt.datetime, closed: dt.datetime | None) -> str:
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            Desk(state.register, state.providers),
            SubjectIdentity(email=email),
            ["access"],
            channel="email",
            now=received,
            actor=DPO,
            language="en",
        )
        if closed is not None:
            close_case(session, case, closed, DPO, "answered")
        return case.reference


def _verdict(pack: str, reference: str) -> str:
    row = pack.split(f"<td>{reference}</td>", 1)[1].split("</tr>", 1)[0]
    return row.rsplit("<span", 1)[1]


def test_the_evidence_pack_reads_the_day_of_closing_on_the_operators_clock(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    assert state.register.rights.time_zone == PARIS
    late = _case(state, "late@example.org", RECEIVED, LATE)
    in_time = _case(state, "in.time@example.org", RECEIVED, IN_TIME)
    with state.sessions() as session:
        cases = {
            c.reference: c for c in session.scalars(select(RightsCase).order_by(RightsCase.id))
        }
        assert cases[late].due_at == cases[in_time].due_at == DUE
        assert evidence.deadline_met(cases[late], DUE, PARIS) is False
        assert evidence.deadline_met(cases[in_time], DUE, PARIS) is True
        assert evidence.deadline_met(cases[late], DUE, "UTC") is True  # what UTC days said
        # the system on 10 March: the pack ends at midnight in Paris (23:00 UTC); the case
        # closed at 00:30 on the 11th is still open then, in time
        on_the_10th = evidence.system_pack(session, DUE, now=LATE, language="en", time_zone=PARIS)
        assert "missed" not in _verdict(on_the_10th, late)
        assert "open, still in time" in _verdict(on_the_10th, late)
        assert "met" in _verdict(on_the_10th, in_time)
        on_the_11th = evidence.system_pack(
            session, DUE + dt.timedelta(days=1), now=LATE, language="en", time_zone=PARIS
        )
        assert 'class="missed">missed' in _verdict(on_the_11th, late)
    # through the admin: the case's pack, and the system's pack of "today" in Paris
    clock.moment = LATE
    dpo = signed_in(client, state, clock, "dpo@example.org", "dpo")
    pack = dpo.client.get(f"/admin/rights/{late}/evidence")
    assert pack.status_code == 200
    assert '<span class="missed">missed</span>' in pack.text
    met = dpo.client.get(f"/admin/rights/{in_time}/evidence").text
    assert '<span class="">met</span>' in met
    assert dpo.client.get("/admin/evidence").status_code == 200
    with state.sessions() as session:
        days = session.scalars(
            select(AuditEntry.target_id).where(
                AuditEntry.action == "rights.evidence_exported", AuditEntry.target_type == "system"
            )
        ).all()
    assert days == ["2026-03-11"]  # today in Paris, not the UTC date


def test_the_queue_filters_by_the_day_received_in_paris(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    after_midnight = _case(state, "night@example.org", LATE, None)
    before_midnight = _case(state, "evening@example.org", IN_TIME, None)
    clock.moment = LATE
    agent = signed_in(client, state, clock, "agent@example.org", "agent")

    def listed(day: str) -> set[str]:
        page = agent.client.get("/admin/rights", params={"from": day, "to": day})
        assert page.status_code == 200, page.text
        return {r for r in (after_midnight, before_midnight) if r in page.text}

    assert listed("2026-03-11") == {after_midnight}
    assert listed("2026-03-10") == {before_midnight}
    assert listed("2026-03-12") == set()


def test_the_access_package_is_answered_on_the_day_in_paris(state: State) -> None:
    reference = _case(state, "ana@example.org", IN_TIME, None)
    with unit_of_work(state.sessions) as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()
        package = export_package(
            session,
            Desk(state.register, state.providers),
            case,
            SubjectIdentity(email="ana@example.org"),
            now=LATE,
            actor=DPO,
        )
    with zipfile.ZipFile(io.BytesIO(package.content)) as archive:
        page = archive.read("index.html").decode()
    assert "received 2026-03-10, answered 2026-03-11." in page
