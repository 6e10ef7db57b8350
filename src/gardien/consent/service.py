"""Consent operations shared by the routes, the admin and the CLI."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from gardien.consent import content as banner
from gardien.consent.models import (
    CONSENT_INDEX_CONTEXT,
    ConsentRecord,
    ConsentRevision,
    consent_record,
)
from gardien.consent.records import chained_fields, extend_chain
from gardien.consent.revisions import Current, ensure_current
from gardien.deps import State
from gardien.security.crypto import blind_lookups
from gardien.storage.database import unit_of_work

CACHE_KEY = "consent.current"


def prepare(state: State) -> Current:
    """Archive the register's banner content as a revision if it is new, and cache it; run at
    start-up (and lazily by the first request that needs it)."""
    with unit_of_work(state.sessions) as session:
        current = ensure_current(session, state.register, state.clock.now())
    state.caches[CACHE_KEY] = current
    state.writer.chain(consent_record, extend_chain)
    return current


def current_revision(state: State) -> Current:
    current = state.caches.get(CACHE_KEY)
    if not isinstance(current, Current):
        current = prepare(state)
    return current


def config(state: State, language: str, gpc: bool) -> dict[str, Any]:
    """The banner configuration for one language (docs/consent.md)."""
    current = current_revision(state)
    document = current.configs.get(language)
    if document is None:
        lang = current.document["languages"][language]
        lifetime = current.lifetime
        period = banner_period(lifetime)
        document = {
            "revision": current.number,
            "hash": current.content_hash,
            "language": language,
            "lifetime": period,
            "policy_url": f"/privacy?lang={language}",
            "history_url": "/api/consent/history/",
            "records_url": "/api/consent/records",
            "texts": lang["texts"],
            "changes": banner.describe_changes(current.changes, current.document, language),
            "categories": lang["categories"],
        }
        current.configs[language] = document
    return {**document, "self_service": banner.self_service_texts(language), "gpc": gpc}


def banner_period(lifetime: str | None) -> dict[str, int]:
    from gardien.register.durations import parse_period

    if not lifetime:
        return {"years": 0, "months": 6, "days": 0}
    delta = parse_period(lifetime).delta
    return {"years": delta.years, "months": delta.months, "days": delta.days}


def _mine(consent_id: str) -> Any:
    return ConsentRecord.consent_id_index.in_(blind_lookups(consent_id, CONSENT_INDEX_CONTEXT))


def history(session: Session, consent_id: str) -> list[dict[str, Any]]:
    """Every record of one consent id, oldest first, as the visitor may download them."""
    records = session.scalars(
        select(ConsentRecord)
        .where(_mine(consent_id), ConsentRecord.purged.is_(False))
        .order_by(ConsentRecord.seq)
    )
    return [public(record) for record in records]


def public(record: ConsentRecord) -> dict[str, Any]:
    fields = chained_fields(record)
    fields["hash"] = record.hash
    return fields


@dataclass(frozen=True)
class Filters:
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    action: str | None = None
    revision: int | None = None
    category: str | None = None
    consent_id: str | None = None


def _filtered(filters: Filters) -> Select[tuple[ConsentRecord]]:
    query = select(ConsentRecord).where(ConsentRecord.purged.is_(False))
    if filters.start:
        query = query.where(ConsentRecord.occurred_at >= filters.start)
    if filters.end:
        query = query.where(ConsentRecord.occurred_at < filters.end)
    if filters.action:
        query = query.where(ConsentRecord.action == filters.action)
    if filters.revision:
        query = query.where(ConsentRecord.revision == filters.revision)
    if filters.consent_id:
        query = query.where(_mine(filters.consent_id))
    return query.order_by(ConsentRecord.seq)


def records(session: Session, filters: Filters) -> Iterable[dict[str, Any]]:
    for record in session.scalars(_filtered(filters).execution_options(yield_per=1000)):
        fields = public(record)
        if filters.category:
            categories = (fields.get("choices") or {}).get("categories", {})
            if filters.category not in categories:
                continue
        yield fields


EXPORT_COLUMNS = [
    "seq",
    "event_id",
    "occurred_at",
    "consent_id",
    "action",
    "layer",
    "control",
    "categories",
    "services",
    "revision",
    "content_hash",
    "policy_version",
    "language",
    "page",
    "user_agent",
    "client_time",
    "gpc",
    "dnt",
    "expires_at",
    "hash",
]


def export(rows: Iterable[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(list(rows), ensure_ascii=False, indent=1)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, EXPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        choices = row.get("choices") or {}
        writer.writerow(
            {
                **row,
                "categories": _flags(choices.get("categories", {})),
                "services": _flags(choices.get("services", {})),
            }
        )
    return buffer.getvalue()


def _flags(values: dict[str, bool]) -> str:
    return " ".join(f"{k}={int(bool(v))}" for k, v in sorted(values.items()))


@dataclass(frozen=True)
class Stats:
    per_day: list[tuple[str, dict[str, int]]]
    per_category: list[tuple[int, str, int, int]]
    """(revision, category, granted, decisions)."""
    revisions: list[ConsentRevision]
    total: int


def stats(session: Session, since: dt.datetime) -> Stats:
    """Decisions per day by action, and acceptance per category and revision."""
    per_day: dict[str, dict[str, int]] = {}
    day = func.date(ConsentRecord.occurred_at)
    for when, action, count in session.execute(
        select(day, ConsentRecord.action, func.count())
        .where(ConsentRecord.occurred_at >= since, ConsentRecord.purged.is_(False))
        .group_by(day, ConsentRecord.action)
        .order_by(day)
    ):
        per_day.setdefault(str(when), {})[str(action)] = int(count)
    acceptance: dict[tuple[int, str], list[int]] = {}
    for revision, choices in session.execute(
        select(ConsentRecord.revision, ConsentRecord.choices).where(
            ConsentRecord.occurred_at >= since,
            ConsentRecord.purged.is_(False),
            ConsentRecord.action != "withdraw",
        )
    ):
        for category, granted in ((choices or {}).get("categories") or {}).items():
            tally = acceptance.setdefault((int(revision or 0), str(category)), [0, 0])
            tally[0] += 1 if granted else 0
            tally[1] += 1
    revisions = list(session.scalars(select(ConsentRevision).order_by(ConsentRevision.number)))
    return Stats(
        per_day=sorted(per_day.items()),
        per_category=[(r, c, g, n) for (r, c), (g, n) in sorted(acceptance.items())],
        revisions=revisions,
        total=sum(sum(v.values()) for v in per_day.values()),
    )
