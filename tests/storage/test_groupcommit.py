"""Group commit on both backends: waiters wait for COMMIT, batches group, bad rows fail alone."""

from __future__ import annotations

import asyncio
import datetime as dt
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    select,
)

from gardien.storage.base import UTCDateTime
from gardien.storage.database import READ_ONLY
from gardien.storage.groupcommit import (
    GroupCommit,
    GroupCommitError,
    WriterStopped,
    _bind_processor,
)

probe_metadata = MetaData()
probe = Table(
    "group_commit_probe",
    probe_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("label", String(100), nullable=False, unique=True),
)


def labels(engine: Engine) -> list[str]:
    """Read through a connection of its own, which sees committed rows only (read-only, so on
    SQLite it does not queue for the write lock the writer holds)."""
    with engine.execution_options(**{READ_ONLY: True}).connect() as connection:
        return list(connection.scalars(select(probe.c.label).order_by(probe.c.id)))


def in_threads(target: Callable[[str], None], names: list[str]) -> None:
    """Run ``target(name)`` in one thread per name (each with its own event loop), together."""
    threads = [threading.Thread(target=target, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)


def count_handovers(writer: GroupCommit, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The batches ``writer`` hands to its thread from now on, as they are handed."""
    handed: list[object] = []

    class Counting(queue.SimpleQueue[object]):
        def put(self, item: object, block: bool = True, timeout: float | None = None) -> None:
            handed.append(item)
            super().put(item, block, timeout)

    monkeypatch.setattr(writer, "_queue", Counting())
    return handed


class CommitGate:
    """Holds the writer thread just before its first COMMIT until the test opens the gate.

    It is the writer's ``before_commit`` hook: while the gate is shut, the batch is written
    (or, for a batch that is one statement, about to be) but not committed.
    """

    def __init__(self, writer: GroupCommit) -> None:
        self.writer = writer
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.commits = 0
        writer.before_commit = self._on_commit

    def _on_commit(self) -> None:
        self.commits += 1
        self.entered.set()
        assert self.opened.wait(10), "the test never opened the gate"

    def close(self) -> None:
        self.opened.set()
        self.writer.before_commit = None


@pytest.fixture
def gate(writer: GroupCommit) -> Iterator[CommitGate]:
    gate = CommitGate(writer)
    yield gate
    gate.close()


def test_a_waiter_is_released_only_after_commit(
    engine: Engine, writer: GroupCommit, gate: CommitGate
) -> None:
    async def scenario() -> None:
        waiter = writer.submit(probe, {"label": "first"})
        assert await asyncio.to_thread(gate.entered.wait, 10)
        done, _ = await asyncio.wait({waiter}, timeout=0.3)
        assert not done, "released before COMMIT returned"
        assert labels(engine) == []  # not committed yet: nobody else sees it
        gate.opened.set()
        await asyncio.wait_for(waiter, 10)
        assert labels(engine) == ["first"]  # released: another connection sees the row

    asyncio.run(scenario())


def test_rows_queued_during_a_commit_go_out_together(
    engine: Engine, writer: GroupCommit, gate: CommitGate
) -> None:
    async def scenario() -> None:
        first = writer.submit(probe, {"label": "first"})
        assert await asyncio.to_thread(gate.entered.wait, 10)
        rest = [writer.submit(probe, {"label": f"row-{i}"}) for i in range(250)]
        gate.opened.set()
        await asyncio.wait_for(asyncio.gather(first, *rest), 20)

    asyncio.run(scenario())
    assert len(labels(engine)) == 251
    # One commit for "first", then the 250 queued behind it in batches of at most 100.
    assert gate.commits == writer.batches == 4
    assert writer.rows == 251


def test_a_bad_row_fails_alone_and_its_error_quotes_no_value(
    engine: Engine, writer: GroupCommit, gate: CommitGate, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> list[BaseException | None]:
        first = writer.submit(probe, {"label": "alice@example.org"})
        assert await asyncio.to_thread(gate.entered.wait, 10)
        batch = [
            writer.submit(probe, {"label": "bob@example.org"}),
            writer.submit(probe, {"label": "alice@example.org"}),  # unique violation
            writer.submit(probe, {"label": "carol@example.org"}),
        ]
        gate.opened.set()
        await first
        results = await asyncio.gather(*batch, return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]

    outcomes = asyncio.run(scenario())
    assert outcomes[0] is None and outcomes[2] is None
    error = outcomes[1]
    assert isinstance(error, GroupCommitError)
    assert error.table == "group_commit_probe"
    assert error.error_type == "IntegrityError"
    assert "alice" not in str(error) and error.__cause__ is None
    assert labels(engine) == ["alice@example.org", "bob@example.org", "carol@example.org"]
    [logged] = [r for r in caplog.records if r.name == "gardien.groupcommit"]
    assert logged.__dict__["code"] in {"SQLITE_CONSTRAINT_UNIQUE", "23505"}
    assert "alice" not in repr(logged.__dict__)


def test_a_missing_table_fails_every_waiter_and_the_writer_recovers(
    engine: Engine, writer: GroupCommit
) -> None:
    missing = Table("group_commit_absent", MetaData(), Column("id", Integer, primary_key=True))

    async def scenario() -> None:
        with pytest.raises(GroupCommitError, match="group_commit_absent"):
            await writer.write(missing, {"id": 1})
        await writer.write(probe, {"label": "after"})

    asyncio.run(scenario())
    assert labels(engine) == ["after"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_writer_thread_that_died_is_started_again_by_the_next_batch(
    engine: Engine, writer: GroupCommit, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = writer._collect
    crashed: list[bool] = []

    def collect() -> tuple[list[Any], bool]:
        if not crashed:
            crashed.append(True)
            raise RuntimeError("the writer thread crashed")
        return original()

    monkeypatch.setattr(writer, "_collect", collect)
    writer.start()
    first = writer._thread
    assert first is not None
    first.join(5)
    assert not first.is_alive() and crashed

    async def scenario() -> None:
        # A future, not a task: were it never settled, nothing would hang at the loop's end.
        await asyncio.wait_for(writer.submit(probe, {"label": "after-crash"}), 10)

    asyncio.run(scenario())
    assert writer.running and writer._thread is not first
    assert labels(engine) == ["after-crash"]


def test_stop_writes_everything_submitted_then_refuses(engine: Engine, writer: GroupCommit) -> None:
    async def scenario() -> None:
        waiters = [writer.submit(probe, {"label": f"row-{i}"}) for i in range(50)]
        await asyncio.to_thread(writer.stop)
        await asyncio.wait_for(asyncio.gather(*waiters), 5)
        with pytest.raises(WriterStopped):
            writer.submit(probe, {"label": "late"})

    asyncio.run(scenario())
    assert len(labels(engine)) == 50
    assert not writer.running
    writer.start()  # a second lifespan of the same app

    async def again() -> None:
        await writer.write(probe, {"label": "again"})

    asyncio.run(again())
    assert len(labels(engine)) == 51


def test_waiters_of_several_event_loops(engine: Engine, writer: GroupCommit) -> None:
    """Each waiter is woken on its own loop (servers may run one loop per thread)."""

    def one_loop(prefix: str) -> None:
        async def scenario() -> None:
            await asyncio.gather(
                *(writer.write(probe, {"label": f"{prefix}-{i}"}) for i in range(20))
            )

        asyncio.run(scenario())

    in_threads(one_loop, [f"loop{n}" for n in range(3)])
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(probe)) == 60


def test_settings_are_checked(engine: Engine) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(engine, max_batch=0)
    with pytest.raises(ValueError, match="max_delay"):
        GroupCommit(engine, max_delay=-1)


def test_rows_of_one_turn_of_the_loop_share_one_batch(
    engine: Engine, writer: GroupCommit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows written during one turn of a loop travel as one batch: one hand-over to the
    writer, one wake-up of the loop for all of them, and no future made per row."""
    handed = count_handovers(writer, monkeypatch)

    before = [0, 0]

    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        if engine.dialect.name == "postgresql":
            await loop_connected(writer, loop)
        handed.clear()
        before[:] = writer.batches, writer.rows
        wakeups = futures = 0
        real_wakeup, real_future = loop.call_soon_threadsafe, loop.create_future

        def wakeup(*args: Any, **kwargs: Any) -> Any:
            nonlocal wakeups
            wakeups += 1
            return real_wakeup(*args, **kwargs)

        def future() -> asyncio.Future[Any]:
            nonlocal futures
            futures += 1
            return real_future()

        monkeypatch.setattr(loop, "call_soon_threadsafe", wakeup)
        monkeypatch.setattr(loop, "create_future", future)
        await asyncio.gather(*(writer.write(probe, {"label": f"row-{i}"}) for i in range(30)))
        return wakeups, futures

    wakeups, futures = asyncio.run(scenario())
    # The loop wrote the batch itself at the end of its turn (SQLite: in its own connection;
    # PostgreSQL: sent on the loop's connection, the answer read when its socket is ready):
    # nothing handed to the thread, nobody woken from another thread, no future per row.
    assert (len(handed), wakeups, futures) == (0, 0, 0)
    assert len([label for label in labels(engine) if label.startswith("row-")]) == 30
    assert (writer.batches - before[0], writer.rows - before[1]) == (1, 30)


async def loop_connected(writer: GroupCommit, loop: asyncio.AbstractEventLoop) -> None:
    """PostgreSQL: a loop's first batches go to the thread, then the loop's own connection
    opens in the background; return once the loop writes its batches itself."""
    loop_writer = writer._loop_writer
    assert loop_writer is not None
    for _ in range(500):
        lane = loop_writer.lanes.get(loop)
        if lane is not None and lane.pgconn is not None:
            return
        await writer.write(probe, {"label": f"warm-up-{uuid.uuid4().hex}"})
        await asyncio.sleep(0.01)
    raise AssertionError("the loop's connection never opened")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_busy_sqlite_database_sends_the_batch_to_the_thread_which_waits(
    engine: Engine, writer: GroupCommit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop never waits for SQLite's write lock: while another connection holds it, the
    batch goes to the writer thread, and its waiter is released once the thread committed."""
    handed = count_handovers(writer, monkeypatch)
    asyncio.run(writer.write(probe, {"label": "free"}))
    assert handed == [] and labels(engine) == ["free"]  # written by the loop itself

    holder = engine.connect()
    holding = holder.begin()  # BEGIN IMMEDIATE: the write lock, until COMMIT
    holder.exec_driver_sql("INSERT INTO group_commit_probe (label) VALUES ('holder')")

    async def while_locked() -> list[str]:
        waiting = asyncio.ensure_future(writer.write(probe, {"label": "queued"}))
        await asyncio.sleep(0.2)
        seen = labels(engine)
        assert not waiting.done()
        holding.commit()
        await asyncio.wait_for(waiting, 20)
        return seen

    try:
        assert asyncio.run(while_locked()) == ["free"]
    finally:
        holder.close()
    assert len(handed) == 1
    assert labels(engine) == ["free", "holder", "queued"]


def test_with_full_durability_sqlite_commits_only_in_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``DURABILITY=full`` waits for the disk at every commit: never on the event loop."""
    from gardien.config import Durability
    from gardien.storage.database import make_engine

    full = make_engine(f"sqlite:///{tmp_path / 'full.db'}", Durability.full)
    probe_metadata.create_all(full)
    writer = GroupCommit(full, name="test-full")
    handed = count_handovers(writer, monkeypatch)
    try:
        for label in ("one", "two"):
            asyncio.run(writer.write(probe, {"label": label}))
        assert len(handed) == 2 and writer.rows == 2
    finally:
        writer.stop()
        full.dispose()


def test_write_isolates_a_bad_row_within_a_shared_batch(
    engine: Engine, writer: GroupCommit
) -> None:
    """Through ``write`` (one future for the batch) each waiter still learns its own outcome."""

    async def scenario() -> list[BaseException | None]:
        await writer.write(probe, {"label": "taken"})
        results = await asyncio.gather(
            writer.write(probe, {"label": "one"}),
            writer.write(probe, {"label": "taken"}),  # unique violation
            writer.write(probe, {"label": "two"}),
            writer.write(probe, {"label": "taken"}),
            return_exceptions=True,
        )
        return [r if isinstance(r, BaseException) else None for r in results]

    outcomes = asyncio.run(scenario())
    assert outcomes[0] is None and outcomes[2] is None
    for error in (outcomes[1], outcomes[3]):
        assert isinstance(error, GroupCommitError)
        assert error.error_type == "IntegrityError" and "taken" not in str(error)
    assert outcomes[1] is not outcomes[3]  # a fresh exception for each waiter
    assert labels(engine) == ["taken", "one", "two"]


def test_a_cancelled_waiter_leaves_its_batch_to_the_others(
    engine: Engine, writer: GroupCommit, gate: CommitGate
) -> None:
    async def scenario() -> None:
        first = writer.submit(probe, {"label": "first"})
        assert await asyncio.to_thread(gate.entered.wait, 10)
        tasks = [
            asyncio.ensure_future(writer.write(probe, {"label": f"row-{i}"})) for i in range(3)
        ]
        await asyncio.sleep(0)  # the tasks have queued their rows: one batch
        tasks[1].cancel()
        gate.opened.set()
        await first
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], asyncio.CancelledError)

    asyncio.run(scenario())
    # The cancelled waiter's row was committed all the same.
    assert labels(engine) == ["first", "row-0", "row-1", "row-2"]


def test_failures_and_successes_reach_each_of_several_loops(
    engine: Engine, writer: GroupCommit
) -> None:
    """Batches of several loops may share a transaction; each loop learns its own rows' fate."""
    errors: dict[str, list[str]] = {}
    barrier = threading.Barrier(3)

    def one_loop(prefix: str) -> None:
        async def scenario() -> None:
            barrier.wait(10)
            rows = [{"label": f"{prefix}-{i}"} for i in range(10)] + [{"label": "shared"}]
            results = await asyncio.gather(
                *(writer.write(probe, row) for row in rows), return_exceptions=True
            )
            assert all(r is None for r in results[:10])
            errors[prefix] = [type(r).__name__ for r in results[10:] if r is not None]

        asyncio.run(scenario())

    in_threads(one_loop, [f"loop{n}" for n in range(3)])
    # "shared" is unique: exactly one loop got it in, the two others were told it failed.
    assert sorted(len(e) for e in errors.values()) == [0, 1, 1]
    assert all(e in ([], ["GroupCommitError"]) for e in errors.values())
    stored = labels(engine)
    assert len(stored) == 31 and stored.count("shared") == 1


@pytest.mark.parametrize("url", ["sqlite://", "postgresql+psycopg://"])
def test_utc_timestamps_bind_exactly_as_sqlalchemy_binds_them(url: str) -> None:
    """The writer's shortcut for UTC values stores what the generic conversion would."""
    dialect = create_engine(url).dialect  # connects nowhere
    column: Column[dt.datetime] = Column("at", UTCDateTime())
    generic = column.type.dialect_impl(dialect).bind_processor(dialect)
    shortcut = _bind_processor(column, dialect)
    assert generic is not None and shortcut is not None and shortcut is not generic
    paris = dt.timezone(dt.timedelta(hours=2))
    for value in (
        dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC),  # no microseconds
        dt.datetime(2026, 3, 1, 12, 0, 0, 7, tzinfo=dt.UTC),
        dt.datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),  # a three-digit year
        dt.datetime(2026, 3, 1, 14, 0, 0, 123456, tzinfo=paris),  # converted, as before
    ):
        assert shortcut(value) == generic(value)
    with pytest.raises(ValueError, match="naive"):
        shortcut(dt.datetime(2026, 3, 1, 12, 0, 0))


def test_timestamps_round_trip_through_the_writer(engine: Engine) -> None:
    times_metadata = MetaData()
    times = Table(
        "group_commit_times",
        times_metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("at", UTCDateTime(), nullable=False),
    )
    times_metadata.create_all(engine)
    moments = [
        dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 1, 14, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    ]
    writer = GroupCommit(engine, name="test-group-commit-times")

    async def scenario() -> None:
        await asyncio.gather(*(writer.write(times, {"at": at}) for at in moments))

    try:
        asyncio.run(scenario())
    finally:
        writer.stop()
    with engine.connect() as connection:
        stored = list(connection.scalars(select(times.c.at).order_by(times.c.at)))
    assert stored == sorted(moments)
    assert all(at.tzinfo is not None for at in stored)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_wal_is_copied_into_the_database_file_by_the_writers_checkpointer(
    engine: Engine, writer: GroupCommit, database_url: str, tmp_path: Path
) -> None:
    """Request commits leave checkpoints to a thread of their own: rows written through the
    writer reach the database file itself (read here ignoring the WAL) without any commit
    having checkpointed (the automatic threshold is far away)."""
    import sqlite3

    async def write_all() -> None:
        await asyncio.gather(*(writer.write(probe, {"label": f"c-{i}"}) for i in range(50)))

    asyncio.run(write_all())
    path = Path(database_url.split("///", 1)[1])
    checkpointer = writer._checkpointer
    assert checkpointer is not None

    def in_file() -> int:
        # A copy of the database file alone, without its WAL: only checkpointed rows are in.
        alone = tmp_path / "alone.db"
        shutil.copyfile(path, alone)
        file = sqlite3.connect(alone)
        try:
            return int(file.execute("SELECT count(*) FROM group_commit_probe").fetchone()[0])
        except sqlite3.DatabaseError:  # not even the table is there yet (or a torn copy)
            return 0
        finally:
            file.close()
            alone.unlink()

    for _ in range(400):  # the checkpointer runs twice a second
        if checkpointer.checkpoints >= 1 and in_file() == 50:
            break
        time.sleep(0.05)
    assert checkpointer.checkpoints >= 1
    assert in_file() == 50
