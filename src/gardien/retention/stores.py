"""The contract a domain implements so retention can purge one of its stores.

A store names itself with the id the register's ``activities[].storage`` uses, says which
retention triggers it can honour, and purges in chunks: ``purge_chunk`` deletes or anonymises
at most ``limit`` rows whose trigger time is before ``cutoff`` and returns how many it touched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from gardien.register.schema import Register, RetentionAction, RetentionTrigger


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


class Sweep(Protocol):
    """Working data with a short limit of its own, which no activity's period drives (a
    one-time download, an identity document, a request never confirmed): swept at every
    retention run, in chunks, with a receipt under ``activity``."""

    sweep_id: str
    activity: str
    trigger: str

    def limit(self, register: Register) -> dt.timedelta:
        """How long the data may be kept, from the register's settings."""
        ...

    def count_due(self, session: Session, cutoff: dt.datetime, now: dt.datetime) -> int:
        """How many rows a sweep would delete now (``retention run --dry-run``)."""
        ...

    def sweep_chunk(
        self, session: Session, cutoff: dt.datetime, now: dt.datetime, limit: int
    ) -> int: ...


class StoreRegistry:
    def __init__(self, stores: Iterable[RetentionStore] = (), sweeps: Iterable[Sweep] = ()) -> None:
        self._stores: dict[str, RetentionStore] = {}
        for store in stores:
            self.register(store)
        self.sweeps: list[Sweep] = list(sweeps)

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


class DeletedWhenOld:
    """A store whose rows are simply deleted once their collection time is past the period:
    one table, one key column, one time column. Subclasses name them; ``after_purge`` runs
    once, with the last (empty) chunk."""

    store_id: str
    noun: str
    """What the rows are, for the refusal of another action ("analytics hits")."""
    triggers = frozenset({RetentionTrigger.collected})
    actions = frozenset({RetentionAction.delete})
    columns: tuple[InstrumentedAttribute[Any], InstrumentedAttribute[Any]]
    """The key and the collection time (a tuple: a mapped attribute on a plain class would act
    as a descriptor on the instance)."""

    @property
    def key(self) -> InstrumentedAttribute[Any]:
        return self.columns[0]

    @property
    def at(self) -> InstrumentedAttribute[Any]:
        return self.columns[1]

    def oldest(self, session: Session, trigger: RetentionTrigger) -> dt.datetime | None:
        return session.scalar(select(func.min(self.at)))

    def count_due(self, session: Session, trigger: RetentionTrigger, cutoff: dt.datetime) -> int:
        return int(session.scalar(select(func.count()).where(self.at < cutoff)) or 0)

    def purge_chunk(
        self,
        session: Session,
        trigger: RetentionTrigger,
        action: RetentionAction,
        cutoff: dt.datetime,
        limit: int,
    ) -> int:
        if action is not RetentionAction.delete:
            raise ValueError(f"{self.noun} cannot {action}")
        keys = due_keys(session, self.key, self.at, cutoff, limit)
        if keys:
            session.execute(delete(self.key.class_).where(self.key.in_(keys)))
        else:
            self.after_purge(session)
        return len(keys)

    def after_purge(self, session: Session) -> None:
        """Nothing by default."""
