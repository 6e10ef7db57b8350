"""The SQL of a submission's round trip, in SQLAlchemy Core on the caller's connection.

A submission is stored many times a second and read rarely: Core statements (compiled once,
cached by SQLAlchemy) with the tables' own column types, which encrypt and convert to UTC as
the ORM would, cost a fraction of an ORM unit of work for the same rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, Table, bindparam, exists, insert, select

from gardien.forms.models import FormSubmission, OutboxMessage
from gardien.policy.models import PolicyVersion

submissions: Table = FormSubmission.__table__  # type: ignore[assignment]
outbox: Table = OutboxMessage.__table__  # type: ignore[assignment]


# Built once: a statement constructed per call pays for its cache key at every execution.
_RECEIVED = select(
    exists().where(
        submissions.c.duplicate_key == bindparam("duplicate_key"),
        submissions.c.received_at >= bindparam("since"),
    )
)
_INSERT_SUBMISSION = insert(submissions)
_INSERT_OUTBOX = insert(outbox)
_LATEST_POLICY = select(PolicyVersion.number).order_by(PolicyVersion.number.desc()).limit(1)


def already_received(connection: Connection, duplicate_key: str, since: dt.datetime) -> bool:
    """Whether a submission with this duplicate key was received since ``since``."""
    found = connection.scalar(_RECEIVED, {"duplicate_key": duplicate_key, "since": since})
    return bool(found)


def insert_submission(connection: Connection, row: Mapping[str, object]) -> int:
    """Insert one ``form_submission`` row; returns its id."""
    key = connection.execute(_INSERT_SUBMISSION, dict(row)).inserted_primary_key
    assert key is not None
    return int(key[0])


def insert_outbox(connection: Connection, rows: Sequence[Mapping[str, object]]) -> None:
    if rows:
        connection.execute(_INSERT_OUTBOX, [dict(row) for row in rows])


def latest_policy_version(connection: Connection) -> int | None:
    number = connection.scalar(_LATEST_POLICY)
    return int(number) if number is not None else None
