"""Backups as the operator runs them: create, restore with the journal replayed, purge by the
register's ``backups`` activity (``storage: backup``), and which retired master keys old
backups still need.

The catalogue (``DATA_DIR/backup-catalog.json``) lists the backups this installation wrote and
has not purged, wherever they were copied since: a retired master key is kept while any of them
needs it. Like the journal, it lives outside the database, so a restore does not rewind it.
A restore leaves ``DATA_DIR/restore-pending.json`` until its replay is complete; a Gardien
started before that finishes the replay before it serves anything.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from gardien.backup import archive
from gardien.backup.journal import FILE_NAME, ErasureJournal
from gardien.backup.replay import Reapplied, reapply
from gardien.config import Settings
from gardien.deps import State
from gardien.register.schema import RetentionAction, RetentionTrigger
from gardien.security import audit
from gardien.security.crypto import ring
from gardien.security.keys import read_keys
from gardien.storage.database import unit_of_work

CATALOGUE = "backup-catalog.json"
PENDING = "restore-pending.json"


def default_dir(settings: Settings) -> Path:
    return settings.data_dir / "backups"


def journal_of(settings: Settings) -> ErasureJournal:
    return ErasureJournal(settings.data_dir / FILE_NAME)


# -- catalogue --------------------------------------------------------------------------------


def read_catalogue(settings: Settings) -> list[dict[str, Any]]:
    return _catalogue_at(settings.data_dir)


def _catalogue_at(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / CATALOGUE
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise archive.BackupError(f"{path}: the backup catalogue is damaged") from exc
    return [e for e in entries if isinstance(e, dict)]


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(payload, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def needed_masters(settings: Settings) -> set[str]:
    """Master key ids that backups not yet purged need to open."""
    return {str(e["master_id"]) for e in read_catalogue(settings)}


# -- create -----------------------------------------------------------------------------------


def create(state: State, out_dir: Path | None = None) -> archive.CreatedBackup:
    settings = state.settings
    keys = read_keys(settings)
    # The journal position is read before the snapshot starts: an erasure racing with it is
    # replayed by a restore even if the snapshot already saw it (erasing twice is harmless).
    seq = journal_of(settings).last_seq()
    created = archive.create_backup(
        settings, state.engine, keys, out_dir or default_dir(settings), state.clock.now(), seq
    )
    catalogue = read_catalogue(settings)
    catalogue.append(
        {
            "id": created.header.id,
            "path": str(created.path.resolve()),
            "created_at": created.header.created_at.isoformat(),
            "master_id": created.header.master_id,
            "journal_seq": seq,
            "sha256": created.sha256,
            "size": created.size,
        }
    )
    _write_json(settings.data_dir / CATALOGUE, catalogue)
    with unit_of_work(state.sessions) as session:
        audit.record(
            session,
            audit.Actor.system("cli"),
            "backup.created",
            state.clock.now(),
            target_type="backup",
            target_id=created.header.id,
            reason=f"{created.size} bytes, master key {created.header.master_id}",
        )
    return created


# -- restore ----------------------------------------------------------------------------------


def restore_database(settings: Settings, state: State, path: Path) -> archive.BackupHeader:
    """Load the snapshot (before the keys are opened: the database is replaced under them)
    and leave the pending marker that ``finish_restore`` removes."""
    keys = read_keys(settings)
    header = archive.read_header(path)
    settle_against_current(state, header.journal_seq)
    _write_json(
        settings.data_dir / PENDING,
        {"backup": header.id, "journal_seq": header.journal_seq, "at": time.time()},
    )
    try:
        archive.restore_snapshot(settings, state.engine, path, keys)
    except BaseException:
        (settings.data_dir / PENDING).unlink(missing_ok=True)  # the database is untouched
        raise
    return header


def settle_against_current(state: State, after_seq: int) -> dict[str, int] | None:
    """Before the database is replaced: settle the journal entries it can (``backup.settle``),
    every instance being stopped. ``None`` when it cannot be read (lost, never created): the
    entries stay pending and the replay settles them from the restored data or applies them on
    the cautious side."""
    from sqlalchemy.exc import SQLAlchemyError

    from gardien.backup.settle import settle_pending

    if pending_restore(state.settings) is not None:
        return None  # the database is already a restored one: it did not see these entries
    try:
        with state.sessions() as session:
            return settle_pending(session, journal_of(state.settings), after_seq)
    except SQLAlchemyError:
        return None


def held_stores(state: State) -> frozenset[str]:
    """The register's activities under a legal hold today: an erasure replayed leaves their
    stores alone, as the erasure did."""
    today = state.clock.now().date()
    return frozenset(
        activity.id
        for activity in state.register.activities
        if any(hold.expires >= today for hold in activity.legal_holds)
    )


@dataclass(frozen=True, slots=True)
class RestoreReport:
    backup: str | None
    journal_from: int
    reapplied: list[Reapplied]
    retention: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "backup": self.backup,
            "replayed_after_journal_seq": self.journal_from,
            "reapplied": [r.to_json() for r in self.reapplied],
            "retention": self.retention,
        }


def pending_restore(settings: Settings) -> dict[str, Any] | None:
    path = settings.data_dir / PENDING
    try:
        payload: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise archive.BackupError(f"{path}: the restore marker is damaged") from exc
    return payload


def finish_restore(state: State) -> RestoreReport | None:
    """Replay the journal after the restored backup, then run retention; ``None`` when no
    restore is pending. Called by the restore command and by every start."""
    from gardien.retention.service import run_retention

    marker = pending_restore(state.settings)
    if marker is None:
        return None
    start = int(marker.get("journal_seq", 0))
    entries = [e for e in journal_of(state.settings).entries() if e.seq > start]
    with unit_of_work(state.sessions) as session:
        reapplied = reapply(session, ring(), state.providers, entries, held_stores(state))
        audit.record(
            session,
            audit.Actor.system("backup"),
            "backup.restored",
            state.clock.now(),
            target_type="backup",
            target_id=str(marker.get("backup")),
            reason=f"journal entries re-applied: {len(reapplied)} (after seq {start})",
            outcome="ok" if not any(r.failed for r in reapplied) else "failed",
        )
    results = run_retention(state.sessions, state.register, state.stores, state.clock)
    (state.settings.data_dir / PENDING).unlink(missing_ok=True)
    return RestoreReport(
        marker.get("backup"),
        start,
        reapplied,
        [
            {"activity": r.activity, "outcome": r.outcome.value, "rows": r.rows}
            for r in results
            if r.rows
        ],
    )


# -- retention of backups ---------------------------------------------------------------------


class BackupStore:
    """The register's ``storage: backup``: the backups in the catalogue, deleted once older than
    the activity's period (trigger ``created``), so ``gardien retention run`` purges them and
    leaves its receipt like any other store's, and the policy states the period the register
    gives, like every other."""

    store_id = "backup"
    triggers = frozenset({RetentionTrigger.created, RetentionTrigger.collected})
    actions = frozenset({RetentionAction.delete})

    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir

    def _entries(self) -> list[dict[str, Any]]:
        if self.data_dir is None:
            return []
        return _catalogue_at(self.data_dir)

    def oldest(self, session: Session, trigger: RetentionTrigger) -> dt.datetime | None:
        return min((_created(e) for e in self._entries()), default=None)

    def count_due(self, session: Session, trigger: RetentionTrigger, cutoff: dt.datetime) -> int:
        return sum(1 for e in self._entries() if _created(e) < cutoff)

    def purge_chunk(
        self,
        session: Session,
        trigger: RetentionTrigger,
        action: RetentionAction,
        cutoff: dt.datetime,
        limit: int,
    ) -> int:
        if action is not RetentionAction.delete or self.data_dir is None:
            raise ValueError(f"backups cannot {action}")
        entries = self._entries()
        due = [e for e in entries if _created(e) < cutoff][:limit]
        for entry in due:
            Path(entry["path"]).unlink(missing_ok=True)
        if due:
            gone = {e["id"] for e in due}
            _write_json(self.data_dir / CATALOGUE, [e for e in entries if e["id"] not in gone])
        return len(due)


def _created(entry: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(entry["created_at"]))
