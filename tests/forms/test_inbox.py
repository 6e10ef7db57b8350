"""The forms inbox: list, traced view with the consent proof and deletion date, notes,
answered, export (traced), early deletion; an auditor sees none of it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gardien.deps import State
from gardien.forms.models import FormSubmission, OutboxMessage
from gardien.security.models import AuditEntry
from gardien.storage.clock import FrozenClock
from tests.forms.test_submit import GOOD, stamped
from tests.security.signin import new_client, signed_in


def submit(client: TestClient, clock: FrozenClock, **changes: object) -> str:
    visitor = new_client(client, "203.0.113.20")
    answer = visitor.post("/api/forms/contact", json={**GOOD, **stamped(visitor, clock), **changes})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def actions(state: State) -> list[str]:
    with state.sessions() as session:
        return [str(a) for a in session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq))]


def test_an_agent_works_through_the_inbox(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    first = submit(client, clock)
    clock.advance(dt.timedelta(days=10))
    second = submit(client, clock, message="Another question, about pricing.")
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    listing = agent.client.get("/admin/inbox")
    assert listing.status_code == 200
    assert f"/admin/inbox/{first}" in listing.text and f"/admin/inbox/{second}" in listing.text
    assert "Popescu" not in listing.text  # the list shows no personal data
    assert "80 days" in listing.text and "90 days" in listing.text
    view = agent.client.get(f"/admin/inbox/{first}")
    assert view.status_code == 200
    assert "Popescu" in view.text and "+40211234567" in view.text
    assert "2026-04-15" in view.text  # deletion date
    assert re.search(r"[0-9a-f]{64}", view.text)  # hash of the consent text shown
    csrf = agent.csrf
    noted = agent.client.post(
        f"/admin/inbox/{first}/note", data={"note": "Called back <b>today</b>", "csrf": csrf}
    )
    assert noted.status_code == 200
    assert "Called back &lt;b&gt;today&lt;/b&gt;" in noted.text
    agent.client.post(f"/admin/inbox/{first}/answered", data={"csrf": csrf})
    answered = agent.client.get("/admin/inbox?status=answered").text
    assert f"/admin/inbox/{first}" in answered and f"/admin/inbox/{second}" not in answered
    deleted = agent.client.post(
        f"/admin/inbox/{second}/delete", data={"csrf": csrf}, follow_redirects=False
    )
    assert deleted.status_code == 303
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(FormSubmission)) == 1
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.submission_id.is_not(None))
        )
    assert agent.client.get(f"/admin/inbox/{second}").status_code == 404
    assert agent.client.get("/admin/inbox-export").status_code == 403  # exports are the DPO's
    traced = actions(state)
    for action in (
        "view.form_submission",
        "form_submission.noted",
        "form_submission.answered",
        "form_submission.deleted",
    ):
        assert action in traced


def test_the_dpo_exports_and_an_auditor_sees_nothing(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    submit(client, clock, company='=HYPERLINK("http://x")')
    dpo = signed_in(client, state, clock, "dpo@example.org", "dpo")
    exported = dpo.client.get("/admin/inbox-export?form=contact")
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows[0]["last_name"] == "Popescu"
    assert rows[0]["company"].startswith("'=")  # a spreadsheet shows it, never runs it
    assert "form_submission.exported" in actions(state)
    auditor = signed_in(client, state, clock, "auditor@example.org", "auditor")
    assert auditor.client.get("/admin/inbox").status_code == 403


def test_a_given_up_e_mail_is_retried_from_the_inbox(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    public_id = submit(client, clock)
    with state.sessions.begin() as session:
        message = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).first()
        assert message is not None
        message.status, message.attempts, message.last_error = "dead", 8, "SMTPDataError 554"
        outbox_id = message.id
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    view = agent.client.get(f"/admin/inbox/{public_id}").text
    assert "SMTPDataError 554" in view and f"/outbox/{outbox_id}/retry" in view
    retried = agent.client.post(
        f"/admin/inbox/{public_id}/outbox/{outbox_id}/retry",
        data={"csrf": agent.csrf},
        follow_redirects=False,
    )
    assert retried.status_code == 303
    with state.sessions() as session:
        row = session.get(OutboxMessage, outbox_id)
        assert row is not None and row.status == "pending" and row.attempts == 0
    again = agent.client.post(
        f"/admin/inbox/{public_id}/outbox/{outbox_id}/retry", data={"csrf": agent.csrf}
    )
    assert again.status_code == 400  # no longer dead
    assert "outbox.retried" in actions(state)
