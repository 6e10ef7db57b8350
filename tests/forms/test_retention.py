"""The form's 90-day promise: the submission, its outbox messages, their ``.eml`` copies and
the disclosure entries are gone once the register's period has run, with a receipt; nothing
goes a day early, and a later submission is left alone."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gardien.deps import State
from gardien.forms.jobs import send_due
from gardien.forms.models import DisclosureEntry, FormSubmission, OutboxMessage
from gardien.retention.service import run_retention
from gardien.storage.clock import FrozenClock
from tests.forms.test_submit import GOOD, stamped
from tests.retention.test_engine import receipts

ACTIVITY = "contact_forms"


@dataclass(frozen=True)
class Left:
    """What one submission still has in the database and on disk."""

    submissions: int
    outbox: int
    disclosures: int
    eml_files: list[Path]


def left(state: State, public_id: str, eml_files: list[Path]) -> Left:
    with state.sessions() as session:
        ids = list(
            session.scalars(select(FormSubmission.id).where(FormSubmission.public_id == public_id))
        )
        outbox = session.scalar(
            select(func.count()).where(OutboxMessage.submission_id.in_(ids or [-1]))
        )
        disclosures = session.scalar(
            select(func.count()).where(DisclosureEntry.submission_id.in_(ids or [-1]))
        )
    return Left(
        len(ids), int(outbox or 0), int(disclosures or 0), [p for p in eml_files if p.exists()]
    )


def submit_and_send(
    client: TestClient, state: State, clock: FrozenClock, **changes: str
) -> tuple[str, list[Path]]:
    """A visitor sends the form; the sender job writes its e-mails as ``.eml`` files (no SMTP
    server is configured) and logs the disclosures. Returns the submission's id and files."""
    answer = client.post("/api/forms/contact", json={**GOOD, **stamped(client, clock), **changes})
    assert answer.status_code == 201, answer.text
    report = send_due(state, now=clock.now())
    assert (report.claimed, report.sent) == (2, 2)  # the notification and the acknowledgement
    with state.sessions() as session:
        paths = session.scalars(
            select(OutboxMessage.eml_path)
            .join(FormSubmission, FormSubmission.id == OutboxMessage.submission_id)
            .where(FormSubmission.public_id == answer.json()["id"])
        ).all()
    files = [Path(p) for p in paths if p]
    assert len(files) == 2 and all(f.is_file() for f in files)
    assert all(f.parent == state.settings.data_dir / "outbox" for f in files)
    return str(answer.json()["id"]), files


def retention(state: State) -> None:
    run_retention(state.sessions, state.register, state.stores, state.clock)


def test_a_submission_is_gone_after_90_days_with_its_mail_and_a_receipt(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    received_at = clock.now()
    old_id, old_files = submit_and_send(client, state, clock)
    assert left(state, old_id, old_files) == Left(1, 2, 2, old_files)

    # A month later, someone else writes: that submission has its own 90 days.
    clock.advance(dt.timedelta(days=30))
    new_id, new_files = submit_and_send(
        client, state, clock, email="ion.ionescu@example.ro", message="A second question."
    )

    # Day 89: the promise is 90 days, not less.
    clock.moment = received_at + dt.timedelta(days=89)
    retention(state)
    assert left(state, old_id, old_files) == Left(1, 2, 2, old_files)
    [early] = receipts(state, ACTIVITY)
    assert (early.status, early.rows_affected) == ("purged", 0)

    # Just past day 90: everything the first submission left behind is gone.
    clock.moment = received_at + dt.timedelta(days=90, minutes=1)
    retention(state)
    assert left(state, old_id, old_files) == Left(0, 0, 0, [])
    assert left(state, new_id, new_files) == Left(1, 2, 2, new_files)
    assert sorted((state.settings.data_dir / "outbox").glob("*.eml")) == sorted(new_files)
    receipt = receipts(state, ACTIVITY)[-1]
    assert receipt.store == "form_submission"
    assert (receipt.action, receipt.period, receipt.trigger) == ("delete", "P90D", "collected")
    assert (receipt.status, receipt.rows_affected) == ("purged", 1)
    assert received_at < receipt.cutoff <= received_at + dt.timedelta(minutes=1)

    # Running again purges nothing more; the later submission goes at its own day 90.
    retention(state)
    assert receipts(state, ACTIVITY)[-1].rows_affected == 0
    clock.moment = received_at + dt.timedelta(days=120, minutes=1)
    retention(state)
    assert left(state, new_id, new_files) == Left(0, 0, 0, [])
    assert list((state.settings.data_dir / "outbox").glob("*.eml")) == []
    assert receipts(state, ACTIVITY)[-1].rows_affected == 1
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(FormSubmission)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        assert session.scalar(select(func.count()).select_from(DisclosureEntry)) == 0
