"""Submissions that arrive together share a transaction: each is still checked for a
duplicate, stored with its outbox rows, and answered on its own."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from gardien.config import Durability
from gardien.deps import State
from gardien.errors import Conflict
from gardien.forms import service
from gardien.forms.models import FormSubmission, OutboxMessage
from gardien.forms.routes import writer
from gardien.forms.writer import SubmissionWriter
from gardien.storage.clock import FrozenClock
from gardien.storage.database import make_engine
from tests.forms.test_submit import GOOD


def accepted(state: State, clock: FrozenClock, message: str) -> service.Accepted:
    form = service.find_form(state.register, "contact")
    shown = service.stamp(state.secret, form.id, clock.now() - dt.timedelta(minutes=1))
    return service.accept(
        register=state.register,
        form=form,
        raw={**GOOD, "message": message, "shown_at": shown},
        language="fr",
        secret=state.secret,
        now=clock.now(),
    )


def store_together(
    store: SubmissionWriter, submissions: list[service.Accepted], now: dt.datetime
) -> list[BaseException | None]:
    """Queue every submission while the writer is busy, so that one transaction takes them
    all; returns each one's outcome."""
    outcomes: list[BaseException | None] = [None] * len(submissions)

    def send(index: int) -> None:
        try:
            store.store(submissions[index], now)
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcomes[index] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(submissions))]
    with store._turn:  # the writer is busy: the submissions queue up
        for thread in threads:
            thread.start()
        while len(store._queue) < len(submissions):
            time.sleep(0.001)
    for thread in threads:
        thread.join()
    return outcomes


def counts(state: State) -> tuple[int, int]:
    with state.sessions() as session:
        return (
            int(session.scalar(select(func.count()).select_from(FormSubmission)) or 0),
            int(session.scalar(select(func.count()).select_from(OutboxMessage)) or 0),
        )


def test_a_burst_shares_one_transaction_and_duplicates_are_still_refused(
    state: State, clock: FrozenClock
) -> None:
    store = writer(state)
    first = accepted(state, clock, "A question about the first module.")
    burst = [
        first,
        accepted(state, clock, "A question about the second module."),
        dataclasses.replace(first, submission={**first.submission, "public_id": "f" * 32}),
        accepted(state, clock, "A question about the third module."),
    ]
    outcomes = store_together(store, burst, clock.now())
    assert [type(o) for o in outcomes] == [type(None), type(None), Conflict, type(None)]
    assert counts(state) == (3, 6)


def test_one_submission_that_cannot_be_stored_fails_alone(state: State, clock: FrozenClock) -> None:
    store = writer(state)
    stored = accepted(state, clock, "Stored before the burst.")
    store.store(stored, clock.now())
    clash = accepted(state, clock, "Same public id as the one before.")
    clash = dataclasses.replace(
        clash, submission={**clash.submission, "public_id": stored.public_id}
    )
    burst = [
        accepted(state, clock, "First of the burst."),
        clash,
        accepted(state, clock, "Last of the burst."),
    ]
    outcomes = store_together(store, burst, clock.now())
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], IntegrityError)
    assert counts(state) == (3, 6)


@pytest.mark.parametrize("size", [1, 70])
def test_every_submission_of_a_burst_is_answered_once_committed(
    state: State, clock: FrozenClock, size: int
) -> None:
    store = writer(state)
    burst = [
        accepted(state, clock, f"Question number {n} about the software.") for n in range(size)
    ]
    assert store_together(store, burst, clock.now()) == [None] * size
    assert counts(state) == (size, 2 * size)


def test_store_now_writes_a_lone_submission_on_sqlite_only_when_the_lock_is_free(
    state: State, clock: FrozenClock
) -> None:
    """On SQLite a lone submission is stored by the caller itself when nothing holds the write
    lock; when something does, ``store_now`` declines at once (the caller then uses ``store``,
    which waits); on PostgreSQL it always declines (a commit there waits for the server)."""
    store = writer(state)
    first = accepted(state, clock, "Stored by the caller itself.")
    sqlite = state.engine.dialect.name == "sqlite"
    assert store.store_now(first, clock.now()) is sqlite
    assert counts(state) == ((1, 2) if sqlite else (0, 0))

    second = accepted(state, clock, "Stored while another writer holds the lock.")
    with state.engine.connect() as holder, holder.begin():  # BEGIN IMMEDIATE on SQLite
        holder.exec_driver_sql("SELECT 1")
        assert store.store_now(second, clock.now()) is False
    assert counts(state) == ((1, 2) if sqlite else (0, 0))
    store.store(second, clock.now())
    assert counts(state) == ((2, 4) if sqlite else (1, 2))

    duplicate = dataclasses.replace(first, submission={**first.submission, "public_id": "e" * 32})
    if sqlite:
        with pytest.raises(Conflict):
            store.store_now(duplicate, clock.now())
        assert counts(state) == (2, 4)


def test_store_now_never_writes_on_the_caller_with_full_durability(
    state: State, clock: FrozenClock, tmp_path: Path
) -> None:
    """``DURABILITY=full`` waits for the disk at every commit: never on the event loop."""
    full = make_engine(f"sqlite:///{tmp_path / 'full.db'}", Durability.full)
    try:
        store = SubmissionWriter(full, state.settings.base_url)
        assert store.store_now(accepted(state, clock, "Never here."), clock.now()) is False
    finally:
        full.dispose()
