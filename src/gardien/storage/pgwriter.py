"""PostgreSQL: group-commit batches written by the event loop itself, without the writer thread.

On PostgreSQL a batch's cost is mostly waiting: for the server to write the rows and flush its
WAL to disk. The writer thread waits without the GIL, but each hand-over costs the loop twice
(the thread waking to take the GIL from a busy loop, then waking the loop to release the
waiters), and the thread's ``COPY`` takes two round trips. ``PgLoopWriter`` instead gives each
event loop a libpq connection of its own in non-blocking mode: at the end of the turn that
filled a batch, the loop sends it as one multi-row ``INSERT`` (values bound by psycopg's own
adapters, sent in binary where psycopg does), goes on serving requests, and the socket's
readiness tells it when the statement has committed. While one batch is in flight the next
fills up and is sent the moment the first returns: group commit, with no thread.

The statement runs in autocommit mode, so it is its own transaction: once the server has
answered, the rows are committed and flushed (``synchronous_commit`` is the server's, on by
default), which is when their waiters are released (DESIGN.md principle 5).

Anything out of the ordinary goes to the writer thread, which knows how to handle it: a batch
of several tables or key sets, a chained table, a writer a test holds (``before_commit``), a
loop whose connection is not open yet (opened in the background once the loop has handed the
thread ``CONNECT_AFTER`` batches, so a loop that writes now and then never opens one), and any
failure (a broken connection, a row the database refuses): the thread writes those rows again
and reports per row, as it always did. Nothing is acknowledged that the server did not commit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from typing import TYPE_CHECKING, Any

from psycopg import pq
from psycopg.adapt import PyFormat, Transformer

if TYPE_CHECKING:
    from gardien.storage.groupcommit import GroupCommit, _Batch, _InsertPlan

log = logging.getLogger("gardien.groupcommit")

_COMMAND_OK = pq.ExecStatus.COMMAND_OK
CONNECT_AFTER = 16
"""Batches a loop hands to the thread before it opens a connection of its own."""


class PgLoopWriter:
    """The loop-side writer of a ``GroupCommit`` on PostgreSQL (psycopg): one ``_Lane`` per
    event loop."""

    def __init__(self, writer: GroupCommit) -> None:
        self.writer = writer
        self.lanes: dict[asyncio.AbstractEventLoop, _Lane] = {}
        self.closed = False

    def take(self, batch: _Batch) -> bool:
        """Write ``batch`` from its loop (now, or right after the batch in flight); ``False``
        when it must go to the writer thread instead."""
        if self.closed:
            return False
        plan = self.writer.one_statement_plan(batch)
        if plan is None or plan.style != "postgresql":
            return False
        lane = self.lanes.get(batch.loop)
        if lane is None:
            lane = self.lanes[batch.loop] = _Lane(self, batch.loop)
        return lane.take(batch, plan)

    def close(self, timeout: float = 10.0) -> list[_Batch]:
        """Stop writing from the loops; returns the batches still waiting for a lane (they go
        to the writer thread) once the ones in flight have settled, or ``timeout`` passed."""
        self.closed = True
        left: list[_Batch] = []
        for lane in list(self.lanes.values()):
            left += lane.close(timeout)
        self.lanes.clear()
        return left


class _Lane:
    """One event loop's connection, the batch in flight on it, and the batches waiting."""

    def __init__(self, owner: PgLoopWriter, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        self.lock = threading.Lock()
        """Guards the lists below against ``close``, which runs in another thread."""
        self.pooled: Any = None
        self.pgconn: Any = None
        self.transformer: Any = None  # psycopg's Transformer (a class, not a type, to mypy)
        self.connecting = False
        self.thread_batches = 0
        """Batches sent to the thread while the loop had no connection of its own."""
        self.in_flight: list[_Batch] = []
        self.in_flight_rows = 0
        self.waiting: list[_Batch] = []
        self.waiting_plan: _InsertPlan | None = None
        self.waiting_rows = 0
        self.statuses: list[int] = []
        """The results of the statement in flight read so far."""
        self.idle = threading.Event()
        """Set once nothing is in flight, for ``close`` only: cleared by ``close`` while a
        statement is in flight, and set by the loop when that statement has settled (only
        then, so a busy loop does not pay for it on every batch)."""
        self.idle.set()
        self.closed = False

    # -- the loop's side ----------------------------------------------------------------------
    def take(self, batch: _Batch, plan: _InsertPlan) -> bool:
        if self.pgconn is None:
            # A loop that writes only now and then (a CLI command, a test client) keeps the
            # thread; one that serves traffic gets its connection after a few batches.
            self.thread_batches += 1
            if self.thread_batches >= CONNECT_AFTER:
                self._connect_later()
            return False
        rows = len(batch.items)
        with self.lock:
            if self.closed:
                return False
            if self.in_flight:
                # Group commit: it goes out as soon as the batch in flight has returned.
                if (self.waiting and plan is not self.waiting_plan) or (
                    self.waiting_rows + rows > min(self.owner.writer.max_batch, plan.pg_rows_max)
                ):
                    return False
                self.waiting.append(batch)
                self.waiting_plan = plan
                self.waiting_rows += rows
                batch.handed = True
                return True
            self._reserve([batch], rows)
        return self._send([batch], plan)

    def _reserve(self, batches: list[_Batch], rows: int) -> None:
        """Under ``lock``: ``batches`` are the ones in flight from now on."""
        self.in_flight, self.in_flight_rows = batches, rows
        for batch in batches:
            batch.handed = True

    def _send(self, batches: list[_Batch], plan: _InsertPlan) -> bool:
        """Send the reserved ``batches`` as one ``INSERT``; ``False`` (nothing sent, nothing
        in flight any more) if the connection cannot take it."""
        pgconn, transformer = self.pgconn, self.transformer
        try:
            if pgconn is None or transformer is None:
                raise ConnectionError("no connection")
            flat: list[object] = []
            for batch in batches:
                for _, row in batch.items:
                    flat += plan.values(row)
            dumped = transformer.dump_sequence(flat, _auto(len(flat)))
            pgconn.send_query_params(
                plan.numbered_statement(len(flat) // len(plan.keys)),
                dumped,
                transformer.types,
                transformer.formats,
            )
            pending = pgconn.flush()
        except Exception as exc:  # noqa: BLE001 - the thread writes the rows instead
            if pgconn is not None:
                self._broken(exc)
            with self.lock:
                self.in_flight, self.in_flight_rows = [], 0
            for batch in batches:
                batch.handed = False
            self._settled()
            return False
        if pending:
            self.loop.add_writer(pgconn.socket, self._flush)
        return True

    def _flush(self) -> None:
        pgconn = self.pgconn
        if pgconn is None:
            return
        try:
            if pgconn.flush() == 0:
                self.loop.remove_writer(pgconn.socket)
        except Exception as exc:  # noqa: BLE001 - see ``_readable``
            self._failed(exc)

    def _readable(self) -> None:
        """The socket has data: read it, and once the statement's results are all in (libpq
        returns no more), settle the batch in flight. Never blocks: ``get_result`` is called
        only while libpq says it would not wait."""
        pgconn = self.pgconn
        if pgconn is None:
            return
        statuses = self.statuses
        try:
            pgconn.consume_input()
            while not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:
                    break
                statuses.append(result.status)
                result.clear()
            else:
                return  # the rest is still on its way
        except Exception as exc:  # noqa: BLE001 - a broken connection
            self._failed(exc)
            return
        if not self.in_flight or not statuses:
            return  # a notice or a parameter change between statements
        self.statuses = []
        if statuses == [_COMMAND_OK]:
            self._committed()
        else:
            # A row the database refused, or worse: the thread writes them again, row by
            # row where it can, and reports each failure (by its type only).
            self._failed(None)

    def _committed(self) -> None:
        writer = self.owner.writer
        plan = self.waiting_plan
        with self.lock:
            batches, rows = self.in_flight, self.in_flight_rows
            self.in_flight, self.in_flight_rows = [], 0
            waiting: list[_Batch] = []
            if not self.closed and self.waiting:
                # ``close`` takes what waits once nothing is in flight.
                waiting, self.waiting = self.waiting, []
                self._reserve(waiting, self.waiting_rows)
                self.waiting_plan, self.waiting_rows = None, 0
        writer.batches += 1
        writer.rows += rows
        for batch in batches:
            batch.future.set_result(None)  # never cancelled: see ``_SharedFuture``
        if waiting and (plan is None or not self._send(waiting, plan)):
            self._to_thread(waiting)
        if not waiting:
            self._settled()

    def _failed(self, exc: BaseException | None) -> None:
        self.statuses = []
        if exc is not None:
            self._broken(exc)
        with self.lock:
            batches = self.in_flight + self.waiting
            self.in_flight, self.in_flight_rows = [], 0
            self.waiting, self.waiting_plan, self.waiting_rows = [], None, 0
        self._to_thread(batches)
        self._settled()

    def _settled(self) -> None:
        """Nothing is in flight any more: tell a waiting ``close``."""
        if self.closed:
            self.idle.set()

    def _to_thread(self, batches: list[_Batch]) -> None:
        writer = self.owner.writer
        for batch in batches:
            batch.handed = False
            writer._hand_over(batch)

    def _broken(self, exc: BaseException) -> None:
        log.warning("loop writer connection lost", extra={"error": type(exc).__name__})
        self._disconnect()

    # -- the connection -----------------------------------------------------------------------
    def _connect_later(self) -> None:
        if self.connecting or self.closed:
            return
        self.connecting = True
        future = self.loop.run_in_executor(None, self._open)
        future.add_done_callback(self._opened)

    def _open(self) -> Any:
        pooled = self.owner.writer.engine.raw_connection()
        pooled.detach()  # autocommit and non-blocking must never reach a pooled session
        driver_connection: Any = pooled.dbapi_connection
        driver_connection.autocommit = True
        return pooled

    def _opened(self, future: asyncio.Future[Any]) -> None:
        self.connecting = False
        if future.cancelled():
            return
        if (exc := future.exception()) is not None:
            log.warning("loop writer cannot connect", extra={"error": type(exc).__name__})
            return
        pooled = future.result()
        if self.closed or self.owner.closed:
            pooled.close()
            return
        driver_connection: Any = pooled.dbapi_connection
        pgconn = driver_connection.pgconn
        pgconn.nonblocking = 1
        self.pooled = pooled
        self.transformer = Transformer(driver_connection)
        self.pgconn = pgconn
        self.loop.add_reader(pgconn.socket, self._readable)

    def _disconnect(self) -> None:
        pgconn, pooled = self.pgconn, self.pooled
        self.pgconn = self.pooled = self.transformer = None
        if pgconn is not None and not self.loop.is_closed():
            try:
                self.loop.remove_reader(pgconn.socket)
                self.loop.remove_writer(pgconn.socket)
            except Exception as exc:  # noqa: BLE001 - the socket may be gone already
                log.debug("loop writer socket gone", extra={"error": type(exc).__name__})
        if pooled is not None:
            try:
                pooled.close()  # detached: closes the driver's connection
            except Exception as exc:  # noqa: BLE001 - a broken connection is dropped either way
                log.debug("loop writer connection dropped", extra={"error": type(exc).__name__})
                pooled.invalidate()

    def close(self, timeout: float) -> list[_Batch]:
        """From any thread: no new batch is taken; once the one in flight has settled (or
        ``timeout`` passed), returns the batches that were waiting, for the thread."""
        on_loop = _running_loop() is self.loop
        with self.lock:
            self.closed = True
            if self.in_flight:
                self.idle.clear()  # set by the loop once the statement has settled
        if not on_loop and not self.loop.is_closed():
            self.idle.wait(timeout)
        with self.lock:
            left = self.waiting
            self.waiting, self.waiting_plan, self.waiting_rows = [], None, 0
        for batch in left:
            batch.handed = False
        if self.loop.is_closed() or on_loop:
            self._disconnect()
        else:
            try:
                self.loop.call_soon_threadsafe(self._disconnect)
            except RuntimeError:  # closed in the meantime
                self._disconnect()
        return left


@functools.lru_cache(maxsize=256)
def _auto(count: int) -> tuple[PyFormat, ...]:
    """psycopg chooses each value's format (binary where it can)."""
    return (PyFormat.AUTO,) * count


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
