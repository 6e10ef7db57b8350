"""Re-encrypting and re-indexing rows after a key rotation, in chunks, while Gardien runs.

Rows are read raw (ciphertext bytes, no automatic decryption), moved to the active key one
chunk per transaction, and written back; a row already under the active key is left alone, so
a second pass (or one that resumes after a crash) only finishes what is left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import LargeBinary, MetaData, String, Table, select, type_coerce, update
from sqlalchemy.orm import Session, sessionmaker

from gardien.security.crypto import NORMALISERS, BlindIndex, Encrypted, KeyRing

Progress = Callable[[str, int], None]


def _tables(metadata: MetaData, kind: type[Any]) -> list[tuple[Table, list[Any]]]:
    found = []
    for table in metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, kind)]
        if columns:
            found.append((table, columns))
    return found


def reencrypt(
    sessions: sessionmaker[Session],
    ring: KeyRing,
    metadata: MetaData,
    chunk: int = 500,
    progress: Progress | None = None,
) -> int:
    """Move every encrypted value to the active data key; returns how many rows changed."""
    active = ring.active_data
    changed = 0
    for table, columns in _tables(metadata, Encrypted):
        [key] = list(table.primary_key.columns)
        last: Any = None
        while True:
            with sessions.begin() as session:
                query = select(key, *(type_coerce(c, LargeBinary) for c in columns)).order_by(key)
                if last is not None:
                    query = query.where(key > last)
                rows = session.execute(query.limit(chunk)).all()
                for row in rows:
                    values: dict[str, bytes] = {}
                    for column, blob in zip(columns, row[1:], strict=True):
                        if blob is None or KeyRing.key_id_of(bytes(blob)) == active:
                            continue
                        context = column.type.context
                        values[column.name] = ring.encrypt(
                            ring.decrypt(bytes(blob), context), context
                        )
                    if values:
                        session.execute(
                            update(table)
                            .where(key == row[0])
                            .values(
                                {name: type_coerce(v, LargeBinary) for name, v in values.items()}
                            )
                        )
                        changed += 1
            if rows:
                last = rows[-1][0]
                if progress:
                    progress(table.name, changed)
            if len(rows) < chunk:
                break
    return changed


def reindex(
    sessions: sessionmaker[Session],
    ring: KeyRing,
    metadata: MetaData,
    chunk: int = 500,
    progress: Progress | None = None,
) -> int:
    """Recompute every blind index under the active index key."""
    active = ring.active_index
    changed = 0
    for table, columns in _tables(metadata, BlindIndex):
        [key] = list(table.primary_key.columns)
        sources = [table.c[c.type.source] for c in columns]
        last: Any = None
        while True:
            with sessions.begin() as session:
                query = select(
                    key,
                    *(type_coerce(c, String) for c in columns),
                    *(type_coerce(s, LargeBinary) for s in sources),
                ).order_by(key)
                if last is not None:
                    query = query.where(key > last)
                rows = session.execute(query.limit(chunk)).all()
                for row in rows:
                    values = {}
                    for i, column in enumerate(columns):
                        current, blob = row[1 + i], row[1 + len(columns) + i]
                        if blob is None or (current or "").startswith(f"{active}:"):
                            continue
                        source = sources[i]
                        plain = ring.decrypt(bytes(blob), source.type.context)
                        normalise = NORMALISERS[column.type.normaliser]
                        values[column.name] = ring.index(normalise(plain), column.type.context)
                    if values:
                        session.execute(update(table).where(key == row[0]).values(values))
                        changed += 1
            if rows:
                last = rows[-1][0]
                if progress:
                    progress(table.name, changed)
            if len(rows) < chunk:
                break
    return changed
