"""The installation's secret keys, kept in ``KEYS_FILE`` (default ``DATA_DIR/keys``).

Today it holds the key for keyed hashes (rate-limit buckets); field-encryption keys and their
rotation join it with the security core. The file is created with mode 0600 and never logged.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from gardien.config import Settings


@dataclass(frozen=True)
class Keys:
    hmac_key: bytes

    def __repr__(self) -> str:
        return "Keys(<hidden>)"


class KeysError(Exception):
    """The keys file is unreadable or malformed."""


def keys_path(settings: Settings) -> Path:
    return settings.keys_file or settings.data_dir / "keys"


def init_keys(settings: Settings) -> tuple[Path, bool]:
    """Create the keys file if missing; returns its path and whether it was created."""
    path = keys_path(settings)
    if path.exists():
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": 1, "hmac_key": base64.b64encode(secrets.token_bytes(32)).decode()}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(payload, handle)
    return path, True


def load_keys(settings: Settings, create: bool = True) -> Keys:
    path = keys_path(settings)
    if create:
        init_keys(settings)
    try:
        payload = json.loads(path.read_text())
        return Keys(hmac_key=base64.b64decode(payload["hmac_key"], validate=True))
    except FileNotFoundError as exc:
        raise KeysError(f"{path}: no keys file (run gardien keys init)") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise KeysError(f"{path}: the keys file is malformed") from exc
