"""Backups as the operator runs them: create, restore with the journal replayed, purge by the
register's period, and which retired master keys old backups still need.

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

from gardien.backup import archive
from gardien.backup.journal import FILE_NAME, ErasureJournal
from gardien.backup.replay import Reapplied, reapply
from gardien.config import Settings
from gardien.deps import State
from gardien.register.durations import parse_period
from gardien.register.schema import Register
from gardien.retention.models import PurgeReceipt
from gardien.security import audit
from gardien.security.crypto import ring
from gardien.security.keys import read_keys
from gardien.storage.database import unit_of_work

CATALOGUE = "backup-catalog.json"
PENDING = "restore-pending.json"
ACTIVITY = "backups"
STORE = "backup_files"


def default_dir(settings: Settings) -> Path:
    return settings.data_dir / "backups"


def journal_of(settings: Settings) -> ErasureJournal:
    return ErasureJournal(settings.data_dir / FILE_NAME)


# -- catalogue --------------------------------------------------------------------------------


def read_catalogue(settings: Settings) -> list[dict[str, Any]]:
    path = settings.data_dir / CATALOGUE
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
        reapplied = reapply(session, ring(), state.providers, entries)
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


@dataclass(frozen=True, slots=True)
class PurgedBackups:
    period: str | None
    removed: list[str]
    kept: int


def purge(state: State) -> PurgedBackups:
    """Delete the backups older than the register's ``backups.retention`` (files and catalogue
    entries) and leave a purge receipt; without the section nothing is purged."""
    section = state.register.backups
    if section is None:
        return PurgedBackups(None, [], len(read_catalogue(state.settings)))
    started = state.clock.now()
    cutoff = parse_period(section.retention).before(started)
    kept, removed = [], []
    for entry in read_catalogue(state.settings):
        if dt.datetime.fromisoformat(entry["created_at"]) < cutoff:
            Path(entry["path"]).unlink(missing_ok=True)
            removed.append(str(entry["id"]))
        else:
            kept.append(entry)
    _write_json(state.settings.data_dir / CATALOGUE, kept)
    finished = state.clock.now()
    with unit_of_work(state.sessions) as session:
        session.add(
            PurgeReceipt(
                run_id=f"backups-{started:%Y%m%dT%H%M%S}",
                activity=ACTIVITY,
                store=STORE,
                action="delete",
                period=section.retention,
                trigger="created",
                cutoff=cutoff,
                status="purged" if removed else "nothing_to_purge",
                rows_affected=len(removed),
                chunks=1 if removed else 0,
                started_at=started,
                finished_at=finished,
                duration_ms=int((finished - started).total_seconds() * 1000),
                note=None,
            )
        )
        if removed:
            audit.record(
                session,
                audit.Actor.system("retention"),
                "retention.delete",
                finished,
                target_type="backup",
                target_id=ACTIVITY,
                reason=f"{len(removed)} backups older than {cutoff:%F}",
            )
    return PurgedBackups(section.retention, removed, len(kept))


def backups_period(register: Register) -> str | None:
    return register.backups.retention if register.backups else None
