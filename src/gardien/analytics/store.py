"""Retention and data-subject requests for the raw audience-measurement hits.

Raw hits are deleted once the register's period is over (six months in the seed), in chunks;
the same pass forgets the daily salts of past days. The daily rollups are not touched: they
hold aggregates only and outlive the raw data (``rollups.py``). An erasure marks the days of
the erased hits dirty, so their rollups are recomputed from what is left. A person is found by
the visitor id the tracker or the cookieless hash gave them, by the user id a consenting site
sent (given as the identity's ``visitor_id`` too), or by their consent id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import ColumnElement, delete, func, select, union
from sqlalchemy.orm import Session

from gardien.analytics.blocks import (
    OBJECTION,
    RESTRICTION,
    WITHDRAWAL,
    add_blocks,
    block_keys,
    block_list,
    remove_blocks,
)
from gardien.analytics.models import (
    CONSENT_ID_INDEX_CONTEXT,
    USER_ID_INDEX_CONTEXT,
    AnalyticsHit,
)
from gardien.analytics.privacy import forget_old_salts
from gardien.analytics.rollups import mark_dirty
from gardien.retention.stores import DeletedWhenOld
from gardien.security.crypto import blind_lookups
from gardien.storage.subjects import ErasureOutcome, FoundRecords, JsonScalar, SubjectIdentity

ACTIVITY = "audience_measurement"
STORE = "analytics_hit"
EXPORTED = (
    "received_at",
    "site_id",
    "visitor_id",
    "network",
    "user_agent",
    "action",
    "url",
    "action_name",
    "referrer",
    "resolution",
    "language",
    "event_category",
    "event_action",
    "event_name",
    "event_value",
    "search_keyword",
    "search_category",
    "search_count",
    "user_id",
    "consent_id",
)


class AnalyticsHitStore(DeletedWhenOld):
    """Raw hits past the register's period are deleted; old daily salts go with them."""

    store_id = STORE
    noun = "analytics hits"
    columns = (AnalyticsHit.id, AnalyticsHit.received_at)

    def after_purge(self, session: Session) -> None:
        # The last, empty chunk: the salts of days before yesterday are no longer needed.
        forget_old_salts(session, dt.datetime.now(dt.UTC).date())


class AnalyticsProvider:
    """Finds, exports and erases a visitor's hits by visitor id, user id or consent id."""

    name = ACTIVITY
    tables = frozenset({STORE, "analytics_block"})

    @staticmethod
    def _mine(subject: SubjectIdentity) -> ColumnElement[bool] | None:
        conditions: list[ColumnElement[bool]] = []
        if subject.visitor_id:
            value = subject.visitor_id.strip()
            conditions.append(AnalyticsHit.visitor_id == value.lower())
            conditions.append(
                AnalyticsHit.user_id_index.in_(blind_lookups(value, USER_ID_INDEX_CONTEXT))
            )
        if subject.consent_id:
            lookups = blind_lookups(subject.consent_id.strip().lower(), CONSENT_ID_INDEX_CONTEXT)
            conditions.append(AnalyticsHit.consent_id_index.in_(lookups))
        if not conditions:
            return None
        if subject.period is not None:
            start, end = subject.period
            within = (AnalyticsHit.received_at >= start) & (AnalyticsHit.received_at < end)
            conditions = [condition & within for condition in conditions]
        # One indexed lookup per identifier, not one OR: once SQLite has statistics it reads
        # the mostly-NULL user_id_index as matching every row and scans the table for an OR.
        ids = union(*(select(AnalyticsHit.id).where(condition) for condition in conditions))
        return AnalyticsHit.id.in_(select(ids.subquery().c.id))

    def find(self, session: Session, subject: SubjectIdentity) -> FoundRecords:
        mine = self._mine(subject)
        if mine is None:
            return FoundRecords(
                self.name,
                {ACTIVITY: 0},
                note=(
                    "Audience measurement keeps no name, e-mail or IP address: hits can be "
                    "tied to a person only through a visitor id, a user id or a consent id "
                    "(Art. 11(2))."
                ),
            )
        count = session.scalar(select(func.count()).select_from(AnalyticsHit).where(mine))
        return FoundRecords(self.name, {ACTIVITY: int(count or 0)})

    def export(
        self, session: Session, subject: SubjectIdentity
    ) -> dict[str, list[dict[str, JsonScalar]]]:
        mine = self._mine(subject)
        if mine is None:
            return {ACTIVITY: []}
        rows: list[dict[str, JsonScalar]] = []
        for hit in session.scalars(select(AnalyticsHit).where(mine).order_by(AnalyticsHit.id)):
            row: dict[str, JsonScalar] = {}
            for name in EXPORTED:
                value = getattr(hit, name)
                row[name] = value.isoformat() if isinstance(value, dt.datetime) else value
            rows.append(row)
        return {ACTIVITY: rows}

    def erase(self, session: Session, subject: SubjectIdentity) -> ErasureOutcome:
        mine = self._mine(subject)
        if mine is None:
            return ErasureOutcome(self.name, erased=0)
        # The rollups of the days those hits were on are recomputed by the next refresh
        # (rollups.py; days past the raw-data retention stay frozen).
        days = {
            (site, when.date())
            for site, when in session.execute(
                select(AnalyticsHit.site_id, AnalyticsHit.received_at).where(mine)
            )
        }
        mark_dirty(session, days, dt.datetime.now(dt.UTC))
        result = session.execute(delete(AnalyticsHit).where(mine))
        return ErasureOutcome(self.name, erased=int(getattr(result, "rowcount", 0) or 0))

    def rectify(
        self, session: Session, subject: SubjectIdentity, corrections: Mapping[str, str]
    ) -> int:
        """Nothing to rectify: a hit records what a browser reported, when."""
        return 0

    def restrict(self, session: Session, subject: SubjectIdentity, restricted: bool) -> int:
        """Stop (or, when lifted, resume) storing the person's further hits: a block on each
        identifier they gave, which every instance honours within ``blocks.REFRESH`` seconds.
        Stored hits are kept as they are (storage is what a restriction still allows)."""
        keys = block_keys(subject)
        if restricted:
            count = add_blocks(session, keys, RESTRICTION, dt.datetime.now(dt.UTC))
        else:
            count = remove_blocks(session, keys, RESTRICTION)
        block_list.forget(session.get_bind())
        return count

    def withdraw(self, session: Session, subject: SubjectIdentity, now: dt.datetime) -> int:
        """Consent withdrawn (Art. 7(3)): hits sent under the person's consent id are no
        longer stored, whatever the cookie still says, on every instance within
        ``blocks.REFRESH`` seconds. Hits already stored are kept until retention."""
        keys = [k for k in block_keys(subject) if k.startswith("consent:")]
        count = add_blocks(session, keys, WITHDRAWAL, now)
        block_list.forget(session.get_bind())
        return count

    def object(self, session: Session, subject: SubjectIdentity, activity_id: str) -> int:
        """An upheld objection to audience measurement stops the person's further hits, like
        the opt-out cookie but for every browser they are known by."""
        if activity_id != ACTIVITY:
            return 0
        count = add_blocks(session, block_keys(subject), OBJECTION, dt.datetime.now(dt.UTC))
        block_list.forget(session.get_bind())
        return count
