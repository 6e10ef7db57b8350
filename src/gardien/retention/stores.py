"""The contract a domain implements so retention can purge one of its stores.

A store names itself with the id the register's ``activities[].storage`` uses, says which
retention triggers it can honour, and purges in chunks: ``purge_chunk`` deletes or anonymises
at most ``limit`` rows whose trigger time is before ``cutoff`` and returns how many it touched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from gardien.register.schema import RetentionAction, RetentionTrigger


class RetentionStore(Protocol):
    store_id: str
    triggers: frozenset[RetentionTrigger]
    actions: frozenset[RetentionAction]

    def oldest(self, session: Session, trigger: RetentionTrigger) -> dt.datetime | None:
        """Trigger time of the oldest record still stored in its active form."""
        ...

    def count_due(
        self, session: Session, trigger: RetentionTrigger, cutoff: dt.datetime
    ) -> int: ...

    def purge_chunk(
        self,
        session: Session,
        trigger: RetentionTrigger,
        action: RetentionAction,
        cutoff: dt.datetime,
        limit: int,
    ) -> int: ...


class StoreRegistry:
    def __init__(self, stores: Iterable[RetentionStore] = ()) -> None:
        self._stores: dict[str, RetentionStore] = {}
        for store in stores:
            self.register(store)

    def register(self, store: RetentionStore) -> None:
        if store.store_id in self._stores:
            raise ValueError(f"store {store.store_id!r} is registered twice")
        self._stores[store.store_id] = store

    def get(self, store_id: str) -> RetentionStore | None:
        return self._stores.get(store_id)

    def ids(self) -> frozenset[str]:
        return frozenset(self._stores)


def due_keys(
    session: Session,
    key: InstrumentedAttribute[Any],
    at: InstrumentedAttribute[Any],
    cutoff: dt.datetime,
    limit: int,
    *conditions: ColumnElement[bool],
) -> list[Any]:
    """The keys of at most ``limit`` rows whose ``at`` is before ``cutoff`` (and that meet
    ``conditions``), lowest key first: one purge chunk, the same way for every store."""
    return list(
        session.scalars(select(key).where(at < cutoff, *conditions).order_by(key).limit(limit))
    )
