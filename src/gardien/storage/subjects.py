"""The contract every store of personal data honours for data-subject requests.

A *subject provider* answers, for one person identified by what Gardien knows of them (an
e-mail, a phone, a consent id, an analytics visitor id), the six operations the rights
workflow needs: find, export, rectify, erase, restrict, object. Each domain that stores
personal data registers one; ``uncovered_tables`` is what the coverage test checks, so a new
table marked ``info={"personal_data": True}`` without a provider fails the build.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from sqlalchemy import MetaData
from sqlalchemy.orm import Session

from gardien.storage.base import PERSONAL_DATA

JsonScalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class SubjectIdentity:
    """Who a request is about; at least one identifier is set.

    ``ip_address`` with ``period`` (UTC, start inclusive, end exclusive) identifies the
    requests a person made from an address during a time they say they used it: an address is
    shared and reassigned, so without a period it matches whoever used it at any time.
    ``period`` is not an identifier by itself; a store keeping times may use it to narrow its
    answer.
    """

    email: str | None = None
    phone: str | None = None
    consent_id: str | None = None
    visitor_id: str | None = None
    ip_address: str | None = None
    period: tuple[dt.datetime, dt.datetime] | None = None

    def __post_init__(self) -> None:
        identifiers = (self.email, self.phone, self.consent_id, self.visitor_id, self.ip_address)
        if not any(identifiers):
            raise ValueError("a subject identity needs at least one identifier")
        if self.period is not None:
            start, end = self.period
            if start.tzinfo is None or end.tzinfo is None:
                raise ValueError("a subject identity's period needs timezone-aware datetimes")
            if end <= start:
                raise ValueError("a subject identity's period must end after it starts")

    def __repr__(self) -> str:  # never print the identifiers themselves
        names = ("email", "phone", "consent_id", "visitor_id", "ip_address", "period")
        present = [n for n in names if getattr(self, n)]
        return f"SubjectIdentity({', '.join(present)})"


@dataclass(frozen=True, slots=True)
class FoundRecords:
    """What a provider holds about a subject: counts per activity, no values.

    ``note`` is what the answer to the person must add about this store, e.g. that its
    records cannot be tied to them with what they gave (GDPR Art. 11(2)).
    """

    provider: str
    counts: Mapping[str, int] = field(default_factory=dict)
    note: str | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class ErasureOutcome:
    provider: str
    erased: int
    kept: int = 0
    kept_reason: str | None = None


@runtime_checkable
class SubjectProvider(Protocol):
    """One domain's answer to data-subject requests. Methods flush, never commit."""

    name: str
    tables: frozenset[str]

    def find(self, session: Session, subject: SubjectIdentity) -> FoundRecords: ...

    def export(
        self, session: Session, subject: SubjectIdentity
    ) -> dict[str, list[dict[str, JsonScalar]]]: ...

    def rectify(
        self, session: Session, subject: SubjectIdentity, corrections: Mapping[str, str]
    ) -> int: ...

    def erase(self, session: Session, subject: SubjectIdentity) -> ErasureOutcome: ...

    def restrict(self, session: Session, subject: SubjectIdentity, restricted: bool) -> int: ...

    def object(self, session: Session, subject: SubjectIdentity, activity_id: str) -> int: ...


@runtime_checkable
class ConsentWithdrawal(Protocol):
    """A store holding data processed on the person's consent: ``withdraw`` stops that
    processing from now on (GDPR Art. 7(3)) and returns how many consents it withdrew.
    Optional: a store with no consent-based processing does not implement it."""

    name: str

    def withdraw(self, session: Session, subject: SubjectIdentity, now: dt.datetime) -> int: ...


class ProviderRegistry:
    """The providers of one running Gardien, in registration order."""

    def __init__(self, providers: Iterable[SubjectProvider] = ()) -> None:
        self._providers: dict[str, SubjectProvider] = {}
        for provider in providers:
            self.register(provider)

    def register(self, provider: SubjectProvider) -> None:
        if provider.name in self._providers:
            raise ValueError(f"provider {provider.name!r} is registered twice")
        self._providers[provider.name] = provider

    @property
    def providers(self) -> list[SubjectProvider]:
        return list(self._providers.values())

    def covered_tables(self) -> frozenset[str]:
        return frozenset().union(*(p.tables for p in self._providers.values()))

    def uncovered_tables(self, metadata: MetaData) -> list[str]:
        """Tables marked as holding personal data that no provider answers for."""
        covered = self.covered_tables()
        return sorted(
            name
            for name, table in metadata.tables.items()
            if table.info.get(PERSONAL_DATA) and name not in covered
        )
