"""The SQL of a submission's round trip, on the caller's connection and transaction.

A submission is stored many times a second and read rarely, so its statements are rendered
once per database and run as the driver's own SQL: the values go through the columns' own
bind processors (the ones SQLAlchemy applies: encryption of personal fields, UTC timestamps),
then straight to the driver. That halves the CPU of the ORM-free Core statements it replaces,
and the database's write lock is held that much less.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.engine import Dialect

from gardien.forms.models import FormSubmission, OutboxMessage
from gardien.policy.models import PolicyVersion

submissions: Table = FormSubmission.__table__  # type: ignore[assignment]
outbox: Table = OutboxMessage.__table__  # type: ignore[assignment]

SUBMISSION_KEYS = (
    "public_id",
    "form_id",
    "activity",
    "received_at",
    "delete_after",
    "language",
    "fields",
    "email_index",
    "phone_index",
    "legal_basis",
    "consent_text_hash",
    "policy_version",
    "duplicate_key",
    "status",
    "restricted",
)
"""The columns a new submission fills (the others start empty)."""
OUTBOX_KEYS = (
    "submission_id",
    "activity",
    "kind",
    "message_id",
    "recipient",
    "created_at",
    "status",
    "attempts",
    "next_attempt_at",
)
"""The columns a newly queued message fills."""

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Statement:
    """SQL rendered for one dialect and how each parameter is converted for it."""

    sql: str
    processors: tuple[Processor, ...]

    def parameters(self, values: Sequence[object]) -> tuple[object, ...]:
        return tuple(
            value if process is None else process(value)
            for process, value in zip(self.processors, values, strict=True)
        )


def _processors(dialect: Dialect, table: Table, keys: Sequence[str]) -> tuple[Processor, ...]:
    return tuple(table.c[key].type.dialect_impl(dialect).bind_processor(dialect) for key in keys)


@dataclass(frozen=True)
class _Statements:
    received: _Statement
    insert_submission: _Statement
    insert_outbox: _Statement


@cache
def _statements(dialect: Dialect) -> _Statements:
    quote = dialect.identifier_preparer
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    if dialect.paramstyle not in ("qmark", "format", "pyformat"):
        raise RuntimeError(f"unsupported driver parameter style {dialect.paramstyle}")

    def insert(table: Table, keys: Sequence[str], returning: str = "") -> _Statement:
        columns = ", ".join(quote.format_column(table.c[key]) for key in keys)
        sql = (
            f"INSERT INTO {quote.format_table(table)} ({columns}) "  # noqa: S608 - quoted names
            f"VALUES ({', '.join([marker] * len(keys))}){returning}"
        )
        return _Statement(sql, _processors(dialect, table, keys))

    table = quote.format_table(submissions)
    key = quote.format_column(submissions.c.duplicate_key)
    received_at = quote.format_column(submissions.c.received_at)
    received = _Statement(
        f"SELECT EXISTS (SELECT 1 FROM {table} "  # noqa: S608 - quoted names
        f"WHERE {key} = {marker} AND {received_at} >= {marker})",
        _processors(dialect, submissions, ("duplicate_key", "received_at")),
    )
    identity = quote.format_column(submissions.c.id)
    return _Statements(
        received,
        insert(submissions, SUBMISSION_KEYS, f" RETURNING {identity}"),
        insert(outbox, OUTBOX_KEYS),
    )


def already_received(connection: Connection, duplicate_key: str, since: dt.datetime) -> bool:
    """Whether a submission with this duplicate key was received since ``since``."""
    statement = _statements(connection.dialect).received
    found = connection.exec_driver_sql(
        statement.sql, statement.parameters((duplicate_key, since))
    ).scalar()
    return bool(found)


def insert_submission(connection: Connection, row: Mapping[str, object]) -> int:
    """Insert one ``form_submission`` row (every key of ``SUBMISSION_KEYS``); returns its id."""
    statement = _statements(connection.dialect).insert_submission
    values = statement.parameters([row[key] for key in SUBMISSION_KEYS])
    identity = connection.exec_driver_sql(statement.sql, values).scalar()
    assert isinstance(identity, int)
    return identity


def insert_outbox(connection: Connection, rows: Sequence[Mapping[str, object]]) -> None:
    """Insert ``outbox_message`` rows (every key of ``OUTBOX_KEYS``)."""
    if not rows:
        return
    statement = _statements(connection.dialect).insert_outbox
    connection.exec_driver_sql(
        statement.sql,
        [statement.parameters([row[key] for key in OUTBOX_KEYS]) for row in rows],
    )


_LATEST_POLICY = select(PolicyVersion.number).order_by(PolicyVersion.number.desc()).limit(1)


def latest_policy_version(connection: Connection) -> int | None:
    number = connection.scalar(_LATEST_POLICY)
    return int(number) if number is not None else None
