"""Backups: what sealing a snapshot costs over the database tool alone, and how long a restore
with its journal replay takes.

A database is filled as ``bench/rights.py`` does (one person, then ``BENCH_BACKUP_ROWS``
others' analytics hits and connection-log rows each). Measured in the same run: the bare
snapshot (SQLite ``VACUUM INTO``, PostgreSQL ``pg_dump --format=custom``), ``backup create``
(snapshot + AES-256-GCM sealing + catalogue), and ``backup restore`` after one erasure (load,
migrations check, journal replay, retention). Target (reported, not enforced): sealing adds
less than half the snapshot's own time (ratio create / snapshot < 1.5).

Measured here (200,000 rows per table, this machine): SQLite snapshot 121 MB in 3.9 s, backup
4.8 s (1.22x), restore with replay and retention 13 s; PostgreSQL 2.9 MB (pg_dump's custom
format compresses) in 2.2 s, backup 2.3 s (1.06x), restore 27 s. Most of a restore here is the
retention run that follows it: the bench's rows are from March and the clock is today's, so
retention deletes them all. The SQLite file is sealed uncompressed.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.common import Verdict, heading, print_table, ratio

ROWS = int(os.environ.get("BENCH_BACKUP_ROWS", "200000"))
TARGET = 1.5


def _measure(backend: str, directory: Path, database_url: str | None = None) -> list[str]:
    from bench.rights import EMAIL, _add_others, _seed_person, _state
    from gardien.backup import archive
    from gardien.backup.service import create, finish_restore, restore_database
    from gardien.rights.models import RightsCase
    from gardien.rights.service import Desk, erase, open_case, subject_of
    from gardien.runtime import start
    from gardien.security.audit import Actor
    from gardien.storage.database import unit_of_work
    from gardien.storage.subjects import SubjectIdentity

    state = _state(directory, database_url)
    _seed_person(state)
    _add_others(state, ROWS)
    with tempfile.TemporaryDirectory(dir=directory) as work:
        started = time.perf_counter()
        snapshot = archive._snapshot(state.settings, state.engine, Path(work))
        bare = time.perf_counter() - started
        raw_size = snapshot.path.stat().st_size
    started = time.perf_counter()
    created = create(state)
    sealed = time.perf_counter() - started
    desk = Desk(state.register, state.providers)
    actor = Actor("bench", "dpo")
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            desk,
            SubjectIdentity(email=EMAIL),
            ["erasure"],
            channel="cli",
            now=state.clock.now(),
            actor=actor,
        )
    with unit_of_work(state.sessions) as session:
        case = session.get_one(RightsCase, case.id)
        erase(session, desk, case, subject_of(case), now=state.clock.now(), actor=actor)
    started = time.perf_counter()
    restore_database(state.settings, state, created.path)
    start(state)  # replays the journal and runs retention, as the command does
    restored = time.perf_counter() - started
    report = state.caches.get("restore_report", {})
    assert finish_restore(state) is None
    reapplied = len(report.get("reapplied", []))
    state.engine.dispose()
    factor = ratio(sealed, bare)
    return [
        backend,
        f"{ROWS:,}",
        f"{raw_size / 1e6:.1f}",
        f"{created.size / 1e6:.1f}",
        f"{bare:.2f}",
        f"{sealed:.2f}",
        f"{factor:.2f}",
        f"{restored:.2f}",
        str(reapplied),
    ]


def run() -> list[Verdict]:
    from bench.connlog import DEFAULT_POSTGRES, _postgres_schema

    heading(f"backup: create and restore with {ROWS:,} hits and {ROWS:,} requests")
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="gardien-backup-") as directory:
        rows.append(_measure("sqlite", Path(directory) / "sqlite"))
        if os.environ.get("BENCH_BACKUP_POSTGRES", "1") != "0":
            url = os.environ.get("GARDIEN_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
            with _postgres_schema(url) as schema_url:
                if schema_url:
                    rows.append(_measure("postgresql", Path(directory) / "pg", schema_url))
    print_table(
        [
            "backend",
            "rows per table",
            "snapshot MB",
            "backup MB",
            "snapshot s",
            "create s",
            "create/snapshot",
            "restore+replay s",
            "re-applied",
        ],
        rows,
    )
    return [
        Verdict(
            f"backup ({row[0]}): create / bare snapshot < {TARGET:g}",
            f"{row[5]} s vs {row[4]} s ({row[6]}x)",
            float(row[6]) < TARGET,
        )
        for row in rows
    ]


if __name__ == "__main__":
    run()
