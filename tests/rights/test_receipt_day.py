"""The day a request is received is the day on the controller's clock (the register's
``rights.time_zone``, Europe/Bucharest by default), not the UTC date: the deadline runs from
it (Reg. 1182/71 Art. 3(1))."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gardien.deps import State
from gardien.register.loader import load_register
from gardien.rights import repository
from gardien.rights.deadlines import due_date, local_day
from gardien.rights.models import RightsCase
from gardien.rights.service import Desk, close_case, open_case
from gardien.security.audit import Actor
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from gardien.storage.subjects import SubjectIdentity
from tests.conftest import SEED_REGISTER
from tests.rights.test_admin import record
from tests.rights.test_admin import reference_of as recorded_reference
from tests.rights.test_portal import ask, reference_of
from tests.rights.test_register_person_settings import with_setting
from tests.rights.test_register_settings import problems_of
from tests.security.signin import signed_in

DPO = Actor("user:1", "dpo")
# 00:30 on 10 March 2026 in Bucharest (UTC+2): still 9 March in UTC.
AFTER_MIDNIGHT = dt.datetime(2026, 3, 9, 22, 30, tzinfo=dt.UTC)
# 9 March + 1 month is Thursday 9 April; 10 March + 1 month is 10 April, Orthodox Good
# Friday, then the Easter weekend and Easter Monday: Tuesday 14 April.
DUE_FROM_UTC, DUE_FROM_BUCHAREST = dt.date(2026, 4, 9), dt.date(2026, 4, 14)


@pytest.mark.parametrize(
    ("moment", "day"),
    [
        (dt.datetime(2026, 1, 15, 21, 30, tzinfo=dt.UTC), dt.date(2026, 1, 15)),  # 23:30 EET
        (dt.datetime(2026, 1, 15, 22, 30, tzinfo=dt.UTC), dt.date(2026, 1, 16)),  # 00:30 EET
        (dt.datetime(2026, 7, 15, 20, 30, tzinfo=dt.UTC), dt.date(2026, 7, 15)),  # 23:30 EEST
        (dt.datetime(2026, 7, 15, 21, 30, tzinfo=dt.UTC), dt.date(2026, 7, 16)),  # 00:30 EEST
        (dt.datetime(2026, 7, 15, 21, 30), dt.date(2026, 7, 16)),  # naive: read as UTC
    ],
)
def test_the_day_of_receipt_is_read_on_the_bucharest_clock(
    moment: dt.datetime, day: dt.date
) -> None:
    assert local_day(moment) == day
    assert local_day(moment, "Europe/Paris") == moment.date()  # an hour behind Bucharest


def test_the_two_days_give_different_deadlines() -> None:
    assert due_date(AFTER_MIDNIGHT.date()) == DUE_FROM_UTC
    assert due_date(local_day(AFTER_MIDNIGHT)) == DUE_FROM_BUCHAREST


def _case(state: State, reference: str) -> RightsCase:
    with state.sessions() as session:
        return session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()


def test_a_portal_request_after_midnight_in_bucharest_counts_from_that_day(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    assert state.register.rights.time_zone == "Europe/Bucharest"
    clock.moment = AFTER_MIDNIGHT
    case = _case(state, reference_of(ask(client)))
    assert case.received_at == AFTER_MIDNIGHT  # the moment itself is kept, in UTC
    assert case.due_at == DUE_FROM_BUCHAREST


def test_a_letter_received_today_in_bucharest_is_not_in_the_future(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    clock.moment = AFTER_MIDNIGHT
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    answer = record(agent, dt.date(2026, 3, 10))
    assert answer.status_code == 303, answer.text
    case = _case(state, recorded_reference(answer))
    assert local_day(case.received_at) == dt.date(2026, 3, 10)
    assert case.due_at == DUE_FROM_BUCHAREST
    page = agent.client.get(f"/admin/rights/{case.reference}").text
    due = page.split('id="due">')[1].split("</dd>")[0]
    assert "35 days left" in due, due  # 10 March to 14 April, counted on the same clock


def test_the_register_chooses_the_time_zone(tmp_path: Path) -> None:
    assert load_register(SEED_REGISTER).rights.time_zone == "Europe/Bucharest"
    paris = with_setting(tmp_path, "time_zone: Europe/Paris")
    assert load_register(paris).rights.time_zone == "Europe/Paris"


@pytest.mark.parametrize("value", ["Europe/Atlantis", "../../etc/passwd", "''", "UTC+2"])
def test_an_unknown_time_zone_is_refused_with_its_key(tmp_path: Path, value: str) -> None:
    problems = problems_of(with_setting(tmp_path, f"time_zone: {value}"))
    assert any("time_zone" in p and "time zone" in p for p in problems), problems


def test_a_case_closed_after_midnight_in_bucharest_on_the_day_after_its_due_date_is_late(
    state: State,
) -> None:
    received = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            Desk(state.register, state.providers),
            SubjectIdentity(email="late@example.org"),
            ["access"],
            channel="email",
            now=received,
            actor=DPO,
            language="en",
        )
        due = case.due_at
        # 22:30 UTC on the due date is 00:30 the next day in Bucharest: too late
        close_case(session, case, dt.datetime.combine(due, dt.time(22, 30), dt.UTC), DPO, "done")
    with state.sessions() as session:
        zone = state.register.rights.time_zone
        figures = repository.figures(session, due, due, due + dt.timedelta(days=1), zone)
        assert (figures.closed, figures.on_time) == (1, 0)
        assert repository.figures(session, due, due, due, "Europe/London").on_time == 1
