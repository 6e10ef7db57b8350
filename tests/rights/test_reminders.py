"""Deadline reminders (rights/reminders.py): one e-mail per case, threshold and due date, to
the people who must act, through the outbox; never twice, even when two transactions race."""

from __future__ import annotations

import datetime as dt
import email
from email import policy

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from gardien.deps import State
from gardien.forms.jobs import send_due
from gardien.forms.models import DisclosureEntry, OutboxMessage
from gardien.rights import reminders
from gardien.rights.deadlines import day_start
from gardien.rights.models import RightsCase, RightsEvent
from gardien.rights.service import Desk, close_case, open_case
from gardien.security.audit import Actor
from gardien.security.models import AdminUser
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from gardien.storage.locks import LockBusy, job_lease
from gardien.storage.subjects import SubjectIdentity
from tests.security.signin import add_user

DPO = Actor("user:1", "dpo")
REQUESTER = "ana.requester@example.org"
BASE = "https://privacy.example.org"


def _case(state: State, *, closed: bool = False, channel: str = "email") -> RightsCase:
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            Desk(state.register, state.providers),
            SubjectIdentity(email=REQUESTER),
            ["access", "erasure"],
            channel=channel,
            now=state.clock.now(),
            actor=DPO,
            language="en",
        )
        if closed:
            close_case(session, case, state.clock.now(), DPO, "answered")
        session.expunge(case)
        return case


def _staff(state: State) -> dict[str, int]:
    users = {
        "dpo@example.org": add_user(state, "dpo@example.org", "dpo"),
        "agent@example.org": add_user(state, "agent@example.org", "agent"),
        "admin@example.org": add_user(state, "admin@example.org", "admin"),
        "auditor@example.org": add_user(state, "auditor@example.org", "auditor"),
        "gone@example.org": add_user(state, "gone@example.org", "agent"),
    }
    with unit_of_work(state.sessions) as session:
        gone = session.get(AdminUser, users["gone@example.org"])
        assert gone is not None
        gone.disabled_at = state.clock.now()
    return users


def _on_local_day(clock: FrozenClock, state: State, day: dt.date) -> None:
    """Move the clock to 00:30 of ``day`` on the operator's clock."""
    target = day_start(day, state.register.rights.time_zone) + dt.timedelta(minutes=30)
    clock.advance(target - clock.now())


def _run(state: State) -> reminders.ReminderReport:
    return reminders.run_reminders(state.sessions, state.register, state.clock, BASE)


def _outbox(state: State) -> list[OutboxMessage]:
    with state.sessions() as session:
        rows = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.kind == reminders.KIND)
            .order_by(OutboxMessage.id)
        ).all()
        session.expunge_all()
        return list(rows)


def test_a_case_due_soon_is_reminded_once_to_the_staff_who_handle_rights(
    state: State, clock: FrozenClock
) -> None:
    _staff(state)
    case = _case(state)
    days = state.register.rights.reminder_days
    _on_local_day(clock, state, case.due_at - dt.timedelta(days=days + 1))
    assert _run(state).sent == []  # not yet within the window
    _on_local_day(clock, state, case.due_at - dt.timedelta(days=days))
    report = _run(state)
    assert report.sent == [reminders.Due(case.id, reminders.DUE_SOON, case.due_at)]
    rows = _outbox(state)
    assert sorted(r.recipient for r in rows) == ["agent@example.org", "dpo@example.org"]
    assert len({r.message_id for r in rows}) == 2
    text = rows[0].message or ""
    parsed = email.message_from_string(text, policy=policy.default)
    body = parsed.get_body().get_content()  # type: ignore[union-attr]
    assert case.reference in str(parsed["Subject"]) and f"in {days} days" in str(parsed["Subject"])
    assert f"{BASE}/admin/rights/{case.reference}" in body
    assert "access, erasure" in body and case.due_at.strftime("%B") in body
    assert REQUESTER not in text and "ana" not in text.lower()
    assert parsed["Message-ID"] == rows[0].message_id

    assert _run(state).sent == []  # the second run sends nothing
    clock.advance(dt.timedelta(days=2))
    assert _run(state).sent == []  # nor a later one before the due date passes
    assert len(_outbox(state)) == 2
    with state.sessions() as session:
        events = session.scalars(
            select(RightsEvent.detail).where(
                RightsEvent.case_id == case.id, RightsEvent.kind == "reminder_sent"
            )
        ).all()
    assert events == [f"due_soon (due {case.due_at.isoformat()}): e-mailed to 2 staff"]


def test_an_overdue_case_gets_one_overdue_reminder(state: State, clock: FrozenClock) -> None:
    _staff(state)
    case = _case(state)
    _on_local_day(clock, state, case.due_at)  # the due date itself: not overdue yet
    assert [d.threshold for d in _run(state).sent] == [reminders.DUE_SOON]
    assert "in 0 days" in str(email.message_from_string(_outbox(state)[0].message or "")["Subject"])
    _on_local_day(clock, state, case.due_at + dt.timedelta(days=1))
    assert _run(state).sent == [reminders.Due(case.id, reminders.OVERDUE, case.due_at)]
    assert _run(state).sent == []
    overdue = _outbox(state)[2:]
    assert len(overdue) == 2
    assert "is overdue" in str(email.message_from_string(overdue[0].message or "")["Subject"])


def test_closed_and_unconfirmed_portal_cases_are_not_reminded(
    state: State, clock: FrozenClock
) -> None:
    _staff(state)
    closed = _case(state, closed=True)
    unconfirmed = _case(state, channel="portal")
    assert unconfirmed.verified_at is None
    _on_local_day(clock, state, closed.due_at + dt.timedelta(days=3))
    assert _run(state).sent == []
    assert _outbox(state) == []


def test_the_assignee_alone_is_reminded_and_the_reminder_reaches_the_disclosure_log_as_staff(
    state: State, clock: FrozenClock
) -> None:
    users = _staff(state)
    case = _case(state)
    with unit_of_work(state.sessions) as session:
        row = session.get(RightsCase, case.id)
        assert row is not None
        row.assignee_id = users["agent@example.org"]
    _on_local_day(clock, state, case.due_at + dt.timedelta(days=1))
    assert [d.threshold for d in _run(state).sent] == [reminders.OVERDUE]
    assert [r.recipient for r in _outbox(state)] == ["agent@example.org"]
    report = send_due(state, now=clock.now())
    assert report.sent == 1
    with state.sessions() as session:
        kinds = session.scalars(select(DisclosureEntry.recipient_kind)).all()
    assert kinds == ["operator"]


def test_an_extension_gives_the_new_due_date_its_own_reminder(
    state: State, clock: FrozenClock
) -> None:
    _staff(state)
    case = _case(state)
    _on_local_day(clock, state, case.due_at)
    assert len(_run(state).sent) == 1
    with unit_of_work(state.sessions) as session:
        row = session.get(RightsCase, case.id)
        assert row is not None
        row.due_at = case.due_at + dt.timedelta(days=60)
    assert _run(state).sent == []
    _on_local_day(clock, state, case.due_at + dt.timedelta(days=60))
    assert [d.due_on for d in _run(state).sent] == [case.due_at + dt.timedelta(days=60)]


def test_two_transactions_racing_past_the_lease_record_one_reminder(
    state: State, clock: FrozenClock
) -> None:
    """Both read the reminders owed before either commits (as two instances would if the
    lease ever let them run together); the unique key keeps the second from queueing a
    second e-mail. Without ``uq_rights_reminder_once`` the second commit succeeds and the
    staff get every reminder twice."""
    _staff(state)
    case = _case(state)
    _on_local_day(clock, state, case.due_at)
    with state.sessions() as session:
        owed_first = reminders.due_reminders(session, state.register, clock.now())
    with state.sessions() as session:
        owed_second = reminders.due_reminders(session, state.register, clock.now())
    assert owed_first == owed_second and len(owed_first) == 1
    with unit_of_work(state.sessions) as session:
        reminders.remind(session, state.register, owed_first[0], now=clock.now(), base_url=BASE)
    with pytest.raises(IntegrityError), unit_of_work(state.sessions) as session:
        reminders.remind(session, state.register, owed_second[0], now=clock.now(), base_url=BASE)
    assert len(_outbox(state)) == 2
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(reminders.RightsReminder)) == 1


def test_a_run_while_another_instance_holds_the_lease_sends_nothing(
    state: State, clock: FrozenClock
) -> None:
    _staff(state)
    case = _case(state)
    _on_local_day(clock, state, case.due_at)
    with job_lease(state.sessions, reminders.JOB_NAME, clock):
        with pytest.raises(LockBusy):
            _run(state)
        assert reminders.remind_once(state) == 0
    assert _outbox(state) == []
    assert reminders.remind_once(state) == 1
