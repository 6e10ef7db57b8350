"""The audit trail: any edit, deletion or reordering is caught; a lawful purge is not."""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from gardien.cli.main import app
from gardien.deps import State
from gardien.retention.service import run_retention
from gardien.security import audit
from gardien.security.models import AuditEntry
from gardien.storage import chain
from gardien.storage.clock import FrozenClock
from gardien.storage.database import make_engine, session_factory

runner = CliRunner()


def write(state: State, count: int) -> None:
    with state.sessions.begin() as session:
        for i in range(count):
            audit.record(
                session,
                audit.Actor(f"user:{i}", "dpo"),
                "view.case",
                state.clock.now(),
                target_type="rights_request",
                target_id=str(i),
            )


def verify(state: State) -> str | None:
    with state.sessions() as session:
        broken = audit.verify_chain(session)
    return None if broken is None else str(broken)


def cli_verify(state: State) -> tuple[int, str]:
    env = {
        "GARDIEN_DATA_DIR": str(state.settings.data_dir),
        "GARDIEN_DATABASE_URL": state.settings.resolved_database_url,
        "GARDIEN_REGISTER": str(state.settings.register_file),
    }
    result = runner.invoke(app, ["audit", "verify"], env=env)
    return result.exit_code, result.output


def test_intact_chain_verifies(state: State) -> None:
    write(state, 5)
    assert verify(state) is None
    code, output = cli_verify(state)
    assert code == 0 and "audit chain intact: 5 entries" in output


def test_editing_one_row_is_caught_and_named(state: State) -> None:
    write(state, 5)
    with state.sessions.begin() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(actor="user:999"))
    assert verify(state) == "entry 3: content does not match its hash (edited)"
    code, output = cli_verify(state)
    assert code == 1 and "audit chain broken at entry 3" in output


def test_deleting_or_reordering_is_caught(state: State) -> None:
    write(state, 5)
    with state.sessions.begin() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    assert verify(state) == "entry 2: sequence jumps to 3 (deleted or reordered entries)"
    with state.sessions.begin() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq == 5))
    assert verify(state) is not None


def test_rewriting_the_hash_too_is_caught_by_the_next_entry(state: State) -> None:
    write(state, 4)
    with state.sessions.begin() as session:
        entry = session.get(AuditEntry, 2)
        assert entry is not None
        entry.outcome = "refused"
        entry.hash = chain.link(entry.prev_hash, audit._fields(entry))
    assert verify(state) == "entry 3: does not follow the previous entry (edited, deleted or moved)"


def test_lawful_purge_leaves_tombstones_that_still_verify(state: State, clock: FrozenClock) -> None:
    write(state, 3)
    clock.advance(dt.timedelta(days=400))  # audit_trail keeps entries one year
    write(state, 2)
    results = run_retention(state.sessions, state.register, state.stores, clock)
    assert next(r for r in results if r.activity == "audit_trail").rows == 3
    with state.sessions() as session:
        rows = session.execute(
            select(AuditEntry.seq, AuditEntry.purged, AuditEntry.actor).order_by(AuditEntry.seq)
        ).all()
    # three tombstones, then the two recent entries and the purge's own entry
    assert [(r.purged, r.actor is None) for r in rows] == [(True, True)] * 3 + [(False, False)] * 3
    assert verify(state) is None
    with state.sessions.begin() as session:  # editing a tombstone's hash is still caught
        session.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(hash="0" * 64))
    assert verify(state) is not None


def test_two_writers_never_fork_the_chain(state: State) -> None:
    other = make_engine(state.settings.resolved_database_url)
    factories = [state.sessions, session_factory(other)]

    def worker(index: int) -> None:
        for i in range(15):
            with factories[index % 2].begin() as session:
                audit.record(
                    session,
                    audit.Actor(f"worker:{index}", "system"),
                    "tick",
                    state.clock.now(),
                    target_id=str(i),
                )

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.dispose()
    with state.sessions() as session:
        seqs = session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
    assert seqs == list(range(1, 61))
    assert verify(state) is None
