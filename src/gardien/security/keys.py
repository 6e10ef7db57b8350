"""The installation's keys: master keys in ``KEYS_FILE``, wrapped data and index keys in the
database, and their rotation while the service keeps running.

``KEYS_FILE`` (default ``DATA_DIR/keys``, mode 0600, JSON) holds the master keys (the active
one and the retired ones still needed to read old backups) and the HMAC key for rate-limit
buckets. It never enters the database, the logs or a backup of the database. A missing or wrong
file stops Gardien at start with a clear message: it never writes data it could not read back.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from gardien.config import Settings
from gardien.security.crypto import (
    KeyError_,
    KeyRing,
    decode_key,
    encode_key,
    new_key,
    new_key_id,
    unwrap,
    wrap,
)
from gardien.security.models import EncryptionKey
from gardien.storage.clock import Clock
from gardien.storage.database import READ_ONLY


class KeysError(Exception):
    """The keys file is missing, unreadable, malformed or does not match the database."""


@dataclass(frozen=True)
class KeysFile:
    masters: dict[str, bytes]
    active_master: str
    retired_masters: tuple[str, ...]
    hmac_key: bytes

    def __repr__(self) -> str:
        return f"KeysFile(active_master={self.active_master!r}, <keys hidden>)"

    @property
    def master(self) -> bytes:
        return self.masters[self.active_master]


def keys_path(settings: Settings) -> Path:
    return settings.keys_file or settings.data_dir / "keys"


def _write(path: Path, keys: KeysFile) -> None:
    """Replace the file atomically, never leaving it readable by others."""
    payload = {
        "version": 2,
        "active_master": keys.active_master,
        "retired_masters": list(keys.retired_masters),
        "masters": {kid: encode_key(key) for kid, key in keys.masters.items()},
        "hmac_key": encode_key(keys.hmac_key),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def init_keys(settings: Settings) -> tuple[Path, bool]:
    """Create the keys file if missing; returns its path and whether it was created."""
    path = keys_path(settings)
    if path.exists():
        return path, False
    master_id = new_key_id()
    _write(path, KeysFile({master_id: new_key()}, master_id, (), new_key()))
    return path, True


def read_keys(settings: Settings) -> KeysFile:
    path = keys_path(settings)
    try:
        mode = path.stat().st_mode & 0o777
        payload: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise KeysError(f"{path}: no keys file (run `gardien keys init`)") from exc
    except (OSError, ValueError) as exc:
        raise KeysError(f"{path}: the keys file is unreadable") from exc
    if mode & 0o077:
        raise KeysError(f"{path}: the keys file is readable by others (chmod 600 it)")
    try:
        if payload.get("version") == 1:  # foundation format: one HMAC key, no master yet
            master_id = new_key_id()
            keys = KeysFile({master_id: new_key()}, master_id, (), decode_key(payload["hmac_key"]))
            _write(path, keys)
            return keys
        masters = {kid: decode_key(text) for kid, text in payload["masters"].items()}
        active = str(payload["active_master"])
        if active not in masters:
            raise KeyError("active_master")
        return KeysFile(
            masters,
            active,
            tuple(str(k) for k in payload.get("retired_masters", [])),
            decode_key(payload["hmac_key"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise KeysError(f"{path}: the keys file is malformed") from exc


def load_keys(settings: Settings, create: bool = True) -> KeysFile:
    if create:
        init_keys(settings)
    return read_keys(settings)


class KeyStore:
    """Loads the key ring from the database and rotates keys; one per running Gardien."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.settings = settings
        self.sessions = sessions
        bind = sessions.kw["bind"]
        self.readers = sessionmaker(bind.execution_options(**{READ_ONLY: True}))
        self.clock = clock
        self.ring = KeyRing(reload=self._reload)

    def _reload(self, ring: KeyRing) -> None:
        self.load()

    def _unwrap_all(self, keys: KeysFile, rows: list[EncryptionKey]) -> dict[str, bytes]:
        unwrapped = {}
        for row in rows:
            master = keys.masters.get(row.master_id)
            if master is None:
                raise KeysError(
                    f"{keys_path(self.settings)}: master key {row.master_id} is missing: this "
                    "keys file does not belong to this database (restore the right one)"
                )
            try:
                unwrapped[row.id] = unwrap(master, row.id, row.wrapped)
            except KeyError_ as exc:
                raise KeysError(
                    f"{keys_path(self.settings)}: master key {row.master_id} cannot unwrap "
                    f"data key {row.id}: wrong keys file for this database"
                ) from exc
        return unwrapped

    def load(self) -> KeyRing:
        """Unwrap every key; on an empty database create the first data and index keys."""
        keys = read_keys(self.settings)
        # Reading takes no write lock (a refresh runs while requests are being logged);
        # only the very first start of an empty database writes.
        with self.readers() as session:
            rows = list(session.scalars(select(EncryptionKey)))
        if not rows:
            with self.sessions.begin() as session:
                now = self.clock.now()
                for purpose in ("data", "index"):
                    key_id = new_key_id()
                    row = EncryptionKey(
                        id=key_id,
                        purpose=purpose,
                        master_id=keys.active_master,
                        wrapped=wrap(keys.master, key_id, new_key()),
                        state="active",
                        created_at=now,
                    )
                    session.add(row)
                    rows.append(row)
        unwrapped = self._unwrap_all(keys, rows)
        ring = self.ring
        ring.loaded_at = time.monotonic()
        with ring.lock:
            ring.data_keys = {r.id: unwrapped[r.id] for r in rows if r.purpose == "data"}
            ring.ciphers = {}
            ring.index_keys = {r.id: unwrapped[r.id] for r in rows if r.purpose == "index"}
            ring.active_data = _newest(rows, "data", ("active",))
            ring.active_index = _newest(rows, "index", ("active",))
            ring.live_index = [
                *([ring.active_index] if ring.active_index else []),
                *(r.id for r in rows if r.purpose == "index" and r.state == "reindexing"),
            ]
        if ring.active_data is None or ring.active_index is None:
            raise KeysError("the database has no active data or index key")
        return ring

    # -- rotation --------------------------------------------------------------------------

    def rotate_master(self) -> str:
        """New master key: re-wrap every data and index key; the old master is kept retired."""
        keys = read_keys(self.settings)
        new_id = new_key_id()
        masters = dict(keys.masters)
        masters[new_id] = new_key()
        rotated = KeysFile(
            masters, new_id, (*keys.retired_masters, keys.active_master), keys.hmac_key
        )
        # Write the file first: if we crash after it, old wrappings still open with the
        # retired master it keeps; the reverse order could leave keys nobody can unwrap.
        _write(keys_path(self.settings), rotated)
        with self.sessions.begin() as session:
            for row in session.scalars(select(EncryptionKey)):
                plain = unwrap(keys.masters[row.master_id], row.id, row.wrapped)
                row.wrapped = wrap(rotated.master, row.id, plain)
                row.master_id = new_id
        return new_id

    def prune_masters(self, needed: set[str]) -> list[str]:
        """Forget retired master keys that neither the database nor a retained backup needs
        (``needed``: the masters of the backups not yet purged); returns the ids dropped."""
        keys = read_keys(self.settings)
        with self.readers() as session:
            in_use = set(session.scalars(select(EncryptionKey.master_id)))
        keep = needed | in_use | {keys.active_master}
        dropped = [kid for kid in keys.retired_masters if kid not in keep]
        if dropped:
            _write(
                keys_path(self.settings),
                KeysFile(
                    {k: v for k, v in keys.masters.items() if k not in dropped},
                    keys.active_master,
                    tuple(k for k in keys.retired_masters if k not in dropped),
                    keys.hmac_key,
                ),
            )
        return dropped

    def add_key(self, purpose: str, state: str = "active") -> str:
        keys = read_keys(self.settings)
        key_id = new_key_id()
        with self.sessions.begin() as session:
            if state == "active" and purpose == "data":
                session.execute(
                    update(EncryptionKey)
                    .where(EncryptionKey.purpose == purpose, EncryptionKey.state == "active")
                    .values(state="retired", retired_at=self.clock.now())
                )
            if purpose == "index":
                session.execute(
                    update(EncryptionKey)
                    .where(EncryptionKey.purpose == "index", EncryptionKey.state == "active")
                    .values(state="reindexing")
                )
            session.add(
                EncryptionKey(
                    id=key_id,
                    purpose=purpose,
                    master_id=keys.active_master,
                    wrapped=wrap(keys.master, key_id, new_key()),
                    state="active",
                    created_at=self.clock.now(),
                )
            )
        self.load()
        return key_id

    def finish_reindex(self) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(EncryptionKey)
                .where(EncryptionKey.purpose == "index", EncryptionKey.state == "reindexing")
                .values(state="retired", retired_at=self.clock.now())
            )
        self.load()


def _newest(rows: list[EncryptionKey], purpose: str, states: tuple[str, ...]) -> str | None:
    candidates = [r for r in rows if r.purpose == purpose and r.state in states]
    return max(candidates, key=lambda r: r.created_at).id if candidates else None
