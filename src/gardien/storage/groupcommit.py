"""Group commit: many small inserts from request handlers, one transaction per batch.

Hot write paths (connection log, analytics hits, consent records) must not answer before their
row is committed (DESIGN.md principle 5), yet one transaction per request would make the
commit, not the request, the bottleneck. Handlers therefore hand their row to a ``GroupCommit``
and await it; one background thread takes everything queued (up to ``max_batch`` rows, after
waiting ``max_delay`` for more), inserts it in a single transaction, commits, and only then
releases every waiter of the batch. While a batch commits, the next one fills up, so batches
grow with load on their own.

One thread per process means one writer at a time, which is what SQLite allows anyway (the
engine's ``BEGIN IMMEDIATE`` takes the write lock up front, so a request handler writing at the
same moment queues behind the batch instead of failing). PostgreSQL is used the same way.

A failed batch is retried row by row when the failure may come from one row (a constraint, a
value the column refuses), so one bad row never fails its neighbours; a database that is down
or locked fails the whole batch at once. Waiters receive a ``GroupCommitError`` naming the
table and the error type only: a driver's message can quote the row, and rows hold personal
data.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.exc import InterfaceError, OperationalError

log = logging.getLogger("gardien.groupcommit")

Row = Mapping[str, object]


class GroupCommitError(Exception):
    """A row could not be committed; the message names the table and the error type only."""

    def __init__(self, table: str, error: BaseException) -> None:
        super().__init__(f"group commit into {table} failed: {type(error).__name__}")
        self.table = table
        self.error_type = type(error).__name__


class WriterStopped(RuntimeError):
    """The writer was stopped; rows submitted now would never be written."""


@dataclass(slots=True)
class _Pending:
    table: Table
    row: Row
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


_STOP = object()
"""Queued by ``stop``: everything submitted before it is written, nothing after is accepted."""


class GroupCommit:
    """A batching writer of rows, each acknowledged only once its transaction has committed.

    ``max_batch`` bounds one transaction (and the time a SQLite write lock is held);
    ``max_delay`` (seconds) is how long a batch that is not full may wait for company. Under a
    steady load batches fill while the previous one commits, so a delay of zero still groups;
    a small delay helps when commits are expensive (``synchronous=FULL``, a remote disk).
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
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._connection: Connection | None = None
        self._plans: dict[tuple[Table, tuple[str, ...]], _InsertPlan] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (idempotent; ``submit`` also starts it on first use, and
        ``start`` after ``stop`` starts afresh, as an app's lifespan may run twice)."""
        with self._lock:
            if self._stopped and not self.running:
                self._stopped = False
            self._start_locked()

    def _start_locked(self) -> None:
        if self._stopped:
            raise WriterStopped(f"{self.name} was stopped")
        if self._thread is None or not self._thread.is_alive():
            # A daemon: should the process exit without ``stop``, rows still queued were never
            # acknowledged, so nothing a client was told is lost.
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Write everything already submitted, then end the thread. Blocks: from the event
        loop, call it through ``asyncio.to_thread``."""
        with self._lock:
            if self._stopped:
                thread = self._thread
            else:
                self._stopped = True
                thread = self._thread
                if thread is not None:
                    self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the event loop's side ------------------------------------------------------------------
    def submit(self, table: Table, row: Row) -> asyncio.Future[None]:
        """Queue ``row`` for ``table``; the future resolves once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._start_locked()
            self._queue.put(_Pending(table, row, future, loop))
        return future

    async def write(self, table: Table, row: Row) -> None:
        """Insert ``row`` and return once it is durable; raises ``GroupCommitError``."""
        await self.submit(table, row)

    # -- the writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        try:
            while not stopping:
                batch, stopping = self._collect()
                if batch:
                    self._write(batch)
        finally:
            self._close_connection()

    def _collect(self) -> tuple[list[_Pending], bool]:
        """Block for one row, then take what else is queued; returns (batch, stop seen).

        The wait for company is one sleep, not a wake-up per arriving row: every wake-up
        costs a GIL hand-over with the event loop, which is what group commit saves.
        """
        first = self._queue.get()
        if first is _STOP:
            return [], True
        assert isinstance(first, _Pending)
        if self.max_delay > 0:
            time.sleep(self.max_delay)
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            assert isinstance(item, _Pending)
            batch.append(item)
        return batch, False

    def _write(self, batch: list[_Pending]) -> None:
        try:
            self._insert(batch)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to its waiters
            if len(batch) > 1 and _may_be_one_row(exc):
                for pending in batch:
                    try:
                        self._insert([pending])
                    except Exception as row_exc:  # noqa: BLE001 - see above
                        self._fail([pending], row_exc)
                    else:
                        _settle([pending], None)
            else:
                self._fail(batch, exc)
        else:
            _settle(batch, None)

    def _insert(self, batch: Sequence[_Pending]) -> None:
        groups: dict[tuple[Table, tuple[str, ...]], list[Row]] = {}
        for pending in batch:
            groups.setdefault((pending.table, tuple(pending.row)), []).append(pending.row)
        connection = self._connection or self.engine.connect()
        self._connection = connection
        try:
            with connection.begin():
                for (table, keys), rows in groups.items():
                    plan = self._plans.get((table, keys))
                    if plan is None:
                        plan = self._plans[(table, keys)] = _InsertPlan(table, keys, self.engine)
                    plan.execute(connection, rows)
        except BaseException:
            # Failures are rare; a fresh connection next time is cheaper than diagnosing
            # whether this one survived (a failed rollback, a server restart).
            self._close_connection()
            raise
        # COMMIT has returned: only now may anyone be told the rows are there.
        self.batches += 1
        self.rows += len(batch)

    def _fail(self, batch: Sequence[_Pending], exc: BaseException) -> None:
        log.error(
            "group commit failed",
            extra={
                "table": batch[0].table.name,
                "rows": len(batch),
                "error": type(exc).__name__,
                "code": _error_code(exc),
            },
        )
        _settle(batch, exc)

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - a broken connection is dropped either way
                connection.invalidate()


class _InsertPlan:
    """How rows of one table, with one set of keys, are inserted with the least work per row.

    The writer runs on the same interpreter as the event loop, so every microsecond it spends
    per row is taken from requests, and every call that releases the GIL costs a hand-over
    with the busy loop thread. Hence, where the driver allows it, the INSERT is rendered once
    and values go through the columns' own bind processors (the same ones SQLAlchemy applies:
    encryption, UTC conversion) straight to the driver: on SQLite one multi-row ``VALUES``
    statement per batch (one step into the library instead of one per row), on PostgreSQL
    one ``executemany`` (psycopg pipelines it into one round trip). Any other case, such as a
    column whose Python-side default the row leaves out, goes through ``Table.insert()``.
    """

    def __init__(self, table: Table, keys: tuple[str, ...], engine: Engine) -> None:
        dialect = engine.dialect
        self.table = table
        self.keys = keys
        columns = [table.c[key] for key in keys]
        self.processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
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
        self.head = (
            f"INSERT INTO {quote.format_table(table)} "  # noqa: S608 - quoted identifiers
            f"({', '.join(quote.format_column(c) for c in columns)}) VALUES "
        )
        marker = "?" if self.style == "sqlite" else "%s"
        self.one_row = f"({', '.join([marker] * len(columns))})"
        # SQLite before 3.32 allows 999 parameters per statement; stay under it everywhere.
        self.rows_per_statement = max(1, 999 // max(1, len(columns)))
        self._sql: dict[int, str] = {}

    def execute(self, connection: Connection, rows: Sequence[Row]) -> None:
        if self.style is None:
            connection.execute(self.table.insert(), list(rows))
            return
        values = [self._values(row) for row in rows]
        if self.style == "postgresql":
            connection.exec_driver_sql(self.head + self.one_row, values)
            return
        step = self.rows_per_statement
        for start in range(0, len(values), step):
            chunk = values[start : start + step]
            flat = tuple(value for row in chunk for value in row)
            connection.exec_driver_sql(self._statement(len(chunk)), flat)

    def _values(self, row: Row) -> tuple[object, ...]:
        # Rows of one plan were grouped by their exact key order, so values line up.
        return tuple(
            value if process is None else process(value)
            for process, value in zip(self.processors, row.values(), strict=True)
        )

    def _statement(self, count: int) -> str:
        sql = self._sql.get(count)
        if sql is None:
            sql = self._sql[count] = self.head + ", ".join([self.one_row] * count)
        return sql


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


def _settle(batch: Sequence[_Pending], exc: BaseException | None) -> None:
    """Resolve the waiters of ``batch`` with one wake-up per event loop, not one per row."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], Exception | None]]]
    by_loop = {}
    for pending in batch:
        error = None if exc is None else GroupCommitError(pending.table.name, exc)
        by_loop.setdefault(pending.loop, []).append((pending.future, error))
    for loop, outcomes in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, outcomes)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more


def _resolve(outcomes: list[tuple[asyncio.Future[None], Exception | None]]) -> None:
    for future, error in outcomes:
        if future.done():  # the waiter was cancelled; its row is committed all the same
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
