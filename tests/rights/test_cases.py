"""A case file: its legal due date, its audit entry, and its purge three years after closure."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from gardien.deps import State
from gardien.retention.service import run_retention
from gardien.rights.models import RightsCase, RightsEvent
from gardien.rights.service import Desk, RightsError, close_case, open_case, timeline
from gardien.security.audit import Actor
from gardien.security.models import AuditEntry
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from gardien.storage.subjects import SubjectIdentity
from tests.retention.test_engine import receipts

DPO = Actor("dpo-1", "dpo")
ANA = SubjectIdentity(email="ana@example.org")


def test_a_case_is_due_per_the_registers_calendar_and_audited(
    state: State, clock: FrozenClock
) -> None:
    clock.advance(dt.datetime(2026, 1, 31, 15, tzinfo=dt.UTC) - clock.now())
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            Desk(state.register, state.providers),
            ANA,
            ["access"],
            channel="post",
            now=clock.now(),
            actor=DPO,
        )
        reference = case.reference
    with state.sessions() as session:
        case = session.scalars(select(RightsCase)).one()
        assert case.due_at == dt.date(2026, 3, 2)  # 28 February 2026 is a Saturday
        assert (case.status, case.channel, case.language) == ("open", "post", "en")
        [opened] = timeline(session, case)
        assert opened.kind == "opened" and "email" in (opened.detail or "")
        assert "ana@" not in (opened.detail or "")
        audit = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "rights.case_open")
        ).one()
        assert (audit.target_id, audit.actor) == (reference, "dpo-1")
    with state.engine.connect() as connection:
        raw = connection.exec_driver_sql("SELECT email, email_index FROM rights_case").one()
    assert b"ana@example.org" not in bytes(raw[0]) and "ana" not in raw[1]


def test_unknown_rights_and_channels_are_refused(state: State, clock: FrozenClock) -> None:
    desk = Desk(state.register, state.providers)
    with state.sessions() as session:
        with pytest.raises(RightsError, match="rights requested"):
            open_case(session, desk, ANA, ["teleport"], channel="cli", now=clock.now(), actor=DPO)
        with pytest.raises(RightsError, match="channel"):
            open_case(session, desk, ANA, ["access"], channel="fax", now=clock.now(), actor=DPO)


def test_closed_cases_are_purged_three_years_after_closure_with_a_receipt(
    state: State, clock: FrozenClock
) -> None:
    desk = Desk(state.register, state.providers)
    start = clock.now()
    with unit_of_work(state.sessions) as session:
        old = open_case(session, desk, ANA, ["access"], channel="cli", now=start, actor=DPO)
        close_case(session, old, start, DPO, "answered")
        recent = open_case(session, desk, ANA, ["erasure"], channel="cli", now=start, actor=DPO)
        close_case(session, recent, start + dt.timedelta(days=40), DPO, "erased")
        open_case(session, desk, ANA, ["access"], channel="cli", now=start, actor=DPO)
    clock.advance(dt.timedelta(days=3 * 365 + 10))
    run_retention(state.sessions, state.register, state.stores, clock)
    with state.sessions() as session:
        left = session.execute(select(RightsCase.status, RightsCase.outcome)).all()
        assert sorted(left, key=str) == sorted([("closed", "erased"), ("open", None)], key=str)
        events = session.scalar(
            select(func.count()).select_from(RightsEvent).where(RightsEvent.case_id == old.id)
        )
        assert events == 0
    # (the rights sweeps write their own receipts under the same activity)
    [receipt] = [r for r in receipts(state, "rights_requests") if r.store == "rights_request"]
    assert (receipt.status, receipt.rows_affected, receipt.period) == ("purged", 1, "P3Y")
    assert receipt.store == "rights_request"
