"""Deadline reminders with two instances (issue 10, point 3): two ``gardien serve`` processes
on one PostgreSQL database run the reminder job every 0.05 s each; every reminder reaches the
SMTP server on loopback exactly once (counted by Message-ID), to the staff who handle rights
cases, and a closed case is never reminded of."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gardien.config import Settings
from gardien.deps import State
from gardien.forms.models import OutboxMessage
from gardien.rights import reminders
from gardien.rights.deadlines import local_day
from gardien.rights.models import RightsCase
from gardien.rights.service import Desk, close_case, open_case
from gardien.runtime import build_state, start
from gardien.security import service
from gardien.security.audit import Actor
from gardien.storage.subjects import SubjectIdentity
from tests.e2e.load import connected
from tests.e2e.test_instances import prepare
from tests.forms.smtp import Mailbox, smtp_server
from tests.security.signin import PASSWORD
from tests.support import gardien_env, serving

pytestmark = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
STAFF = ("dpo.reminders@example.org", "agent.reminders@example.org")
DUE_SOON = 6
OVERDUE = 6
CLOSED = 3
DPO = Actor("user:1", "dpo")


def _state(tmp_path: Path, database_url: str, register_path: Path) -> State:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, register_file=register_path
    )
    state = build_state(settings)
    start(state)
    return state


def seed_cases(state: State) -> None:
    """Two staff who handle rights cases, and cases due in 3 days, 2 days late, or closed."""
    now = state.clock.now()
    today = local_day(now, state.register.rights.time_zone)
    with state.sessions.begin() as session:
        for address, role in zip(STAFF, ("dpo", "agent"), strict=True):
            service.create_user(session, address, role, PASSWORD, now)
        desk = Desk(state.register, state.providers)
        for number in range(DUE_SOON + OVERDUE + CLOSED):
            case = open_case(
                session,
                desk,
                SubjectIdentity(email=f"requester{number}@example.org"),
                ["erasure"],
                channel="email",
                now=now,
                actor=DPO,
                language="en",
            )
            # the due date as if the request had come in weeks ago
            late = DUE_SOON <= number < DUE_SOON + OVERDUE
            case.due_at = today + dt.timedelta(days=-2 if late else 3)
            if number >= DUE_SOON + OVERDUE:
                close_case(session, case, now, DPO, "answered")


def reminder_rows(database_url: str) -> tuple[int, int]:
    """Reminders recorded, and their e-mails not sent yet."""
    with connected(database_url) as connection:
        recorded = connection.execute(
            select(func.count()).select_from(reminders.RightsReminder)
        ).scalar_one()
        pending = connection.execute(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.kind == reminders.KIND, OutboxMessage.status != "sent")
        ).scalar_one()
    return int(recorded), int(pending)


def test_two_instances_send_each_reminder_exactly_once(
    tmp_path: Path, register_path: Path, database_url: str
) -> None:
    prepare(tmp_path, database_url, register_path, old_hits=0)
    state = _state(tmp_path, database_url, register_path)
    try:
        seed_cases(state)
    finally:
        state.engine.dispose()
    env = gardien_env(tmp_path / "data", database_url, register_path)
    env["GARDIEN_RIGHTS_REMINDER_SECONDS"] = "0.05"
    mailbox = Mailbox()
    wanted = (DUE_SOON + OVERDUE) * len(STAFF)
    with smtp_server(mailbox) as port, ExitStack() as stack:
        env["GARDIEN_SMTP_URL"] = f"smtp://127.0.0.1:{port}"
        for _ in range(2):
            stack.enter_context(serving(env))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            recorded, pending = reminder_rows(database_url)
            if recorded == DUE_SOON + OVERDUE and not pending and len(mailbox.received) >= wanted:
                break
            time.sleep(0.2)
        time.sleep(2)  # forty more turns of each instance's job
    assert reminder_rows(database_url) == (DUE_SOON + OVERDUE, 0)
    state = _state(tmp_path, database_url, register_path)
    try:
        with state.sessions() as session:
            queued = {
                row.message_id: row.recipient
                for row in session.scalars(
                    select(OutboxMessage).where(OutboxMessage.kind == reminders.KIND)
                )
            }
            closed = set(
                session.scalars(select(RightsCase.reference).where(RightsCase.status == "closed"))
            )
    finally:
        state.engine.dispose()
    assert len(queued) == wanted
    delivered = Counter(mailbox.message_ids())
    assert set(delivered) == set(queued), "a reminder was lost or one nobody queued arrived"
    assert max(delivered.values()) == 1, "a reminder went twice"
    assert Counter(queued.values()) == dict.fromkeys(STAFF, DUE_SOON + OVERDUE)
    bodies = [received.raw.decode() for received in mailbox.received]
    assert not [b for b in bodies if any(ref in b for ref in closed)]
    assert not [b for b in bodies if "requester" in b]
