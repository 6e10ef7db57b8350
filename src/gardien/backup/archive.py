"""Encrypted backup files: a consistent online snapshot of the database, sealed with a key
derived from the master key.

A file is a clear header (what it is, when it was taken, which master key and which journal
position it needs; no personal value) followed by the snapshot in AES-256-GCM chunks. The
chunk key is HKDF-SHA256 of the master key named in the header with the backup's id as salt,
so the keys file opens every backup taken under a master it still holds; each chunk's
associated data binds the header, its number and whether it is the last, so a cut, reordered
or edited file does not open. The snapshot comes from the database's own tools: SQLite's
``VACUUM INTO`` (a transaction-consistent copy while Gardien keeps writing), PostgreSQL's
``pg_dump`` (one snapshot transaction). The analytics daily salts are left out: a restored
day gets a fresh salt, so visitor ids of the past can never be recomputed from a backup.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
import sqlite3
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from gardien.config import Settings
from gardien.security.keys import KeysFile

MAGIC = b"GARDIEN-BACKUP-1\n"
CHUNK = 1 << 20
NONCE = 12
EXCLUDED_TABLES = ("analytics_salt",)
"""Tables whose rows never enter a backup (their schema does)."""
SUFFIX = ".gbk"


class BackupError(Exception):
    """A backup cannot be written or read; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class BackupHeader:
    id: str
    created_at: dt.datetime
    dialect: str
    master_id: str
    journal_seq: int
    schema: str | None
    revision: str | None
    excluded: tuple[str, ...] = EXCLUDED_TABLES

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "dialect": self.dialect,
            "master_id": self.master_id,
            "journal_seq": self.journal_seq,
            "schema": self.schema,
            "revision": self.revision,
            "excluded": list(self.excluded),
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> BackupHeader:
        return cls(
            id=str(payload["id"]),
            created_at=dt.datetime.fromisoformat(payload["created_at"]),
            dialect=str(payload["dialect"]),
            master_id=str(payload["master_id"]),
            journal_seq=int(payload["journal_seq"]),
            schema=payload.get("schema"),
            revision=payload.get("revision"),
            excluded=tuple(payload.get("excluded", [])),
        )


def backup_key(master: bytes, backup_id: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=backup_id.encode(), info=b"gardien backup v1"
    ).derive(master)


# -- sealing --------------------------------------------------------------------------------


def _seal(source: IO[bytes], target: IO[bytes], header: BackupHeader, master: bytes) -> None:
    header_bytes = json.dumps(header.to_json(), separators=(",", ":")).encode()
    target.write(MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes)
    binding = hashlib.sha256(header_bytes).digest()
    cipher = AESGCM(backup_key(master, header.id))
    number = 0
    block = source.read(CHUNK)
    while True:
        following = source.read(CHUNK) if block else b""
        last = not following
        nonce = os.urandom(NONCE)
        aad = binding + struct.pack(">Q?", number, last)
        sealed = cipher.encrypt(nonce, block, aad)
        target.write(struct.pack(">I", len(sealed)) + nonce + sealed)
        if last:
            return
        number += 1
        block = following


def read_header(path: Path) -> BackupHeader:
    try:
        with path.open("rb") as handle:
            header, _ = _header(handle, path)
    except OSError as exc:
        raise BackupError(f"{path}: cannot read the backup file ({exc.strerror})") from exc
    return header


def _header(handle: IO[bytes], path: Path) -> tuple[BackupHeader, bytes]:
    if handle.read(len(MAGIC)) != MAGIC:
        raise BackupError(f"{path}: not a Gardien backup file")
    try:
        (length,) = struct.unpack(">I", handle.read(4))
        if length > 65536:
            raise ValueError
        raw = handle.read(length)
        return BackupHeader.from_json(json.loads(raw)), raw
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{path}: the backup's header is damaged") from exc


def _open(path: Path, keys: KeysFile, target: IO[bytes]) -> BackupHeader:
    """Decrypt the snapshot of ``path`` into ``target``; raises ``BackupError``."""
    with path.open("rb") as handle:
        header, raw = _header(handle, path)
        master = keys.masters.get(header.master_id)
        if master is None:
            raise BackupError(
                f"{path}: needs master key {header.master_id}, which this keys file does not "
                "hold (restore the keys file that was in use when the backup was taken)"
            )
        cipher = AESGCM(backup_key(master, header.id))
        binding = hashlib.sha256(raw).digest()
        number = 0
        while True:
            size = handle.read(4)
            if len(size) < 4:
                raise BackupError(f"{path}: the backup is truncated")
            (length,) = struct.unpack(">I", size)
            nonce = handle.read(NONCE)
            sealed = handle.read(length)
            if len(sealed) < length:
                raise BackupError(f"{path}: the backup is truncated")
            for last in (False, True):
                try:
                    plain = cipher.decrypt(
                        nonce, sealed, binding + struct.pack(">Q?", number, last)
                    )
                    break
                except InvalidTag:
                    continue
            else:
                raise BackupError(
                    f"{path}: the backup does not authenticate with master key "
                    f"{header.master_id} of this keys file (wrong key or altered file)"
                )
            target.write(plain)
            if last:
                if handle.read(1):
                    raise BackupError(f"{path}: data after the backup's last chunk")
                return header
            number += 1


# -- snapshots --------------------------------------------------------------------------------


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        try:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception:  # noqa: BLE001 - a database that was never migrated
            return None


def _pg_environment(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password (which goes through ``PGPASSWORD``)."""
    parsed = make_url(url)
    environment = dict(os.environ)
    if parsed.password is not None:
        environment["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), environment


def _pg_schema(engine: Engine) -> str:
    with engine.connect() as connection:
        schema = connection.execute(text("SELECT current_schema()")).scalar()
    if not schema:
        raise BackupError("the PostgreSQL connection has no current schema")
    return str(schema)


@dataclass(frozen=True, slots=True)
class Snapshot:
    path: Path
    dialect: str
    schema: str | None


def _snapshot(settings: Settings, engine: Engine, workdir: Path) -> Snapshot:
    if settings.is_sqlite:
        copy = workdir / "snapshot.db"
        # Straight on the driver's connection: VACUUM cannot run inside the transaction
        # SQLAlchemy would begin; VACUUM INTO reads one consistent snapshot by itself.
        raw = engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None
            driver.execute("VACUUM INTO ?", (str(copy),))
        finally:
            raw.close()
        database = sqlite3.connect(copy)
        try:
            database.execute("PRAGMA secure_delete=ON")
            for table in EXCLUDED_TABLES:
                database.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            database.commit()
            database.execute("VACUUM")
        finally:
            database.close()
        return Snapshot(copy, "sqlite", None)
    schema = _pg_schema(engine)
    dump = workdir / "snapshot.dump"
    uri, environment = _pg_environment(settings.resolved_database_url)
    command = [
        "pg_dump",
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        f"--schema={schema}",
        *(f"--exclude-table-data={schema}.{table}" for table in EXCLUDED_TABLES),
        f"--file={dump}",
        f"--dbname={uri}",
    ]
    _run(command, environment, "pg_dump")
    return Snapshot(dump, "postgresql", schema)


def _run(command: list[str], environment: dict[str, str], tool: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - fixed tool, arguments we built
            command, env=environment, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise BackupError(f"{tool} is not installed (PostgreSQL client tools)") from exc
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise BackupError(f"{tool} failed: {first}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class CreatedBackup:
    path: Path
    header: BackupHeader
    size: int
    sha256: str


def create_backup(
    settings: Settings,
    engine: Engine,
    keys: KeysFile,
    out_dir: Path,
    now: dt.datetime,
    journal_seq: int,
) -> CreatedBackup:
    """Write an encrypted snapshot into ``out_dir``; only finished files get their name."""
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    backup_id = f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".snapshot-") as work:
        workdir = Path(work)
        os.chmod(workdir, 0o700)
        snapshot = _snapshot(settings, engine, workdir)
        header = BackupHeader(
            id=backup_id,
            created_at=now,
            dialect=snapshot.dialect,
            master_id=keys.active_master,
            journal_seq=journal_seq,
            schema=snapshot.schema,
            revision=_revision(engine),
        )
        final = out_dir / f"gardien-{backup_id}{SUFFIX}"
        partial = workdir / "sealed"
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with snapshot.path.open("rb") as source, os.fdopen(descriptor, "wb") as target:
            _seal(source, target, header, keys.master)
            target.flush()
            os.fsync(target.fileno())
        os.replace(partial, final)
    digest = hashlib.sha256()
    with final.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return CreatedBackup(final, header, final.stat().st_size, digest.hexdigest())


# -- restoring --------------------------------------------------------------------------------


def restore_snapshot(
    settings: Settings, engine: Engine, path: Path, keys: KeysFile
) -> BackupHeader:
    """Replace the database's content with the backup's (the service must be stopped).

    The snapshot is decrypted and checked completely before the database is touched: a wrong
    key or a damaged file leaves the database as it was."""
    header = read_header(path)
    dialect = "sqlite" if settings.is_sqlite else "postgresql"
    if header.dialect != dialect:
        raise BackupError(
            f"{path}: a {header.dialect} backup cannot be restored into {dialect} "
            "(GARDIEN_DATABASE_URL)"
        )
    if settings.is_sqlite:
        database = Path(make_url(settings.resolved_database_url).database or "")
        database.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=database.parent, prefix=".restore-", suffix=".db")
        staged = Path(name)
        try:
            with os.fdopen(descriptor, "wb") as target:
                _open(path, keys, target)
                target.flush()
                os.fsync(target.fileno())
            check = sqlite3.connect(staged)
            try:
                verdict = check.execute("PRAGMA integrity_check").fetchone()
            except sqlite3.DatabaseError:
                verdict = None
            finally:
                check.close()
            if not verdict or verdict[0] != "ok":
                raise BackupError(f"{path}: the decrypted snapshot fails SQLite's integrity check")
            engine.dispose()
            for suffix in ("-wal", "-shm"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
            os.replace(staged, database)
        finally:
            staged.unlink(missing_ok=True)
        return header
    with tempfile.TemporaryDirectory(prefix="gardien-restore-") as work:
        dump = Path(work) / "snapshot.dump"
        with dump.open("wb") as target:
            _open(path, keys, target)
        schema = _pg_schema(engine)
        if header.schema and header.schema != schema:
            raise BackupError(
                f"{path}: taken from schema {header.schema!r}, the database uses {schema!r}"
            )
        uri, environment = _pg_environment(settings.resolved_database_url)
        listing = _run(["pg_restore", "--list", str(dump)], environment, "pg_restore")
        # The schema itself is recreated here (empty); restoring its entry would fail.
        kept = [line for line in listing.splitlines() if not _SCHEMA_ENTRY.search(line)]
        (Path(work) / "list").write_text("\n".join(kept) + "\n")
        # The current content is set aside (renamed), not dropped, until the restore has
        # succeeded: a failing pg_restore puts it back as it was.
        aside = f"{schema[:40]}_before_restore_{secrets.token_hex(4)}"
        engine.dispose()
        with engine.begin() as connection:
            connection.exec_driver_sql(f'ALTER SCHEMA "{schema}" RENAME TO "{aside}"')
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        engine.dispose()
        try:
            _run(
                [
                    "pg_restore",
                    "--no-owner",
                    "--no-privileges",
                    "--single-transaction",
                    "--exit-on-error",
                    f"--use-list={Path(work) / 'list'}",
                    f"--dbname={uri}",
                    str(dump),
                ],
                environment,
                "pg_restore",
            )
        except BaseException:
            with engine.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
                connection.exec_driver_sql(f'ALTER SCHEMA "{aside}" RENAME TO "{schema}"')
            engine.dispose()
            raise
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{aside}" CASCADE')
        engine.dispose()
    return header


_SCHEMA_ENTRY = re.compile(r"^\d+; \d+ \d+ (SCHEMA|COMMENT) - ")


def backups_in(directory: Path) -> Iterator[tuple[Path, BackupHeader]]:
    if not directory.is_dir():
        return
    for path in sorted(directory.glob(f"gardien-*{SUFFIX}")):
        try:
            yield path, read_header(path)
        except BackupError:
            continue
