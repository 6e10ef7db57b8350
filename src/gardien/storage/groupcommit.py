"""Group commit: many small inserts from request handlers, one transaction per batch.

Hot write paths (connection log, analytics hits, consent records) must not answer before their
row is committed (DESIGN.md principle 5), yet one transaction per request would make the
commit, not the request, the bottleneck. Handlers therefore hand their row to a ``GroupCommit``
and await it; one background thread takes everything queued (up to ``max_batch`` rows, after
waiting ``max_delay`` for more), inserts it in a single transaction, commits, and only then
releases every waiter of the batch. While a batch commits, the next one fills up, so batches
grow with load on their own.

The event loop's side does as little per row as it can: rows submitted by one loop during one
turn of it go into one batch, which is handed to the writer in one step at the end of that turn
and whose waiters all share one future, resolved with one wake-up of the loop once COMMIT has
returned. The writer merges whatever batches queued up while it was committing into its next
transaction.

One thread per process means one writer at a time, which is what SQLite allows anyway (the
engine's ``BEGIN IMMEDIATE`` takes the write lock up front, so a request handler writing at the
same moment queues behind the batch instead of failing). PostgreSQL is used the same way.
A batch of one table without a chain is one statement that commits on its own (on SQLite an
``INSERT`` on the writer's connection when the rows fit in one; on PostgreSQL a ``COPY`` or
``INSERT`` on a driver connection of the writer's own in autocommit mode): atomic, and as
durable once it returns as after a COMMIT, without the BEGIN and COMMIT round trips, each of
which costs the writer a wait for the GIL while the loop is busy.

On SQLite, a batch that is one such statement is written by the event loop itself at the end
of its turn whenever the write lock is free at that instant (``_InlineWriter``): in WAL mode
that commit does not wait for the disk, and costs the loop less than handing the batch to the
thread and being woken by it. A thread of its own checkpoints the WAL (``WalCheckpointer``),
so that no commit on the request path does.

On PostgreSQL, such a batch is sent by the event loop itself on a non-blocking connection of
its own, and its waiters are released when the socket says it committed (``PgLoopWriter``,
in ``pgwriter.py``): no thread hand-over at all.

A failed batch is retried row by row when the failure may come from one row (a constraint, a
value the column refuses), so one bad row never fails its neighbours; a database that is down
or locked fails the whole batch at once. Waiters receive a ``GroupCommitError`` naming the
table and the error type only: a driver's message can quote the row, and rows hold personal
data.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Column, Connection, Engine, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import PoolProxiedConnection

from gardien.storage.base import UTCDateTime
from gardien.storage.database import is_sqlite_busy

if TYPE_CHECKING:
    from gardien.storage.pgwriter import PgLoopWriter

log = logging.getLogger("gardien.groupcommit")

Row = Mapping[str, object]
Ticket = tuple["_Batch", int]
Chain = Callable[[Connection, list[Any]], None]


class GroupCommitError(Exception):
    """A row could not be committed; the message names the table and the error type only."""

    def __init__(self, table: str, error: BaseException | type[BaseException]) -> None:
        kind = error if isinstance(error, type) else type(error)
        super().__init__(f"group commit into {table} failed: {kind.__name__}")
        self.table = table
        self.error_type = kind.__name__


class WriterStopped(RuntimeError):
    """The writer was stopped; rows submitted now would never be written."""


class _SharedFuture(asyncio.Future[None]):
    """The one future every waiter of a batch awaits.

    A waiter that is cancelled must not cancel it for the others: ``Task.cancel`` cancels the
    future its task awaits when it can, so this one refuses, and the cancelled task is told
    once the batch is settled (its row is committed all the same).
    """

    def cancel(self, msg: Any | None = None) -> bool:
        return False


class _Batch:
    """Rows of one event loop, handed to the writer together; settled as one."""

    __slots__ = ("loop", "items", "future", "errors", "handed", "waited")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: list[tuple[Table, Row]] = []
        self.future = _SharedFuture(loop=loop)
        self.errors: list[type[BaseException] | None] | None = None
        """``None`` once every row is committed; otherwise each row's error type, or ``None``
        for the rows that were committed."""
        self.handed = False
        self.waited = 0
        """Turns of the loop this batch waited for more rows (the inline writer's)."""

    def outcome(self, index: int) -> GroupCommitError | None:
        """The error of row ``index`` (a fresh exception for each waiter), if it failed."""
        errors = self.errors
        if errors is None or (error := errors[index]) is None:
            return None
        return GroupCommitError(self.items[index][0].name, error)


_STOP = object()
"""Queued by ``stop``: everything submitted before it is written, nothing after is accepted."""


class GroupCommit:
    """A batching writer of rows, each acknowledged only once its transaction has committed.

    ``max_batch`` bounds one transaction (and the time a SQLite write lock is held);
    ``max_delay`` (seconds) is how long a batch that is not full may wait for company. Under a
    steady load batches fill while the previous one commits, so a delay of zero still groups;
    a small delay helps when commits are expensive (``synchronous=FULL``, a remote disk).

    ``write`` and ``submit`` may be called from any number of event loops (each in its own
    thread); each waiter is woken on its own loop.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 500,
        max_delay: float = 0.0,
        name: str = "gardien-group-commit",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_delay < 0:
            raise ValueError("max_delay cannot be negative")
        self.engine = engine
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.name = name
        self.batches = 0
        """Transactions committed so far (batches and single-row retries alike)."""
        self.rows = 0
        """Rows committed so far."""
        self._queue: queue.SimpleQueue[_Batch | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._alive = False
        """The thread was started and has not ended: checked on every batch, where
        ``Thread.is_alive`` would cost a lock."""
        self._stopped = False
        self._open: dict[asyncio.AbstractEventLoop, _Batch] = {}
        """Each loop's batch that is still filling, until the end of the loop's turn."""
        self._carried: _Batch | None = None
        self._connection: Connection | None = None
        self._plans: dict[tuple[Table, tuple[str, ...]], _InsertPlan] = {}
        self._chains: dict[Table, Chain] = {}
        self._autocommit: PoolProxiedConnection | None = None
        sqlite = engine.dialect.name == "sqlite"
        self._inline = _InlineWriter(self) if sqlite else None
        self._loop_writer: PgLoopWriter | None = None
        if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
            # Imported here: psycopg is some 9 MB a server on SQLite never needs.
            from gardien.storage.pgwriter import PgLoopWriter

            self._loop_writer = PgLoopWriter(self)
        self._checkpointer = WalCheckpointer(engine) if sqlite else None
        self.before_commit: Callable[[], None] | None = None
        """Called in the writer thread once a batch is written and about to be committed (a
        single-statement batch commits with its statement: then just before it). Tests hold
        the writer there to see what a client sees before COMMIT has returned."""

    def chain(self, table: Table, extend: Chain) -> None:
        """Make ``table`` a chained log: before a batch's rows of it are inserted,
        ``extend(connection, rows)`` runs in the batch's transaction and fills in the rows'
        sequence numbers and hashes (taking the chain's lock first), so the chain is extended
        once per batch. It receives the submitted dicts, in submission order."""
        self._chains[table] = extend

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (idempotent; ``submit`` also starts it on first use, and
        ``start`` after ``stop`` starts afresh, as an app's lifespan may run twice)."""
        with self._lock:
            if self._stopped and not self.running:
                self._stopped = False
                if self._loop_writer is not None:
                    self._loop_writer.closed = False
            self._start_locked()

    def _start_locked(self) -> None:
        if self._stopped:
            raise WriterStopped(f"{self.name} was stopped")
        if self._alive:
            return
        if self._thread is not None:
            # It has ended: clearing ``_alive`` (under this lock) was its last step.
            self._thread.join()
        # A daemon: should the process exit without ``stop``, rows still queued were never
        # acknowledged, so nothing a client was told is lost.
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if self._checkpointer is not None:
            self._checkpointer.start()
        self._alive = True

    def stop(self, timeout: float | None = 30.0) -> None:
        """Write everything already submitted, then end the thread. Blocks: from the event
        loop, call it through ``asyncio.to_thread``."""
        if self._inline is not None:
            self._inline.close()  # reopened on demand, should the writer start again
        if self._checkpointer is not None:
            self._checkpointer.stop()
        # The loops' own writes settle first; what waited for them goes to the thread.
        left = self._loop_writer.close() if self._loop_writer is not None else []
        with self._lock:
            if self._stopped:
                thread = self._thread
            else:
                self._stopped = True
                thread = self._thread
                for batch in left:
                    self._hand_locked(batch)
                # Batches still filling are handed over now, ahead of the stop.
                for batch in self._open.values():
                    self._hand_locked(batch)
                self._open.clear()
                if thread is not None:
                    self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the event loop's side ------------------------------------------------------------------
    def submit(self, table: Table, row: Row) -> asyncio.Future[None]:
        """Queue ``row`` for ``table``; the future resolves once it is committed.

        A future of its own for the row; ``write`` avoids even that.
        """
        batch, index = self._add(table, row)
        future: asyncio.Future[None] = batch.loop.create_future()
        batch.future.add_done_callback(functools.partial(_settle_one, future, batch, index))
        return future

    def enqueue(self, table: Table, row: Row) -> Ticket:
        """Queue ``row`` now and return at once; ``settled(ticket)`` waits for its commit.

        For a caller that has more to do before it must wait, such as middleware that lets
        the application finish its response while the row is being committed."""
        return self._add(table, row)

    async def settled(self, ticket: Ticket) -> None:
        """Return once the row of ``ticket`` is durable; raises ``GroupCommitError``."""
        batch, index = ticket
        await batch.future
        error = batch.outcome(index)
        if error is not None:
            raise error

    async def write(self, table: Table, row: Row) -> None:
        """Insert ``row`` and return once it is durable; raises ``GroupCommitError``."""
        batch, index = self._add(table, row)
        await batch.future
        error = batch.outcome(index)
        if error is not None:
            raise error

    def _add(self, table: Table, row: Row) -> tuple[_Batch, int]:
        loop = asyncio.get_running_loop()
        with self._lock:
            batch = self._open.get(loop)
            if batch is None:
                # Once per batch, not per row: a batch that is still open proves the writer
                # was running (and not stopped) a moment ago, and ``stop`` hands it over.
                self._start_locked()
                batch = self._open[loop] = _Batch(loop)
                loop.call_soon(self._hand, batch)  # at the end of this turn of the loop
            items = batch.items
            items.append((table, row))
            if len(items) >= self.max_batch:
                del self._open[loop]
                self._hand_locked(batch)
        return batch, len(items) - 1

    def _hand(self, batch: _Batch) -> None:
        if (
            self._inline is not None
            and batch.waited < self._inline.WAIT_TURNS
            and len(batch.items) < self._inline.ENOUGH_ROWS
        ):
            # A small batch the loop will write itself waits a turn or two for company
            # (see ``_InlineWriter``); from a loop with nothing else to do, that is at once.
            batch.waited += 1
            batch.loop.call_soon(self._hand, batch)
            return
        with self._lock:
            if self._open.get(batch.loop) is not batch:
                return  # handed already: it filled up, or ``stop`` took it
            del self._open[batch.loop]
        inline = self._inline
        if inline is not None and inline.write(batch):
            return
        if self._loop_writer is not None and self._loop_writer.take(batch):
            return
        self._hand_over(batch)

    def _hand_over(self, batch: _Batch) -> None:
        """From the batch's loop: to the writer thread."""
        with self._lock:
            if self._stopped:
                # ``stop`` came while the loop tried the batch itself: its rows are not
                # written, and its waiters are told so rather than left waiting.
                batch.handed = True
                batch.errors = [WriterStopped] * len(batch.items)
                batch.future.set_result(None)
                return
            self._hand_locked(batch)

    def _hand_locked(self, batch: _Batch) -> None:
        if not batch.handed:
            batch.handed = True
            self._queue.put(batch)

    # -- the writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        try:
            while not stopping:
                batches, stopping = self._collect()
                if batches:
                    self._write(batches)
        finally:
            self._close_connection()
            with self._lock:
                self._alive = False

    def _collect(self) -> tuple[list[_Batch], bool]:
        """Block for one batch, then merge what else is queued, up to ``max_batch`` rows;
        returns (batches, stop seen).

        The wait for company is one sleep, not a wake-up per arriving batch: every wake-up
        costs a GIL hand-over with the event loop, which is what group commit saves.
        """
        first = self._carried
        self._carried = None
        if first is None:
            item = self._queue.get()
            if item is _STOP:
                return [], True
            assert isinstance(item, _Batch)
            first = item
            if self.max_delay > 0:
                time.sleep(self.max_delay)
        batches = [first]
        rows = len(first.items)
        while rows < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batches, True
            assert isinstance(item, _Batch)
            if rows + len(item.items) > self.max_batch:
                self._carried = item  # the next transaction starts with it
                break
            batches.append(item)
            rows += len(item.items)
        return batches, False

    def _write(self, batches: list[_Batch]) -> None:
        items = [item for batch in batches for item in batch.items]
        try:
            self._insert(items)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to its waiters
            if len(items) > 1 and _may_be_one_row(exc):
                for batch in batches:
                    errors: list[type[BaseException] | None] = []
                    for item in batch.items:
                        try:
                            self._insert([item])
                        except Exception as row_exc:  # noqa: BLE001 - see above
                            self._log_failure(item[0], 1, row_exc)
                            errors.append(type(row_exc))
                        else:
                            errors.append(None)
                    if any(errors):
                        batch.errors = errors
            else:
                self._log_failure(items[0][0], len(items), exc)
                for batch in batches:
                    batch.errors = [type(exc)] * len(batch.items)
        _settle(batches)

    def _insert(self, items: Sequence[tuple[Table, Row]]) -> None:
        groups: dict[tuple[Table, tuple[str, ...]], list[Row]] = {}
        for table, row in items:
            groups.setdefault((table, tuple(row)), []).append(row)
        connection = self._connection or self.engine.connect()
        self._connection = connection
        try:
            [(table, keys), rows] = next(iter(groups.items()))
            plan = self._plan(table, keys)
            if len(groups) == 1 and table not in self._chains and plan.alone(connection, rows):
                # One statement is its own transaction: no BEGIN and COMMIT around it, so the
                # writer takes the GIL back once or twice per batch instead of four times.
                if plan.style == "postgresql":
                    driver_connection = self._autocommit_connection()
                else:
                    driver_connection = connection.connection.dbapi_connection
                self._before_commit()
                plan.execute_alone(driver_connection, rows, connection.dialect)
            else:
                with connection.begin():
                    for (table, keys), rows in groups.items():
                        extend = self._chains.get(table)
                        if extend is not None:
                            extend(connection, rows)
                        self._plan(table, keys).execute(connection, rows)
                    self._before_commit()
        except BaseException:
            # Failures are rare; a fresh connection next time is cheaper than diagnosing
            # whether this one survived (a failed rollback, a server restart).
            self._close_connection()
            raise
        # COMMIT has returned: only now may anyone be told the rows are there.
        self.batches += 1
        self.rows += len(items)

    def one_statement_plan(self, batch: _Batch) -> _InsertPlan | None:
        """The plan writing ``batch`` as one statement the loop may send itself: rows of one
        table without a chain, all with the same keys, and no test holding the writer."""
        items = batch.items
        table, first = items[0]
        if self.before_commit is not None or table in self._chains:
            return None
        keys = tuple(first)
        for other, row in items:
            if other is not table or (row is not first and tuple(row) != keys):
                return None
        return self._plan(table, keys)

    def _plan(self, table: Table, keys: tuple[str, ...]) -> _InsertPlan:
        plan = self._plans.get((table, keys))
        if plan is None:
            plan = self._plans[(table, keys)] = _InsertPlan(table, keys, self.engine)
        return plan

    def _autocommit_connection(self) -> Any:
        """PostgreSQL: a driver connection of the writer's own in autocommit mode, kept out of
        the pool (which must never hand out a connection that commits every statement)."""
        if self._autocommit is None:
            pooled = self.engine.raw_connection()
            pooled.detach()
            driver_connection: Any = pooled.dbapi_connection
            driver_connection.autocommit = True
            self._autocommit = pooled
        return self._autocommit.dbapi_connection

    def _before_commit(self) -> None:
        if self.before_commit is not None:
            self.before_commit()

    def _log_failure(self, table: Table, rows: int, exc: BaseException) -> None:
        log.error(
            "group commit failed",
            extra={
                "table": table.name,
                "rows": rows,
                "error": type(exc).__name__,
                "code": _error_code(exc),
            },
        )

    def _close_connection(self) -> None:
        held = (self._autocommit, self._connection)
        self._autocommit = self._connection = None
        for connection in held:
            if connection is not None:
                try:
                    connection.close()
                except Exception:  # noqa: BLE001 - a broken connection is dropped either way
                    connection.invalidate()


_SHARED_PLANS: dict[tuple[str, str, Table, tuple[str, ...]], _InsertPlan] = {}
"""Plans by dialect and driver name (not by the dialect object, whose id a later engine's may
reuse once it is gone), table and keys."""


def insert_rows(connection: Connection, table: Table, rows: Sequence[Row]) -> None:
    """Insert ``rows`` (all with the same keys) in ``connection``'s transaction the way the
    writer does: statement rendered once, values through the columns' bind processors, for a
    fraction of what ``connection.execute(table.insert(), rows)`` costs per call. For a hot
    path that commits rows of its own with another table's (a form submission with its
    request's connection-log row)."""
    if not rows:
        return
    keys = tuple(rows[0])
    engine = connection.engine
    key = (engine.dialect.name, engine.dialect.driver, table, keys)
    plan = _SHARED_PLANS.get(key)
    if plan is None:
        plan = _SHARED_PLANS[key] = _InsertPlan(table, keys, engine)
    plan.execute(connection, rows)


class _InlineWriter:
    """SQLite: a batch that is one statement is written by the event loop itself, at the end of
    the turn that filled it, when the database's write lock is free at that instant.

    A hand-over to the writer thread costs more than the write: the thread wakes, waits for
    the GIL the busy loop holds, and wakes the loop again to release the waiters. In WAL mode
    with ``synchronous=NORMAL`` a one-statement commit appends to the WAL without waiting for
    the disk (it survives a crash of the process, as promised; ``DURABILITY=full``, which
    waits for the disk, never takes this path), so the loop spends less on the write than on
    the hand-over. The loop must never wait for the lock, though: its connection does not
    wait (``busy_timeout=0``) and a busy database sends the batch to the writer thread as
    before. Neither does it checkpoint the WAL (a disk-bound job, left to ``WalCheckpointer``).

    Each commit has a fixed cost the loop pays itself, so a small batch waits up to
    ``WAIT_TURNS`` more turns of the loop for the rows of requests that are already being
    read: at 8 connections batches grow from 3.5 to 8 rows and the log's cost falls from
    about 12% to 5% (bench connlog). A loop with nothing else to do runs those turns at once.
    A table with a chain, a batch of several tables or statements,
    and a writer a test holds (``before_commit``) go to the thread too.
    """

    WAIT_TURNS = 2
    ENOUGH_ROWS = 32
    """A batch this large is written without waiting."""

    def __init__(self, writer: GroupCommit) -> None:
        self.writer = writer
        self.connection: PoolProxiedConnection | None = None
        self.usable: bool | None = None
        """Unknown until the first batch; ``False`` when the database waits for the disk on
        every commit (``synchronous=FULL``)."""
        self.lock = threading.Lock()

    def write(self, batch: _Batch) -> bool:
        """Write ``batch`` and release its waiters now; ``False`` if it must go to the thread."""
        # One connection for every loop of the process: a loop finding it in use by another
        # hands its batch to the thread rather than wait.
        if not self.lock.acquire(blocking=False):
            return False
        try:
            return self._write(batch)
        finally:
            self.lock.release()

    def _write(self, batch: _Batch) -> bool:
        writer = self.writer
        items = batch.items
        if self.usable is False:
            return False
        plan = writer.one_statement_plan(batch)
        if plan is None or plan.style != "sqlite" or len(items) > plan.rows_per_statement:
            return False
        driver_connection = self._driver_connection()
        if driver_connection is None:
            return False
        try:
            plan.execute_alone(driver_connection, [row for _, row in items], writer.engine.dialect)
        except DBAPIError as exc:
            if not is_sqlite_busy(exc):
                self._close()  # whatever it was, the thread retries and reports it
            return False
        batch.handed = True
        writer.batches += 1
        writer.rows += len(items)
        batch.future.set_result(None)
        return True

    def _driver_connection(self) -> Any:
        if self.connection is None:
            pooled = self.writer.engine.raw_connection()
            pooled.detach()  # its settings below must never reach a pooled session
            driver_connection: Any = pooled.dbapi_connection
            synchronous = driver_connection.execute("PRAGMA synchronous").fetchone()[0]
            self.usable = synchronous <= 1  # OFF or NORMAL
            if not self.usable:
                pooled.close()
                return None
            driver_connection.execute("PRAGMA busy_timeout=0").close()
            driver_connection.execute("PRAGMA wal_autocheckpoint=0").close()
            self.connection = pooled
        return self.connection.dbapi_connection

    def close(self) -> None:
        with self.lock:
            self._close()

    def _close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - a broken connection is dropped either way
                connection.invalidate()


class WalCheckpointer:
    """SQLite: copies the WAL back into the database file from a thread of its own, every
    ``interval`` seconds, so that no request's commit does it.

    By default SQLite checkpoints inside the COMMIT that takes the WAL past 1,000 pages: that
    commit waits for two flushes to disk, and every request pays a share of them (measured
    here: 170 us per small transaction with automatic checkpoints, 65 us without). A
    ``PASSIVE`` checkpoint waits for no reader or writer; taken twice a second it keeps the
    WAL far below the automatic threshold, which Gardien raises to 10,000 pages and keeps as
    the safety net (for the CLI, which runs no checkpointer, and for a burst this thread
    cannot keep up with).
    """

    def __init__(self, engine: Engine, interval: float = 0.5) -> None:
        self.engine = engine
        self.interval = interval
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="gardien-wal-checkpoint", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            thread.join(10)

    def _run(self) -> None:
        connection: PoolProxiedConnection | None = None
        try:
            while not self._stop.wait(self.interval):
                try:
                    if connection is None:
                        connection = self.engine.raw_connection()
                        connection.detach()
                    connection.dbapi_connection.execute(  # type: ignore[union-attr]
                        "PRAGMA wal_checkpoint(PASSIVE)"
                    ).close()
                    self.checkpoints += 1
                except Exception as exc:  # noqa: BLE001 - the next turn tries again
                    log.warning("WAL checkpoint failed", extra={"error": type(exc).__name__})
                    if connection is not None:
                        connection.invalidate()
                        connection = None
        finally:
            if connection is not None:
                connection.close()


class _InsertPlan:
    """How rows of one table, with one set of keys, are inserted with the least work per row.

    The writer runs on the same interpreter as the event loop, so every microsecond it spends
    per row is taken from requests, and every call that releases the GIL costs a hand-over
    with the busy loop thread. Hence, where the driver allows it, the statement is rendered
    once and values go through the columns' own bind processors (the same ones SQLAlchemy
    applies: encryption, UTC conversion) straight to the driver: on SQLite one multi-row
    ``VALUES`` statement per batch (one step into the library instead of one per row), on
    PostgreSQL one ``COPY ... FROM STDIN`` (rows go out in one stream; per row it costs a
    third of what ``executemany`` does at 64 rows) or, for a single row, one ``INSERT``. Any
    other case, such as a column whose Python-side default the row leaves out, goes through
    ``Table.insert()``.

    UTC timestamps, the one value every row carries, skip the generic conversion when they
    are already in UTC: the same text (SQLite) or value (PostgreSQL) is stored, for a third
    of the work.
    """

    def __init__(self, table: Table, keys: tuple[str, ...], engine: Engine) -> None:
        dialect = engine.dialect
        self.table = table
        self.keys = keys
        self.dbapi_error: type[Exception] = dialect.loaded_dbapi.Error
        columns = [table.c[key] for key in keys]
        self.processors = [_bind_processor(c, dialect) for c in columns]
        self._converted = tuple(
            (index, process) for index, process in enumerate(self.processors) if process
        )
        """Only the columns whose values need converting, so the others cost nothing."""
        defaults_left_out = any(
            c.default is not None for c in table.columns if c.key not in set(keys)
        )
        self.style: str | None = None
        if defaults_left_out:
            pass
        elif dialect.name == "sqlite" and dialect.paramstyle == "qmark":
            self.style = "sqlite"
        elif dialect.name == "postgresql" and dialect.paramstyle in ("format", "pyformat"):
            self.style = "postgresql"
        quote = dialect.identifier_preparer
        names = ", ".join(quote.format_column(c) for c in columns)
        self.head = f"INSERT INTO {quote.format_table(table)} ({names}) VALUES "  # noqa: S608 - quoted
        self.copy = (
            f"COPY {quote.format_table(table)} ({names}) FROM STDIN"
            if self.style == "postgresql" and dialect.driver == "psycopg"
            else None
        )
        marker = "?" if self.style == "sqlite" else "%s"
        self.one_row = f"({', '.join([marker] * len(columns))})"
        # SQLite before 3.32 allows 999 parameters per statement; stay under it everywhere.
        self.rows_per_statement = max(1, 999 // max(1, len(columns)))
        self.pg_rows_max = max(1, 65_535 // max(1, len(columns)))
        """PostgreSQL's limit on one statement's parameters, in rows."""
        self._sql: dict[int, str] = {}
        self._numbered: dict[int, bytes] = {}

    def execute(self, connection: Connection, rows: Sequence[Row]) -> None:
        if self.style is None:
            connection.execute(self.table.insert(), list(rows))
            return
        values = [self.values(row) for row in rows]
        if self.style == "postgresql":
            if self.copy is not None and len(values) > 1:
                self._copy(connection.connection.dbapi_connection, values, connection.dialect)
            else:
                connection.exec_driver_sql(self.head + self.one_row, values)
            return
        step = self.rows_per_statement
        for start in range(0, len(values), step):
            chunk = values[start : start + step]
            flat = tuple(value for row in chunk for value in row)
            connection.exec_driver_sql(self._statement(len(chunk)), flat)

    def alone(self, connection: Connection, rows: Sequence[Row]) -> bool:
        """Whether ``rows`` can go as one statement committing on its own: on PostgreSQL
        (psycopg) always, on the writer's autocommit connection; on SQLite when they fit in
        one statement and the driver leaves transactions to the caller (as Gardien's engine
        sets it up), so the statement is not wrapped in a transaction it would leave open."""
        if self.style == "postgresql":
            return self.copy is not None
        if self.style != "sqlite" or len(rows) > self.rows_per_statement:
            return False
        driver_connection: Any = connection.connection.dbapi_connection
        return driver_connection.isolation_level is None and not driver_connection.in_transaction

    def execute_alone(self, driver_connection: Any, rows: Sequence[Row], dialect: Dialect) -> None:
        """Insert ``rows`` in one statement on ``driver_connection``, outside any transaction:
        it is atomic and, once it returns, committed (on SQLite ``busy_timeout`` makes it wait
        for the write lock as ``BEGIN IMMEDIATE`` would)."""
        values = [self.values(row) for row in rows]
        if self.style == "postgresql" and len(values) > 1 and len(values) * len(self.keys) > 2000:
            self._copy(driver_connection, values, dialect)
            return
        params: tuple[object, ...]
        if self.style == "sqlite" or len(values) > 1:
            sql, params = self._statement(len(rows)), tuple(v for row in values for v in row)
        else:
            sql, params = self.head + self.one_row, values[0]
        try:
            driver_connection.execute(sql, params).close()
        except self.dbapi_error as exc:
            raise DBAPIError.instance(sql, None, exc, self.dbapi_error, dialect=dialect) from exc

    def _copy(
        self, driver_connection: Any, values: list[tuple[object, ...]], dialect: Dialect
    ) -> None:
        """``COPY`` on the driver's connection: in the batch's transaction (psycopg opens it
        with the first statement; SQLAlchemy's ``COMMIT`` ends it), or on its own."""
        sql = cast(str, self.copy)
        try:
            with driver_connection.cursor() as cursor, cursor.copy(sql) as copy:
                for row in values:
                    copy.write_row(row)
        except self.dbapi_error as exc:
            # The same exception SQLAlchemy would raise, so failures are told apart as for
            # any other statement (a row's constraint, or a database that is down).
            raise DBAPIError.instance(sql, None, exc, self.dbapi_error, dialect=dialect) from exc

    def values(self, row: Row) -> tuple[object, ...]:
        # Rows of one plan were grouped by their exact key order, so values line up.
        values = list(row.values())
        if len(values) != len(self.keys):
            raise ValueError(f"a row of {len(values)} values for {len(self.keys)} columns")
        for index, process in self._converted:
            values[index] = process(values[index])
        return tuple(values)

    def numbered_statement(self, count: int) -> bytes:
        """PostgreSQL: the ``INSERT`` of ``count`` rows with ``$n`` parameters, for libpq."""
        sql = self._numbered.get(count)
        if sql is None:
            width = len(self.keys)
            rows = (
                "(" + ", ".join(f"${row * width + column + 1}" for column in range(width)) + ")"
                for row in range(count)
            )
            sql = self._numbered[count] = (self.head + ", ".join(rows)).encode()
        return sql

    def _statement(self, count: int) -> str:
        sql = self._sql.get(count)
        if sql is None:
            sql = self._sql[count] = self.head + ", ".join([self.one_row] * count)
        return sql


def _bind_processor(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """The column's bind processor; for a ``UTCDateTime`` one with a fast path for values
    already in UTC, which stores exactly what the generic one would."""
    generic = column.type.dialect_impl(dialect).bind_processor(dialect)
    if not isinstance(column.type, UTCDateTime) or generic is None:
        return generic
    convert = generic
    if dialect.name == "sqlite":

        def to_text(value: Any) -> Any:
            # isoformat pads exactly like SQLAlchemy's SQLite format: "YYYY-MM-DD HH:MM:SS.ffffff"
            if value.__class__ is dt.datetime and value.tzinfo is dt.UTC:
                return value.isoformat(" ", "microseconds")[:26]
            return convert(value)

        return to_text

    def as_is(value: Any) -> Any:
        if value.__class__ is dt.datetime and value.tzinfo is dt.UTC:
            return value
        return convert(value)

    return as_is


def _error_code(exc: BaseException) -> str | None:
    """The driver's error code (``SQLITE_BUSY``, SQLSTATE ``23505``): it says what went wrong
    without the message, which may quote the row's values."""
    original = getattr(exc, "orig", None) or exc
    code = getattr(original, "sqlite_errorname", None) or getattr(original, "sqlstate", None)
    return str(code) if code else None


def _may_be_one_row(exc: BaseException) -> bool:
    """Whether retrying rows one by one could save some: not when the database is unreachable
    or locked (every row would fail the same way, each after its own wait)."""
    return not isinstance(exc, OperationalError | InterfaceError)


def _settle(batches: Sequence[_Batch]) -> None:
    """Release the waiters of ``batches`` with one wake-up per event loop, not one per row."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Batch]] = {}
    for batch in batches:
        by_loop.setdefault(batch.loop, []).append(batch)
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, settled)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more


def _resolve(batches: list[_Batch]) -> None:
    for batch in batches:
        batch.future.set_result(None)  # never cancelled: see ``_SharedFuture``


def _settle_one(
    future: asyncio.Future[None], batch: _Batch, index: int, _done: asyncio.Future[None]
) -> None:
    """Pass the outcome of row ``index`` of ``batch`` on to the row's own future."""
    if future.done():  # the waiter was cancelled; its row is committed all the same
        return
    error = batch.outcome(index)
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
