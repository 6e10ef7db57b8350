"""Re-applying, after a restore, every erasure and restriction the backup predates.

An entry of the journal holds blind indexes only. The people it names are found in the
restored rows by those indexes; their identifiers are read back (decrypted) from the matching
rows and checked against the entry's index, then every provider erases or restricts them as it
did the first time. Nothing matching means the backup never held them, which the report says.

Each entry is replayed by its state (``backup.journal``): ``done`` is applied, leaving alone the
stores the erasure left alone and those under a legal hold today; ``aborted`` is not. An entry
still ``pending`` (a crash between the entry and its mark, and no database to settle it before
the restore) is first settled by the restored database's own record (``backup.settle``: a
snapshot taken while the action committed holds it); failing that, it is applied on the
cautious side, ``unconfirmed`` in the report: an erasure, a restriction or a withdrawal is
applied (a person who asked not to be processed is not processed again), the lifting of a
restriction is not (the person stays restricted until an agent lifts it again).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import LargeBinary, select, text, type_coerce, update
from sqlalchemy.orm import Session

from gardien.backup.journal import (
    ABORTED,
    DONE,
    ERASURE,
    PENDING,
    RESTRICTION,
    RESTRICTION_LIFTED,
    WITHDRAWAL,
    IndexedColumn,
    JournalEntry,
    indexed_columns,
    normalise,
)
from gardien.security.crypto import NORMALISERS, DecryptionError, KeyRing
from gardien.storage.subjects import ConsentWithdrawal, ProviderRegistry, SubjectIdentity


@dataclass
class Reapplied:
    seq: int
    kind: str
    case: str | None
    found: dict[str, int] = field(default_factory=dict)
    """People found in the restored data, by identifier kind (counts, no values)."""
    stores: dict[str, int] = field(default_factory=dict)
    """Rows erased or restricted again, by store."""
    failed: list[str] = field(default_factory=list)
    status: str = "applied"
    """``applied``; ``unconfirmed`` (a pending entry no database could settle, applied on the
    cautious side); ``not_applied`` (aborted, or an unconfirmed lifting)."""
    left_alone: list[str] = field(default_factory=list)
    """Stores an erasure did not touch again: left alone the first time, or under a legal
    hold today."""

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "case": self.case,
            "status": self.status,
            "left_alone": self.left_alone,
            "found": self.found,
            "stores": self.stores,
            "failed": self.failed,
        }


def _candidates(plain: str) -> Iterable[str]:
    """The values a decrypted source may hold: itself, or the strings of a JSON object."""
    yield plain
    if plain.startswith("{"):
        try:
            document = json.loads(plain)
        except ValueError:
            return
        if isinstance(document, dict):
            yield from (v for v in document.values() if isinstance(v, str))


class ClearValues:
    """The identifiers a column holds in clear (``IndexedColumn.clear``), by their journal
    index under one index key: built once per column and key for the whole replay, by reading
    the column's distinct values (one HMAC each), so a journal of many visitor-id erasures
    reads the table once, not once per entry."""

    def __init__(self, session: Session, ring: KeyRing) -> None:
        self.session, self.ring = session, ring
        self._by_index: dict[tuple[str, str], dict[str, str]] = {}

    def lookup(self, column: IndexedColumn, wanted: set[str]) -> set[str]:
        found: set[str] = set()
        for key_id in sorted({index.split(":", 1)[0] for index in wanted}):
            known = self._by_index.get((column.context, key_id))
            if known is None:
                known = self._by_index[(column.context, key_id)] = self._read(column, key_id)
            found.update(known[index] for index in wanted if index in known)
        return found

    def _read(self, column: IndexedColumn, key_id: str) -> dict[str, str]:
        from gardien.models import metadata

        source = metadata.tables[column.table].c[column.column]
        values = self.session.scalars(select(source).where(source.is_not(None)).distinct())
        known = {}
        for value in values:
            try:
                known[self.ring.index(normalise(column, value), column.context, key_id)] = value
            except (ValueError, KeyError):
                continue  # an index key the ring no longer has: nothing to match under it
        return known


def _identifiers(
    session: Session,
    ring: KeyRing,
    entry: JournalEntry,
    columns: list[IndexedColumn],
    clear: ClearValues,
) -> dict[str, set[str]]:
    from gardien.models import metadata

    found: dict[str, set[str]] = {}
    for column in columns:
        wanted = set(entry.indexes.get(column.context, ()))
        if not wanted:
            continue
        if column.clear:
            values = clear.lookup(column, wanted)
            if values:
                found.setdefault(column.kind, set()).update(values)
            continue
        table = metadata.tables[column.table]
        index, source = table.c[column.column], table.c[column.source]
        source_context = getattr(source.type, "context", column.source)
        normalise = NORMALISERS[column.normaliser]
        rows = session.execute(
            select(index, type_coerce(source, LargeBinary)).where(index.in_(sorted(wanted)))
        ).all()
        for stored_index, blob in rows:
            if blob is None:
                continue
            try:
                plain = ring.decrypt(bytes(blob), source_context)
            except DecryptionError:
                continue
            key_id = str(stored_index).split(":", 1)[0]
            for value in _candidates(plain):
                try:
                    if ring.index(normalise(value), column.context, key_id) == stored_index:
                        found.setdefault(column.kind, set()).add(value)
                        break
                except (ValueError, KeyError):
                    continue
    return found


def reapply(
    session: Session,
    ring: KeyRing,
    providers: ProviderRegistry,
    entries: Iterable[JournalEntry],
    held: frozenset[str] = frozenset(),
) -> list[Reapplied]:
    """Erase, restrict or withdraw again, in journal order, the people each entry names
    (flushes). ``held``: the stores under a legal hold today, which an erasure leaves alone."""
    from gardien.backup.settle import verdict

    columns = indexed_columns()
    if session.get_bind().dialect.name == "sqlite":
        # Erased cells are zeroed, not left in the file's free pages (as rights.erase does).
        session.execute(text("PRAGMA secure_delete=ON"))
    report = []
    clear = ClearValues(session, ring)
    for entry in entries:
        done = Reapplied(entry.seq, entry.kind, entry.case)
        report.append(done)
        skip = set(entry.skip)
        if entry.state == PENDING:
            found = verdict(session, entry)
            if found.state == DONE:  # the snapshot saw it commit ("aborted" proves nothing here)
                skip.update(found.skip)
            elif entry.kind == RESTRICTION_LIFTED:
                done.status = "not_applied"
                continue
            else:
                done.status = "unconfirmed"
        elif entry.state == ABORTED:
            done.status = "not_applied"
            continue
        if entry.kind == ERASURE:
            skip |= held
            done.left_alone = sorted(skip & {p.name for p in providers.providers})
        if entry.kind in (RESTRICTION, RESTRICTION_LIFTED) and entry.restriction_keys:
            done.stores["rights_restriction"] = _restriction_record(session, entry)
        if entry.kind == WITHDRAWAL and entry.block_keys:
            done.stores["analytics_block"] = _withdrawal_blocks(session, ring, entry)
        identifiers = _identifiers(session, ring, entry, columns, clear)
        done.found = {kind: len(values) for kind, values in sorted(identifiers.items())}
        for kind, values in sorted(identifiers.items()):
            for value in sorted(values):
                period = entry.period if kind == "ip_address" else None
                if kind == "ip_address" and period is None:
                    continue  # an address alone names whoever used it: never acted on
                subject = SubjectIdentity(**{kind: value}, period=period)
                _apply(session, providers, entry, subject, done, skip)
    return report


def _withdrawal_blocks(session: Session, ring: KeyRing, entry: JournalEntry) -> int:
    """Re-create the audience-measurement block of each withdrawn consent id, at the time of
    the withdrawal, from the journal's blind indexes (the restored data may hold nothing of
    the consent id). A later withdrawal already there is kept; an earlier one is moved."""
    from gardien.analytics.blocks import WITHDRAWAL as BLOCK_WITHDRAWAL
    from gardien.analytics.blocks import block_list
    from gardien.analytics.models import AnalyticsBlock

    by_key: dict[str, str] = {}
    for index in entry.block_keys or []:
        by_key.setdefault(index.split(":", 1)[0], index)
    if not by_key:
        return 0
    current = ring.active_index if ring.active_index in by_key else sorted(by_key)[0]
    existing = session.scalars(
        select(AnalyticsBlock).where(
            AnalyticsBlock.key_index.in_(sorted(set(entry.block_keys or []))),
            AnalyticsBlock.reason == BLOCK_WITHDRAWAL,
        )
    ).all()
    changed = 0
    for block in existing:
        if block.created_at < entry.at:
            block.created_at = entry.at
            changed += 1
    if not existing:
        # The encrypted ``key`` names the journal entry, not the person: only the index is
        # compared when a hit arrives (analytics.blocks).
        session.add(
            AnalyticsBlock(
                key=f"journal:{entry.seq}",
                key_index=by_key[current],
                reason=BLOCK_WITHDRAWAL,
                created_at=entry.at,
            )
        )
        changed += 1
    session.flush()
    block_list.forget(session.get_bind())
    return changed


def _restriction_record(session: Session, entry: JournalEntry) -> int:
    """Re-create (or lift) the restriction record by its blind-index keys. The case it was
    made in is younger than the backup, so a closed case stands in for it, naming it."""
    from gardien.rights.models import RightsCase
    from gardien.storage.restriction import SubjectRestriction

    keys = [index for _, index in entry.restriction_keys or []]
    reason = entry.reason or "restriction"
    if entry.kind == RESTRICTION_LIFTED:
        lifted = session.execute(
            update(SubjectRestriction)
            .where(
                SubjectRestriction.key_index.in_(keys),
                SubjectRestriction.reason == reason,
                SubjectRestriction.lifted_at.is_(None),
            )
            .values(lifted_at=entry.at)
        )
        return int(getattr(lifted, "rowcount", 0) or 0)
    stand_in = RightsCase(
        reference=f"GR-R-{entry.seq:06d}",
        rights="restriction",
        channel="other",
        status="closed",
        language="en",
        received_at=entry.at,
        due_at=entry.at.date(),
        closed_at=entry.at,
        outcome=f"restored from journal: {entry.case}"[:40],
    )
    existing = session.scalar(select(RightsCase).where(RightsCase.reference == stand_in.reference))
    case = existing or stand_in
    if existing is None:
        session.add(stand_in)
        session.flush()
    added = 0
    for kind, index in entry.restriction_keys or []:
        session.add(
            SubjectRestriction(
                case_id=case.id,
                kind=kind,
                key_index=index,
                reason=reason,
                activity=entry.activity,
                created_at=entry.at,
            )
        )
        added += 1
    session.flush()
    return added


def _apply(
    session: Session,
    providers: ProviderRegistry,
    entry: JournalEntry,
    subject: SubjectIdentity,
    done: Reapplied,
    skip: set[str],
) -> None:
    for provider in providers.providers:
        if entry.kind == ERASURE and provider.name in skip:
            continue
        if entry.kind == WITHDRAWAL and not isinstance(provider, ConsentWithdrawal):
            continue
        try:
            with session.begin_nested():
                if entry.kind == ERASURE:
                    rows = provider.erase(session, subject).erased
                elif entry.kind == WITHDRAWAL:
                    assert isinstance(provider, ConsentWithdrawal)
                    rows = provider.withdraw(session, subject, entry.at)
                elif entry.reason == "objection" and entry.activity:
                    rows = provider.object(session, subject, entry.activity)
                    if provider.name == entry.activity and rows == 0:
                        # It cannot stop for one person: erased instead, as the decision did.
                        rows = provider.erase(session, subject).erased
                else:
                    rows = provider.restrict(session, subject, entry.kind == RESTRICTION)
                session.flush()
        except Exception as exc:  # noqa: BLE001 - the savepoint undid this store alone
            done.failed.append(f"{provider.name}: {type(exc).__name__}")
            continue
        if rows:
            done.stores[provider.name] = done.stores.get(provider.name, 0) + rows
