"""Job leases in the database: one instance at a time runs a named job.

A lease row per job name; taking it is a single conditional UPDATE (free, expired, or already
ours), which is atomic on SQLite and PostgreSQL alike, so several Gardien processes sharing a
database never run the same job twice. A lease expires on its own if its holder dies.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gardien.storage.clock import Clock
from gardien.storage.models import JobLock


def holder_id() -> str:
    """Identifies this process (host, pid and a random part) as a lease holder."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LockBusy(Exception):
    """Another instance holds the lease."""


def acquire(
    sessions: sessionmaker[Session], name: str, holder: str, ttl: dt.timedelta, clock: Clock
) -> bool:
    """Take or renew the lease on ``name``; commits on its own so others see it at once."""
    now = clock.now()
    with sessions() as session:
        try:
            session.add(JobLock(name=name, holder=holder, acquired_at=now, expires_at=now + ttl))
            session.commit()
            return True
        except IntegrityError:
            session.rollback()
        result = session.execute(
            update(JobLock)
            .where(JobLock.name == name)
            .where((JobLock.expires_at < now) | (JobLock.holder == holder))
            .values(holder=holder, acquired_at=now, expires_at=now + ttl)
        )
        session.commit()
        return bool(getattr(result, "rowcount", 0) == 1)


def release(sessions: sessionmaker[Session], name: str, holder: str, clock: Clock) -> None:
    with sessions() as session:
        session.execute(
            update(JobLock)
            .where(JobLock.name == name, JobLock.holder == holder)
            .values(expires_at=clock.now() - dt.timedelta(seconds=1))
        )
        session.commit()


@contextmanager
def job_lease(
    sessions: sessionmaker[Session],
    name: str,
    clock: Clock,
    ttl: dt.timedelta = dt.timedelta(hours=1),
) -> Iterator[str]:
    """Hold the lease on ``name`` for the block, or raise ``LockBusy`` at once."""
    holder = holder_id()
    if not acquire(sessions, name, holder, ttl, clock):
        raise LockBusy(name)
    try:
        yield holder
    finally:
        release(sessions, name, holder, clock)
