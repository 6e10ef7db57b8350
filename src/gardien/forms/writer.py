"""Storing accepted submissions: several in one transaction when they arrive together.

Each request hands its accepted submission to the process's ``SubmissionWriter`` from a worker
thread (never the event loop: the transaction may wait for SQLite's write lock) and returns
once it is committed (DESIGN principle 5). Whoever holds the writer's lock writes every
submission queued so far in one transaction and marks each one done, or refused; a thread
whose submission was written meanwhile finds it done and returns at once. Alone, a submission
gets a transaction of its own; in a burst, a few dozen share one commit: one write of the
indexes' pages instead of one each, and on SQLite one turn at the single writer's lock instead
of one per submission, each paid for in sleeps of SQLite's busy handler.

The duplicate check of each submission runs in the transaction that stores it, after the
submissions stored before it in the same transaction, so two identical submissions sent
together are still told apart. A batch that fails for another reason is retried one
submission at a time, so that one bad submission never fails its neighbours.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from gardien.errors import Conflict
from gardien.forms import repository, service
from gardien.security.connection_log import connection_log
from gardien.storage.database import BUSY_TIMEOUT_MS, is_sqlite_busy
from gardien.storage.groupcommit import insert_rows

MAX_BATCH = 64
"""Submissions per transaction at most: it bounds how long SQLite's write lock is held."""


@dataclass(eq=False)
class _Queued:
    accepted: service.Accepted
    now: dt.datetime
    log_row: dict[str, Any] | None = None
    """The request's connection-log row, committed in the same transaction when stored."""
    done: bool = False
    error: BaseException | None = None


class SubmissionWriter:
    def __init__(self, engine: Engine, base_url: str) -> None:
        self.engine = engine
        self.base_url = base_url
        self.policy_version: int | None = None
        """The policy version this process shows: the latest at its first submission. It
        changes only with the register, which a process reads once, at start-up (where it
        publishes)."""
        self._turn = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Queued] = []
        self._inline: bool | None = None
        """Whether ``store_now`` may write on the caller's thread (known at first use)."""

    def store(
        self,
        accepted: service.Accepted,
        now: dt.datetime,
        log_row: dict[str, Any] | None = None,
    ) -> None:
        """Store ``accepted``, its outbox rows and (if given) the request's connection-log row;
        returns once committed. Blocks: call it from a worker thread. Raises ``Conflict`` for
        a submission already received (its log row is then not written here). One transaction
        instead of two on SQLite means one writer fewer waiting for the write lock."""
        item = _Queued(accepted, now, log_row)
        with self._queue_lock:
            self._queue.append(item)
        with self._turn:
            while not item.done:
                with self._queue_lock:
                    batch = self._queue[:MAX_BATCH]
                    del self._queue[:MAX_BATCH]
                self._write(batch)
        if item.error is not None:
            raise item.error

    def store_now(
        self,
        accepted: service.Accepted,
        now: dt.datetime,
        log_row: dict[str, Any] | None = None,
    ) -> bool:
        """SQLite: store ``accepted`` as ``store`` does but at once, on the calling thread (the
        event loop), if nothing else is being written; ``False`` when it must go through
        ``store`` in a worker thread instead.

        A submission alone is the common case, and for it the hand-over to a worker thread
        and back costs about as much as the transaction. The loop must never wait for the
        write lock, though: this transaction does not wait for it (``busy_timeout=0``) and a
        locked database sends the submission to ``store``. Neither does it wait for the disk:
        with ``DURABILITY=full`` every submission goes through ``store``."""
        if not self._inline_allowed() or self._queue:
            return False
        if not self._turn.acquire(blocking=False):
            return False
        try:
            item = _Queued(accepted, now, log_row)
            try:
                self._transaction([item], wait=False)
            except OperationalError as exc:
                if is_sqlite_busy(exc):
                    return False
                raise
        finally:
            self._turn.release()
        if item.error is not None:
            raise item.error
        return True

    def _inline_allowed(self) -> bool:
        if self._inline is None:
            allowed = False
            if self.engine.dialect.name == "sqlite":
                with self.engine.connect() as connection:
                    synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar()
                allowed = int(synchronous or 0) <= 1  # OFF or NORMAL: no flush at COMMIT
            self._inline = allowed
        return self._inline

    def _write(self, batch: list[_Queued]) -> None:
        try:
            self._transaction(batch)
        except Exception as exc:  # noqa: BLE001 - each submission gets its own outcome
            if len(batch) > 1:
                for item in batch:
                    self._write([item])
                return
            batch[0].error = exc
        except BaseException as exc:
            for item in batch:
                item.error = exc
            raise
        finally:
            for item in batch:
                item.done = True

    def _transaction(self, batch: list[_Queued], *, wait: bool = True) -> None:
        for item in batch:
            item.error = None
        with self.engine.connect() as connection:
            if wait:
                with connection.begin():
                    self._record(connection, batch)
                return
            # On the driver's connection: through SQLAlchemy, the pragma would begin the
            # transaction (and wait for the lock) before the timeout is changed.
            driver_connection: Any = connection.connection.dbapi_connection
            driver_connection.execute("PRAGMA busy_timeout=0").close()
            try:
                with connection.begin():  # BEGIN IMMEDIATE: SQLITE_BUSY at once if locked
                    self._record(connection, batch)
            finally:
                driver_connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}").close()

    def _record(self, connection: Connection, batch: list[_Queued]) -> None:
        policy_version = self._policy_version(connection)
        for item in batch:
            try:
                service.record(
                    connection,
                    item.accepted,
                    policy_version=policy_version,
                    now=item.now,
                    base_url=self.base_url,
                )
            except Conflict as refused:  # raised before anything of it was written
                item.error = refused
        logged = [item.log_row for item in batch if item.error is None and item.log_row]
        if logged:
            insert_rows(connection, connection_log, logged)

    def _policy_version(self, connection: Connection) -> int | None:
        if self.policy_version is None:
            self.policy_version = repository.latest_policy_version(connection)
        return self.policy_version
