"""Hash-chained logs: each entry's hash covers its canonical content and the previous hash.

Editing, deleting or reordering any entry breaks the chain at that entry. A lawful purge turns
an entry into a *tombstone*: its content goes, its sequence number and hashes stay, so the
chain still verifies; any other edit still fails. Used by the audit trail and, later, by the
consent records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


def canonical(fields: Mapping[str, Any]) -> bytes:
    """A stable byte encoding: sorted keys, no whitespace, ISO timestamps, UTF-8."""
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def link(previous_hash: str, fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(previous_hash.encode() + b"\x00" + canonical(fields)).hexdigest()


@dataclass(frozen=True)
class ChainRow:
    seq: int
    prev_hash: str
    hash: str
    fields: Mapping[str, Any] | None
    """``None`` for a tombstone: content purged, hashes kept."""


@dataclass(frozen=True)
class Break:
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.reason}"


def verify(rows: Iterable[ChainRow], start_seq: int = 1, start_hash: str = GENESIS) -> Break | None:
    """The first broken entry, or ``None`` if the whole chain holds."""
    expected_seq, previous = start_seq, start_hash
    for row in rows:
        if row.seq != expected_seq:
            missing = "deleted or reordered entries" if row.seq > expected_seq else "reordered"
            return Break(expected_seq, f"sequence jumps to {row.seq} ({missing})")
        if row.prev_hash != previous:
            return Break(row.seq, "does not follow the previous entry (edited, deleted or moved)")
        if row.fields is not None and link(row.prev_hash, row.fields) != row.hash:
            return Break(row.seq, "content does not match its hash (edited)")
        previous, expected_seq = row.hash, expected_seq + 1
    return None
