"""Field encryption at rest and blind indexes.

Every personal field is stored as AES-256-GCM ciphertext under a *data key*; data keys live in
the database wrapped (AES-GCM) by a *master key* that stays outside it, in ``KEYS_FILE``.
Each ciphertext names its data key (``0x01 | key id | nonce | ciphertext+tag``) and is bound to
its column by the associated data, so a value copied into another column does not decrypt.
Equality lookups go through a *blind index*: a keyed HMAC of the normalised value under an
index key of its own, stored as ``key id:digest`` so an index key can be rotated while lookups
try every live index key.

A model declares a field once: ``mapped_column(Encrypted("admin_user.email"))`` and, when it
must be searchable, a ``BlindIndex`` column next to it; this module does the rest. A hot path
that stores the same value many times may encrypt it once and hand the column a ``Sealed``
value, which is stored as it is (the connection log does, for its reasons).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import LargeBinary, String, TypeDecorator
from sqlalchemy.engine import Dialect

FORMAT = b"\x01"
KEY_ID_BYTES = 8
NONCE_BYTES = 12


class KeyError_(Exception):
    """A key is missing, wrong or unreadable; the message says which, never the key."""


class DecryptionError(KeyError_):
    pass


def new_key() -> bytes:
    return secrets.token_bytes(32)


def new_key_id() -> str:
    return secrets.token_hex(KEY_ID_BYTES // 2)


def wrap(master: bytes, key_id: str, key: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(master).encrypt(nonce, key, f"wrap:{key_id}".encode())


def unwrap(master: bytes, key_id: str, wrapped: bytes) -> bytes:
    try:
        return AESGCM(master).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], f"wrap:{key_id}".encode()
        )
    except InvalidTag as exc:
        raise KeyError_(f"data key {key_id} cannot be unwrapped with this master key") from exc


def normalise_email(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip().casefold()


def normalise_ip(value: str) -> str:
    return str(ipaddress.ip_address(value.strip()))


def normalise_text(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip()


@dataclass
class KeyRing:
    """The unwrapped keys of one process. Thread-safe; reloads when it meets an unknown id."""

    data_keys: dict[str, bytes] = field(default_factory=dict)
    active_data: str | None = None
    index_keys: dict[str, bytes] = field(default_factory=dict)
    active_index: str | None = None
    live_index: list[str] = field(default_factory=list)
    """Index keys lookups must try: the active one and, while re-indexing, the previous one."""
    reload: Callable[[KeyRing], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    max_age: float = 30.0
    """Seconds before the ring re-reads the key table, so every instance of a running
    deployment moves to keys another one rotated in (``gardien keys rotate``)."""
    loaded_at: float = field(default_factory=time.monotonic)

    def _fresh(self) -> None:
        if self.reload is not None and time.monotonic() - self.loaded_at > self.max_age:
            self.loaded_at = time.monotonic()  # one refresh at a time, even if it fails
            self.reload(self)

    ciphers: dict[str, AESGCM] = field(default_factory=dict)
    """AES-GCM contexts per key id, so the key schedule is computed once, not per value."""

    def _cipher(self, key_id: str) -> AESGCM:
        cipher = self.ciphers.get(key_id)
        if cipher is not None:
            return cipher
        key = self.data_keys.get(key_id)
        if key is None and self.reload is not None:
            self.reload(self)
            key = self.data_keys.get(key_id)
        if key is None:
            raise DecryptionError(f"data key {key_id} is not known to this keys file")
        cipher = self.ciphers[key_id] = AESGCM(key)
        return cipher

    def encrypt(self, plaintext: str, context: str) -> bytes:
        self._fresh()
        if self.active_data is None:
            raise KeyError_("no active data key: the key ring is not loaded")
        key_id = self.active_data
        nonce = os.urandom(NONCE_BYTES)
        aad = f"{context}:{key_id}".encode()
        sealed = self._cipher(key_id).encrypt(nonce, plaintext.encode(), aad)
        return FORMAT + key_id.encode() + nonce + sealed

    def decrypt(self, blob: bytes, context: str) -> str:
        if not blob.startswith(FORMAT) or len(blob) < 1 + KEY_ID_BYTES + NONCE_BYTES + 16:
            raise DecryptionError(f"{context}: not a Gardien ciphertext")
        key_id = blob[1 : 1 + KEY_ID_BYTES].decode("ascii", "replace")
        nonce = blob[1 + KEY_ID_BYTES : 1 + KEY_ID_BYTES + NONCE_BYTES]
        aad = f"{context}:{key_id}".encode()
        try:
            plain = self._cipher(key_id).decrypt(nonce, blob[1 + KEY_ID_BYTES + NONCE_BYTES :], aad)
        except InvalidTag as exc:
            raise DecryptionError(f"{context}: ciphertext does not authenticate") from exc
        return plain.decode()

    @staticmethod
    def key_id_of(blob: bytes) -> str:
        return blob[1 : 1 + KEY_ID_BYTES].decode("ascii", "replace")

    def index(self, value: str, context: str, key_id: str | None = None) -> str:
        if key_id is None:
            self._fresh()
        key_id = key_id or self.active_index
        if key_id is None or key_id not in self.index_keys:
            raise KeyError_("no active index key: the key ring is not loaded")
        digest = hmac.new(
            self.index_keys[key_id], f"{context}\x00{value}".encode(), hashlib.sha256
        ).hexdigest()[:40]
        return f"{key_id}:{digest}"

    def lookups(self, value: str, context: str) -> list[str]:
        """Every blind-index value a stored row may carry for ``value`` (one per live key)."""
        keys = self.live_index or ([self.active_index] if self.active_index else [])
        return [self.index(value, context, key_id) for key_id in keys]


_ring: KeyRing | None = None


def install(ring: KeyRing) -> None:
    """Make ``ring`` the process's key ring (done once by the entry point)."""
    global _ring
    _ring = ring


def ring() -> KeyRing:
    if _ring is None:
        raise KeyError_("no key ring installed: Gardien was not started through its entry point")
    return _ring


@dataclass(frozen=True, slots=True)
class Sealed:
    """A value ``KeyRing.encrypt`` already sealed for the column ``context``: an ``Encrypted``
    column stores ``blob`` unchanged instead of encrypting again. It decrypts like any other
    value and is moved to a new key by rotation like any other."""

    blob: bytes
    context: str


class Encrypted(TypeDecorator[str]):
    """A personal text field, stored encrypted; ``context`` (``table.column``) binds it."""

    impl = LargeBinary
    cache_ok = True
    personal = True

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def process_bind_param(self, value: str | Sealed | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, Sealed):
            if value.context != self.context:
                # Sealed for another column: it would never decrypt here.
                raise ValueError(f"a value sealed for {value.context} given to {self.context}")
            return value.blob
        return ring().encrypt(value, self.context)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return ring().decrypt(bytes(value), self.context)


class BlindIndex(TypeDecorator[str]):
    """The searchable keyed hash of a personal field; written by the model, never decrypted.

    ``source`` names the encrypted attribute it is computed from and ``normalise`` how, so
    re-indexing after an index-key rotation can recompute it.
    """

    impl = String(64)
    cache_ok = True
    personal = True

    def __init__(self, context: str, source: str, normaliser: str = "text") -> None:
        super().__init__()
        self.context = context
        self.source = source
        self.normaliser = normaliser


NORMALISERS: dict[str, Callable[[str], str]] = {
    "text": normalise_text,
    "email": normalise_email,
    "ip": normalise_ip,
}


def blind_index(value: str, context: str, normaliser: str = "text") -> str:
    return ring().index(NORMALISERS[normaliser](value), context)


def blind_lookups(value: str, context: str, normaliser: str = "text") -> list[str]:
    return ring().lookups(NORMALISERS[normaliser](value), context)


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()


def decode_key(text: str) -> bytes:
    key = base64.b64decode(text, validate=True)
    if len(key) != 32:
        raise ValueError("a key must be 32 bytes")
    return key


def personal_columns(tables: Iterable[Any]) -> list[tuple[Any, Any]]:
    """(table, column) pairs whose type is a personal-data type (Encrypted or BlindIndex)."""
    return [
        (table, column)
        for table in tables
        for column in table.columns
        if getattr(column.type, "personal", False)
    ]
