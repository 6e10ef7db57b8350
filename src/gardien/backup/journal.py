"""The erasure journal: what a restore must not bring back, kept outside the database.

A backup taken before an erasure still holds the erased person; restoring it would bring them
back. Every erasure and every restriction (and its lifting) is therefore also appended to a
file in ``DATA_DIR`` (``erasure-journal.jsonl``, one JSON object per line, fsynced before the
answer). The file holds blind-index values only (keyed hashes, one per column that indexes the
identifier and per index key the installation knows), never an identifier in clear or
encrypted. A restore does not replace it; after loading a snapshot, ``backup.replay`` finds the
people the entries name in the restored rows (by those indexes) and erases or restricts them
again. The journal is never truncated by Gardien: it has to outlive the oldest backup, and its
lines are small.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gardien.security.crypto import NORMALISERS, BlindIndex, ring
from gardien.storage.subjects import SubjectIdentity

FILE_NAME = "erasure-journal.jsonl"

ERASURE = "erasure"
RESTRICTION = "restriction"
RESTRICTION_LIFTED = "restriction_lifted"
KINDS = (ERASURE, RESTRICTION, RESTRICTION_LIFTED)

IDENTIFIERS = ("email", "phone", "consent_id", "visitor_id", "ip_address")

_COLUMN_KIND = {
    "email_index": "email",
    "phone_index": "phone",
    "consent_id_index": "consent_id",
    "visitor_id_index": "visitor_id",
    "user_id_index": "visitor_id",
    "ip_index": "ip_address",
}
"""Which identifier a blind-index column indexes, by the column's name."""


@dataclass(frozen=True, slots=True)
class IndexedColumn:
    table: str
    column: str
    context: str
    source: str
    normaliser: str
    kind: str
    clear: bool = False
    """The identifier is stored in clear in ``column`` (``source`` is the column itself) and
    has no blind index in the database: the journal indexes it under ``context``, a context of
    its own, and the replay finds it by indexing the column's distinct values."""


CLEAR_COLUMNS = (("analytics_hit", "visitor_id", "visitor_id"),)
"""``(table, column, kind)`` of the identifiers kept in clear: the cookieless visitor id is a
keyed hash under a salt that lives one day (analytics/models.py), pseudonymous, and the hits
find it by equality. Its journal index is ``journal.<table>.<column>``, over the lower-case
value as the analytics provider matches it."""


def normalise(column: IndexedColumn, value: str) -> str:
    """The value of ``column``'s kind as its index is computed (raises ``ValueError``)."""
    if column.clear:
        return NORMALISERS["text"](value).lower()
    return NORMALISERS[column.normaliser](value)


def indexed_columns() -> list[IndexedColumn]:
    """Every column that finds a person by an identifier: the schema's blind indexes, and the
    identifiers kept in clear (``CLEAR_COLUMNS``)."""
    from gardien.models import metadata  # every model: imported late, models import services

    found = []
    for table in metadata.sorted_tables:
        for column in table.columns:
            kind = _COLUMN_KIND.get(column.name)
            if isinstance(column.type, BlindIndex) and kind is not None:
                found.append(
                    IndexedColumn(
                        table.name,
                        column.name,
                        column.type.context,
                        column.type.source,
                        column.type.normaliser,
                        kind,
                    )
                )
    for table_name, column_name, kind in CLEAR_COLUMNS:
        context = f"journal.{table_name}.{column_name}"
        found.append(
            IndexedColumn(table_name, column_name, context, column_name, "text", kind, clear=True)
        )
    return found


@dataclass(frozen=True, slots=True)
class JournalEntry:
    seq: int
    at: dt.datetime
    kind: str
    case: str | None
    indexes: dict[str, list[str]]
    """Blind-index values by column context (``table.column``), one per index key."""
    identified_by: list[str]
    period: tuple[dt.datetime, dt.datetime] | None
    reason: str | None = None
    """For a restriction: ``restriction`` or ``objection`` (storage/restriction.py)."""
    activity: str | None = None
    """For an upheld objection: the register activity it stops."""
    restriction_keys: list[tuple[str, str]] | None = None
    """For a restriction: the record's own ``(kind, blind index)`` keys, re-created as they
    were even when the restored data hold nothing else of the person."""

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "case": self.case,
            "identified_by": self.identified_by,
            "period": [p.isoformat() for p in self.period] if self.period else None,
            "indexes": self.indexes,
            "reason": self.reason,
            "activity": self.activity,
            "restriction_keys": [list(k) for k in self.restriction_keys or []],
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> JournalEntry:
        period = payload.get("period")
        return cls(
            seq=int(payload["seq"]),
            at=dt.datetime.fromisoformat(payload["at"]),
            kind=str(payload["kind"]),
            case=payload.get("case"),
            indexes={str(k): [str(v) for v in vs] for k, vs in payload["indexes"].items()},
            identified_by=[str(n) for n in payload.get("identified_by", [])],
            period=(
                (dt.datetime.fromisoformat(period[0]), dt.datetime.fromisoformat(period[1]))
                if period
                else None
            ),
            reason=payload.get("reason"),
            activity=payload.get("activity"),
            restriction_keys=[(str(k), str(v)) for k, v in payload.get("restriction_keys", [])],
        )


class JournalError(Exception):
    """The journal cannot be written or read; the message names the file, never a value."""


class ErasureJournal:
    """Appends to and reads one journal file; safe across threads and processes (O_APPEND
    writes of one line each, fsynced; sequence numbers are the line count at append time,
    read under an exclusive ``flock``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def entries(self) -> Iterator[JournalEntry]:
        try:
            handle = self.path.open("r", encoding="utf-8")
        except FileNotFoundError:
            return
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.endswith("\n"):
                    break  # a line cut by a crash mid-write: never acknowledged
                try:
                    yield JournalEntry.from_json(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    raise JournalError(f"{self.path}:{number}: not a journal entry") from exc

    def last_seq(self) -> int:
        last = 0
        for entry in self.entries():
            last = entry.seq
        return last

    def append(
        self,
        kind: str,
        subject: SubjectIdentity,
        at: dt.datetime,
        case: str | None = None,
        *,
        reason: str | None = None,
        activity: str | None = None,
    ) -> JournalEntry:
        import fcntl

        from gardien.storage.restriction import keys_of

        if kind not in KINDS:
            raise ValueError(f"journal entry kind must be one of {', '.join(KINDS)}")
        indexes = subject_indexes(subject)
        names = [n for n in IDENTIFIERS if getattr(subject, n)]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                entry = JournalEntry(
                    self.last_seq() + 1,
                    at,
                    kind,
                    case,
                    indexes,
                    names,
                    subject.period,
                    reason,
                    activity,
                    keys_of(subject) if kind != ERASURE else None,
                )
                line = json.dumps(entry.to_json(), separators=(",", ":")) + "\n"
                os.write(descriptor, line.encode())
                os.fsync(descriptor)
            except OSError as exc:
                raise JournalError(f"{self.path}: cannot append to the erasure journal") from exc
            finally:
                os.close(descriptor)
        _fsync_directory(self.path.parent)
        return entry


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def subject_indexes(subject: SubjectIdentity) -> dict[str, list[str]]:
    """The blind indexes of the subject's identifiers in every column that indexes them, under
    every index key the installation has (a restored snapshot may predate a rotation)."""
    keys = ring()
    indexes: dict[str, list[str]] = {}
    for column in indexed_columns():
        value = getattr(subject, column.kind)
        if not value:
            continue
        try:
            normal = normalise(column, value)
        except ValueError:
            continue  # e.g. an e-mail given as an IP: this column cannot hold it
        values = [keys.index(normal, column.context, key_id) for key_id in sorted(keys.index_keys)]
        indexes.setdefault(column.context, []).extend(values)
    return indexes


_journal: ErasureJournal | None = None


def install(journal: ErasureJournal | None) -> None:
    """Make ``journal`` the process's erasure journal (done by ``runtime.start``)."""
    global _journal
    _journal = journal


def current() -> ErasureJournal | None:
    return _journal


def note(
    kind: str,
    subject: SubjectIdentity,
    at: dt.datetime,
    case: str | None = None,
    *,
    reason: str | None = None,
    activity: str | None = None,
) -> None:
    """Append to the installed journal; without one (a unit test building services by hand)
    nothing is written."""
    if _journal is not None:
        _journal.append(kind, subject, at, case, reason=reason, activity=activity)
