"""The retention engine on a test-only store: receipts, chunks, idempotence, holds, status."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, insert, select

from gardien.deps import State
from gardien.register.loader import load_register
from gardien.register.schema import Register
from gardien.retention.models import PurgeReceipt
from gardien.retention.service import Outcome, retention_status, run_retention
from gardien.retention.service import State as Status
from gardien.retention.stores import StoreRegistry
from gardien.storage.clock import FrozenClock
from gardien.storage.locks import LockBusy, acquire, holder_id
from tests.retention.store import SampleStore, sample_record, test_metadata


def register_with_sample(
    path: Path, *, action: str = "delete", hold_until: str | None = None
) -> Register:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    activity = dict(data["activities"][0])
    activity["id"] = "sample_activity"
    activity["storage"] = "sample_store"
    activity["retention"] = dict(
        activity["retention"], period="P90D", trigger="collected", action=action
    )
    if hold_until:
        activity["legal_holds"] = [
            {
                "reason": "litigation 2026-17",
                "owner": "dpo@example.org",
                "expires": dt.date.fromisoformat(hold_until),
            }
        ]
    data["activities"].append(activity)
    edited = path.with_name(f"register-{action}-{hold_until}.yaml")
    edited.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_register(edited)


@pytest.fixture
def sample_state(state: State, register_path: Path) -> State:
    test_metadata.create_all(state.engine)
    state.register = register_with_sample(register_path)
    state.stores = StoreRegistry([SampleStore()])
    return state


def seed_rows(state: State, ages_in_days: list[int]) -> None:
    now = state.clock.now()
    with state.sessions.begin() as session:
        session.execute(
            insert(sample_record),
            [
                {
                    "email": f"p{i}@example.org",
                    "collected_at": now - dt.timedelta(days=age),
                    "anonymised": 0,
                }
                for i, age in enumerate(ages_in_days)
            ],
        )


def remaining(state: State) -> list[int]:
    now = state.clock.now()
    with state.sessions() as session:
        rows = session.execute(
            select(sample_record.c.collected_at, sample_record.c.anonymised)
        ).all()
    return sorted(
        round((now - r.collected_at.replace(tzinfo=dt.UTC)).total_seconds() / 86400)
        for r in rows
        if not r.anonymised
    )


def receipts(state: State, activity: str = "sample_activity") -> list[PurgeReceipt]:
    with state.sessions() as session:
        return list(
            session.scalars(
                select(PurgeReceipt)
                .where(PurgeReceipt.activity == activity)
                .order_by(PurgeReceipt.id)
            )
        )


def test_day_91_rows_go_day_89_rows_stay_with_a_receipt(sample_state: State) -> None:
    seed_rows(sample_state, [1, 89, 91, 200, 400])
    results = run_retention(
        sample_state.sessions,
        sample_state.register,
        sample_state.stores,
        sample_state.clock,
        chunk_size=2,
    )
    sample = next(r for r in results if r.activity == "sample_activity")
    assert sample.outcome is Outcome.purged
    assert sample.rows == 3
    assert sample.chunks == 2
    assert remaining(sample_state) == [1, 89]
    [receipt] = receipts(sample_state)
    assert receipt.rows_affected == 3
    assert receipt.status == "purged"
    assert receipt.cutoff == sample_state.clock.now() - dt.timedelta(days=90)
    assert receipt.period == "P90D"
    assert receipt.trigger == "collected"
    assert receipt.action == "delete"
    assert receipt.duration_ms >= 0
    assert receipt.started_at == sample_state.clock.now()


def test_exact_boundary_moves_on_the_day(sample_state: State, clock: FrozenClock) -> None:
    seed_rows(sample_state, [90])
    run_retention(sample_state.sessions, sample_state.register, sample_state.stores, clock)
    assert remaining(sample_state) == [90]  # exactly 90 days old: still within the promise
    clock.advance(dt.timedelta(seconds=1))
    run_retention(sample_state.sessions, sample_state.register, sample_state.stores, clock)
    assert remaining(sample_state) == []


def test_second_run_changes_nothing(sample_state: State) -> None:
    seed_rows(sample_state, [10, 100, 120])
    args = (sample_state.sessions, sample_state.register, sample_state.stores, sample_state.clock)
    first = run_retention(*args)
    second = run_retention(*args)
    assert [r.rows for r in first if r.activity == "sample_activity"] == [2]
    assert [r.rows for r in second if r.activity == "sample_activity"] == [0]
    assert remaining(sample_state) == [10]
    assert [r.rows_affected for r in receipts(sample_state)] == [2, 0]


def test_dry_run_counts_and_changes_nothing(sample_state: State) -> None:
    seed_rows(sample_state, [10, 100, 120])
    results = run_retention(
        sample_state.sessions,
        sample_state.register,
        sample_state.stores,
        sample_state.clock,
        dry_run=True,
    )
    assert next(r for r in results if r.activity == "sample_activity").rows == 2
    assert remaining(sample_state) == [10, 100, 120]
    assert receipts(sample_state) == []


def test_anonymise_keeps_rows_without_personal_data(
    sample_state: State, register_path: Path
) -> None:
    sample_state.register = register_with_sample(register_path, action="anonymise")
    seed_rows(sample_state, [10, 100])
    run_retention(
        sample_state.sessions, sample_state.register, sample_state.stores, sample_state.clock
    )
    with sample_state.sessions() as session:
        rows = session.execute(
            select(sample_record.c.email, sample_record.c.anonymised).order_by(
                sample_record.c.collected_at
            )
        ).all()
    assert [(r.email is None, r.anonymised) for r in rows] == [(True, 1), (False, 0)]


def test_legal_hold_suspends_the_purge_until_it_expires(
    sample_state: State, register_path: Path, clock: FrozenClock
) -> None:
    sample_state.register = register_with_sample(register_path, hold_until="2026-02-01")
    seed_rows(sample_state, [100])
    args = (sample_state.sessions, sample_state.register, sample_state.stores, clock)
    result = next(r for r in run_retention(*args) if r.activity == "sample_activity")
    assert result.outcome is Outcome.held
    assert result.note
    assert "litigation 2026-17" in result.note
    assert remaining(sample_state) == [100]
    with sample_state.sessions() as session:
        status = next(
            s
            for s in retention_status(session, sample_state.register, sample_state.stores, clock)
            if s.activity == "sample_activity"
        )
    assert status.state is Status.held
    clock.advance(dt.timedelta(days=18))  # 2 February: the hold has expired
    result = next(r for r in run_retention(*args) if r.activity == "sample_activity")
    assert result.outcome is Outcome.purged
    assert result.rows == 1


def test_status_shows_overdue_then_within_limit(sample_state: State) -> None:
    seed_rows(sample_state, [5, 95])
    args = (sample_state.register, sample_state.stores, sample_state.clock)
    with sample_state.sessions() as session:
        rows = {s.activity: s for s in retention_status(session, *args)}
    assert rows["sample_activity"].state is Status.overdue
    assert rows["sample_activity"].oldest == sample_state.clock.now() - dt.timedelta(days=95)
    assert rows["contact_forms"].state is Status.not_implemented
    run_retention(sample_state.sessions, *args)
    with sample_state.sessions() as session:
        rows = {s.activity: s for s in retention_status(session, *args)}
    assert rows["sample_activity"].state is Status.within_limit
    last_run = rows["sample_activity"].last_run
    assert last_run is not None
    assert dt.timedelta(0) <= last_run - sample_state.clock.now() < dt.timedelta(minutes=1)
    assert not any(s.state is Status.overdue for s in rows.values())


def test_activities_without_a_store_are_reported_not_implemented(sample_state: State) -> None:
    results = run_retention(
        sample_state.sessions, sample_state.register, sample_state.stores, sample_state.clock
    )
    missing = {r.activity for r in results if r.outcome is Outcome.not_implemented}
    assert missing == {
        a.id for a in sample_state.register.activities if a.storage != "sample_store"
    }
    assert all(r.rows == 0 for r in results if r.outcome is Outcome.not_implemented)


def test_only_one_instance_runs_at_a_time(sample_state: State) -> None:
    other = holder_id()
    assert acquire(
        sample_state.sessions, "retention", other, dt.timedelta(minutes=5), sample_state.clock
    )
    with pytest.raises(LockBusy):
        run_retention(
            sample_state.sessions, sample_state.register, sample_state.stores, sample_state.clock
        )
    assert receipts(sample_state) == []


def test_concurrent_runs_purge_once(sample_state: State) -> None:
    seed_rows(sample_state, [100] * 50)
    outcomes: list[str] = []

    def run() -> None:
        try:
            results = run_retention(
                sample_state.sessions,
                sample_state.register,
                sample_state.stores,
                sample_state.clock,
            )
            outcomes.append(f"ran:{sum(r.rows for r in results)}")
        except LockBusy:
            outcomes.append("busy")

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(int(o.split(":")[1]) for o in outcomes if o.startswith("ran"))
    assert total == 50
    with sample_state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(sample_record)) == 0
        # one receipt with rows per purge: the lease never let two runs overlap
        purged = session.scalars(
            select(PurgeReceipt.rows_affected).where(
                PurgeReceipt.activity == "sample_activity", PurgeReceipt.rows_affected > 0
            )
        ).all()
    assert purged == [50]


def test_a_legal_hold_lasts_until_its_last_day_ends_on_the_controllers_clock(
    sample_state: State, register_path: Path, clock: FrozenClock
) -> None:
    """The hold's last day is the controller's (here Europe/Paris), not UTC's: at 23:59 in
    Paris on that day (22:59 UTC) it still holds; at midnight in Paris the next day begins
    there (23:00 UTC, still the same day in UTC) and the purge runs."""
    register = register_with_sample(register_path, hold_until="2026-02-01")
    rights = register.rights.model_copy(update={"time_zone": "Europe/Paris"})
    sample_state.register = register.model_copy(update={"rights": rights})
    seed_rows(sample_state, [100])
    clock.moment = dt.datetime(2026, 2, 1, 22, 59, tzinfo=dt.UTC)
    args = (sample_state.sessions, sample_state.register, sample_state.stores, clock)
    result = next(r for r in run_retention(*args) if r.activity == "sample_activity")
    assert result.outcome is Outcome.held
    with sample_state.sessions() as session:
        status = next(
            s
            for s in retention_status(session, sample_state.register, sample_state.stores, clock)
            if s.activity == "sample_activity"
        )
    assert status.state is Status.held
    clock.moment = dt.datetime(2026, 2, 1, 23, 0, tzinfo=dt.UTC)  # 2 February, 00:00 in Paris
    result = next(r for r in run_retention(*args) if r.activity == "sample_activity")
    assert result.outcome is Outcome.purged and result.rows == 1
