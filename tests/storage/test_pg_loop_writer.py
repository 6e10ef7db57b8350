"""PostgreSQL: batches the event loop writes itself (``PgLoopWriter``) are acknowledged only
once committed, and every failure falls back to the writer thread without losing a row."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from sqlalchemy import Engine, text

from gardien.storage.groupcommit import GroupCommit, GroupCommitError
from tests.storage.test_groupcommit import count_handovers, labels, loop_connected, probe

pytestmark = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


def lane_of(writer: GroupCommit, loop: asyncio.AbstractEventLoop) -> Any:
    loop_writer = writer._loop_writer
    assert loop_writer is not None
    return loop_writer.lanes[loop]


def test_a_batch_the_loop_sends_is_acknowledged_only_once_committed(
    engine: Engine, writer: GroupCommit, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed = count_handovers(writer, monkeypatch)
    locker = engine.connect()
    events: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        await loop_connected(writer, loop)
        handed.clear()
        # Another transaction holds the table: the INSERT cannot commit until it ends.
        locker.execute(text("LOCK TABLE group_commit_probe IN EXCLUSIVE MODE"))
        waiter = asyncio.ensure_future(writer.write(probe, {"label": "held"}))
        await asyncio.sleep(0.3)
        events.append("done" if waiter.done() else "waiting")
        assert lane_of(writer, loop).in_flight  # sent, not answered
        await asyncio.to_thread(locker.rollback)
        await asyncio.wait_for(waiter, 10)
        events.append("acknowledged")

    try:
        asyncio.run(scenario())
    finally:
        locker.close()
    assert events == ["waiting", "acknowledged"]
    assert handed == []  # written by the loop, not the thread
    assert "held" in labels(engine)


def test_a_refused_row_in_a_loop_batch_fails_alone(
    engine: Engine, writer: GroupCommit, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> list[BaseException | None]:
        await loop_connected(writer, asyncio.get_running_loop())
        await writer.write(probe, {"label": "alice@example.org"})
        results = await asyncio.gather(
            writer.write(probe, {"label": "bob@example.org"}),
            writer.write(probe, {"label": "alice@example.org"}),  # unique violation
            writer.write(probe, {"label": "carol@example.org"}),
            return_exceptions=True,
        )
        return [r if isinstance(r, BaseException) else None for r in results]

    outcomes = asyncio.run(scenario())
    assert outcomes[0] is None and outcomes[2] is None
    error = outcomes[1]
    assert isinstance(error, GroupCommitError) and error.error_type == "IntegrityError"
    assert "alice" not in str(error)
    assert sorted(label for label in labels(engine) if "@" in label) == [
        "alice@example.org",
        "bob@example.org",
        "carol@example.org",
    ]
    assert "alice" not in repr([r.__dict__ for r in caplog.records])


def test_a_lost_connection_sends_the_batch_to_the_thread_and_the_loop_reconnects(
    engine: Engine, writer: GroupCommit
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        await loop_connected(writer, loop)
        pid = lane_of(writer, loop).pgconn.backend_pid
        with engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            admin.commit()
        # Every row is written all the same: by the thread while the loop's line is down.
        await asyncio.gather(*(writer.write(probe, {"label": f"a-{i}"}) for i in range(20)))
        await loop_connected(writer, loop)
        assert lane_of(writer, loop).pgconn.backend_pid != pid
        await asyncio.gather(*(writer.write(probe, {"label": f"b-{i}"}) for i in range(20)))

    asyncio.run(scenario())
    written = labels(engine)
    assert all(f"a-{i}" in written and f"b-{i}" in written for i in range(20))


def test_stop_settles_the_batch_in_flight_and_writes_the_ones_waiting(
    engine: Engine, writer: GroupCommit
) -> None:
    locker = engine.connect()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        await loop_connected(writer, loop)
        locker.execute(text("LOCK TABLE group_commit_probe IN EXCLUSIVE MODE"))
        first = asyncio.ensure_future(writer.write(probe, {"label": "in-flight"}))
        await asyncio.sleep(0.1)
        # Sent while the first is in flight: these wait for it on the loop's lane.
        later = [asyncio.ensure_future(writer.write(probe, {"label": f"w-{i}"})) for i in range(5)]
        await asyncio.sleep(0.1)
        assert lane_of(writer, loop).waiting
        stopping = asyncio.ensure_future(asyncio.to_thread(writer.stop))
        threading.Timer(0.3, locker.rollback).start()
        await asyncio.wait_for(asyncio.gather(first, *later), 15)
        await stopping

    try:
        asyncio.run(scenario())
    finally:
        locker.close()
    written = labels(engine)
    assert "in-flight" in written and all(f"w-{i}" in written for i in range(5))


def test_closing_the_loop_writer_waits_for_the_statement_in_flight(
    engine: Engine, writer: GroupCommit
) -> None:
    locker = engine.connect()
    loop_writer = writer._loop_writer
    assert loop_writer is not None
    seen: list[bool] = []
    lanes: list[Any] = []

    def close() -> None:
        loop_writer.close(timeout=15)
        seen.append(bool(lanes[0].in_flight))

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        await loop_connected(writer, loop)
        locker.execute(text("LOCK TABLE group_commit_probe IN EXCLUSIVE MODE"))
        # A future, not a task: were it never settled, nothing would hang at the loop's end.
        first = writer.submit(probe, {"label": "in-flight"})
        await asyncio.sleep(0.1)
        lanes.append(lane_of(writer, loop))
        assert lanes[0].in_flight
        closing = asyncio.ensure_future(asyncio.to_thread(close))
        await asyncio.sleep(0.3)
        assert not closing.done()  # still waiting for the statement's answer
        await asyncio.to_thread(locker.rollback)
        await asyncio.wait_for(closing, 15)
        await asyncio.wait_for(first, 15)

    try:
        asyncio.run(scenario())
    finally:
        locker.close()
    assert seen == [False]  # it returned once nothing was in flight
    assert "in-flight" in labels(engine)
