"""The erasure journal: what a restore must not bring back, kept outside the database.

A backup taken before an erasure still holds the erased person; restoring it would bring them
back. Every erasure, every restriction (and its lifting) and every withdrawal of consent is
therefore also appended to a file in ``DATA_DIR`` (``erasure-journal.jsonl``, one JSON object
per line, fsynced before the answer). The file holds blind-index values only (keyed hashes,
one per column that indexes the identifier and per index key the installation knows), never an
identifier in clear or encrypted. A restore does not replace it; after loading a snapshot,
``backup.replay`` finds the people the entries name in the restored rows (by those indexes)
and erases, restricts or withdraws again. The journal is never truncated by Gardien: it has
to outlive the oldest backup, and its lines are small.

Ordering. An entry is written *before* the transaction that acts (an intent, ``pending``): an
entry written after the commit could be lost by a crash between the two, and the person would
come back. Once the transaction ends, a mark names the entry's fate: ``done`` after the commit
(with the stores the erasure's receipt says it left alone: a legal hold, a store that failed,
the case kept as proof), ``aborted`` after a rollback (``settle_on_end``, hooked by every
caller through ``note(..., session=)``). A crash between the two leaves the entry pending;
it is then settled by the database's own record of the action (the case's timeline and
erasure receipt, ``backup.settle``): by a restore against the database it replaces, before
replacing it, and at replay against the restored one. Only what no database can settle is
replayed on the cautious side (see ``backup.replay``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from gardien.security.crypto import NORMALISERS, BlindIndex, ring
from gardien.storage.subjects import SubjectIdentity

logger = logging.getLogger(__name__)

FILE_NAME = "erasure-journal.jsonl"

ERASURE = "erasure"
RESTRICTION = "restriction"
RESTRICTION_LIFTED = "restriction_lifted"
WITHDRAWAL = "withdrawal"
"""Consent withdrawn through the rights portal (Art. 7(3))."""
KINDS = (ERASURE, RESTRICTION, RESTRICTION_LIFTED, WITHDRAWAL)

PENDING = "pending"
DONE = "done"
ABORTED = "aborted"
MARKS = (DONE, ABORTED)
VERSION = 2
"""Entries of version 2 are intents settled by a later mark; older ones (no ``v``) were
written by a Gardien that had no marks, and are taken as done, as it did."""

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
    block_keys: list[str] | None = None
    """For a withdrawal: the blind indexes (every index key) of the audience-measurement block
    of each consent id, re-created even when the restored data hold nothing of the person."""
    state: str = DONE
    """``pending``, ``done`` or ``aborted``: from the marks that follow the entry."""
    skip: tuple[str, ...] = ()
    """For a done erasure: the stores it left alone (legal hold, failure), left alone again."""
    settled_by: str | None = None
    """Who wrote the mark: ``commit`` (the transaction's end) or ``database`` (settled later
    by the database's record)."""

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
            "block_keys": self.block_keys or [],
            "v": VERSION,
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
            block_keys=[str(v) for v in payload.get("block_keys") or []],
            state=PENDING if payload.get("v", 1) >= VERSION else DONE,
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
        self._tail: tuple[int, int, int] = (-1, 0, 0)
        """(inode, bytes read, last sequence number in them): an append reads only the lines
        written since the last one, not the whole journal."""

    def entries(self) -> Iterator[JournalEntry]:
        """The entries in order, each with the state its marks give it (``done`` wins: it is
        written only after a commit)."""
        found: list[JournalEntry] = []
        marks: dict[int, tuple[str, tuple[str, ...], str]] = {}
        try:
            handle = self.path.open("r", encoding="utf-8")
        except FileNotFoundError:
            return
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.endswith("\n"):
                    break  # a line cut by a crash mid-write: never acknowledged
                try:
                    payload = json.loads(line)
                    if "mark" in payload:
                        of, mark = int(payload["of"]), str(payload["mark"])
                        if mark in MARKS and marks.get(of, ("",))[0] != DONE:
                            skip = tuple(str(s) for s in payload.get("skip") or [])
                            marks[of] = (mark, skip, str(payload.get("by", "commit")))
                        continue
                    found.append(JournalEntry.from_json(payload))
                except (ValueError, KeyError, TypeError) as exc:
                    raise JournalError(f"{self.path}:{number}: not a journal entry") from exc
        for entry in found:
            settled = marks.get(entry.seq)
            if settled is not None and entry.state == PENDING:
                entry = replace(entry, state=settled[0], skip=settled[1], settled_by=settled[2])
            yield entry

    def last_seq(self) -> int:
        last = 0
        for entry in self.entries():
            last = entry.seq
        return last

    def _last_seq_locked(self, descriptor: int) -> int:
        """Under the append lock: the last sequence number, reading only the lines added since
        this object last looked (all of them if the file was replaced, as a restore does)."""
        status = os.fstat(descriptor)
        inode, offset, seq = self._tail
        if inode != status.st_ino or status.st_size < offset:
            inode, offset, seq = status.st_ino, 0, 0
        if status.st_size > offset:
            with self.path.open("rb") as handle:
                handle.seek(offset)
                added = handle.read(status.st_size - offset)
            for line in added.splitlines(keepends=True):
                if not line.endswith(b"\n"):
                    break  # a line cut by a crash mid-write: never acknowledged
                try:
                    payload = json.loads(line)
                    if "mark" not in payload:
                        seq = int(payload["seq"])
                except (ValueError, KeyError, TypeError):
                    return self.last_seq()  # names the bad line
                offset += len(line)
        self._tail = (inode, offset, seq)
        return seq

    def mark(self, seq: int, state: str, skip: list[str] | None = None, by: str = "commit") -> None:
        """Settle entry ``seq``: ``done`` (with the stores an erasure left alone) or
        ``aborted``."""
        if state not in MARKS:
            raise ValueError(f"a journal mark must be one of {', '.join(MARKS)}")
        payload = {"mark": state, "of": seq, "skip": sorted(skip or []), "by": by}
        self._write(lambda _last: json.dumps(payload, separators=(",", ":")) + "\n")

    def _write(self, line_of: Callable[[int], str]) -> None:
        """Append one line, built under the lock from the last sequence number, fsynced."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                os.write(descriptor, line_of(self._last_seq_locked(descriptor)).encode())
                os.fsync(descriptor)
            except OSError as exc:
                raise JournalError(f"{self.path}: cannot append to the erasure journal") from exc
            finally:
                os.close(descriptor)
        _fsync_directory(self.path.parent)

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
        from gardien.storage.restriction import keys_of

        if kind not in KINDS:
            raise ValueError(f"journal entry kind must be one of {', '.join(KINDS)}")
        indexes = subject_indexes(subject)
        names = [n for n in IDENTIFIERS if getattr(subject, n)]
        restriction_keys = keys_of(subject) if kind in (RESTRICTION, RESTRICTION_LIFTED) else None
        blocks = withdrawal_block_indexes(subject) if kind == WITHDRAWAL else None
        written: list[JournalEntry] = []

        def line(last: int) -> str:
            entry = JournalEntry(
                last + 1,
                at,
                kind,
                case,
                indexes,
                names,
                subject.period,
                reason,
                activity,
                restriction_keys,
                blocks,
                state=PENDING,
            )
            written.append(entry)
            return json.dumps(entry.to_json(), separators=(",", ":")) + "\n"

        self._write(line)
        return written[0]


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


def withdrawal_block_indexes(subject: SubjectIdentity) -> list[str]:
    """The blind indexes, under every index key, of the audience-measurement blocks a
    withdrawal of the subject's consent records (``consent:<id>``)."""
    from gardien.analytics.blocks import block_keys
    from gardien.analytics.models import BLOCK_KEY_INDEX_CONTEXT

    keys = ring()
    return [
        keys.index(NORMALISERS["text"](key), BLOCK_KEY_INDEX_CONTEXT, key_id)
        for key in block_keys(subject)
        if key.startswith("consent:")
        for key_id in sorted(keys.index_keys)
    ]


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
    session: Session | None = None,
) -> JournalEntry | None:
    """Append a pending entry to the installed journal; without one (a unit test building
    services by hand) nothing is written. With ``session``, the entry is marked ``done`` once
    the session's transaction commits and ``aborted`` if it rolls back (``settle_on_end``)."""
    if _journal is None:
        return None
    entry = _journal.append(kind, subject, at, case, reason=reason, activity=activity)
    if session is not None:
        settle_on_end(session, _journal, entry)
    return entry


def settle_on_end(session: Session, journal: ErasureJournal, entry: JournalEntry) -> None:
    """Mark ``entry`` when the session's outermost transaction ends: ``done`` after its
    commit, ``aborted`` after its rollback (a savepoint's rollback is not the end). A mark that
    cannot be written (the disk, a crash) leaves the entry pending, settled later by the
    database's record: the answer already given is not turned into an error."""
    root = session.get_transaction()
    if root is None:
        session.connection()  # begins the transaction the entry belongs to
        root = session.get_transaction()
    committed: list[bool] = []
    skip: list[str] = []

    def outermost(current: Session) -> bool:
        return not current.in_nested_transaction() and current.get_transaction() is root

    def before_commit(current: Session) -> None:
        if entry.kind == ERASURE and outermost(current):
            skip[:] = _left_alone(current, entry)

    def after_commit(current: Session) -> None:
        if outermost(current):
            committed.append(True)

    def after_end(current: Session, transaction: SessionTransaction) -> None:
        if transaction is not root:
            return
        try:
            journal.mark(entry.seq, DONE if committed else ABORTED, skip)
        except JournalError:
            logger.warning("journal_mark_failed", extra={"seq": entry.seq})

    event.listen(session, "before_commit", before_commit)
    event.listen(session, "after_commit", after_commit)
    event.listen(session, "after_transaction_end", after_end)


def _left_alone(session: Session, entry: JournalEntry) -> list[str]:
    """The stores the erasure's receipt says it left alone, read in the transaction itself
    (the receipt is written in it, before the commit; the query flushes it first)."""
    from sqlalchemy import select

    from gardien.backup.settle import receipt_verdict
    from gardien.rights.models import RightsCase

    receipt = session.scalar(select(RightsCase.receipt).where(RightsCase.reference == entry.case))
    found = receipt_verdict(receipt, entry)
    return list(found.skip) if found is not None else []
