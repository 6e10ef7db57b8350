"""The raw audience-measurement tables: one row per tracked action, and the daily salts.

A hit holds no raw IP: only the anonymised network (e.g. ``192.168.0.0``) and a visitor id
derived from a salt that exists for one day. The user id and consent id a consenting visitor's
tracker sends are personal: they are encrypted, and found again through blind indexes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    Float,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
)
from sqlalchemy.orm import Mapped, mapped_column

from gardien.security.crypto import BlindIndex, Encrypted
from gardien.storage.base import PERSONAL_DATA, Base

USER_ID_CONTEXT = "analytics_hit.user_id"
USER_ID_INDEX_CONTEXT = "analytics_hit.user_id_index"
CONSENT_ID_CONTEXT = "analytics_hit.consent_id"
CONSENT_ID_INDEX_CONTEXT = "analytics_hit.consent_id_index"
BLOCK_KEY_CONTEXT = "analytics_block.key"
BLOCK_KEY_INDEX_CONTEXT = "analytics_block.key_index"

URL_LIMIT = 2000
TEXT_LIMIT = 300
"""Longest stored user agent, action name, event field or search keyword."""


class AnalyticsHit(Base):
    """One action a visitor's tracker reported: a page view, an event, a site search, an
    outlink or a download."""

    __tablename__ = "analytics_hit"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(index=True)
    visitor_id: Mapped[str] = mapped_column(String(16), index=True)
    """16 hex characters: a keyed hash of (IP, user agent, site) under the day's salt, or the
    tracker's own id when the visitor consented."""
    network: Mapped[str | None] = mapped_column(String(45))
    """The anonymised address (IPv4 /16, IPv6 /48 by default): never the raw IP."""
    user_agent: Mapped[str | None] = mapped_column(String(TEXT_LIMIT))
    action: Mapped[str] = mapped_column(String(16))
    """``pageview``, ``event``, ``search``, ``outlink``, ``download``, ``ping`` (a heartbeat
    that only extends the visit) or ``other`` (a custom action, ``ca=1``)."""
    page_view_id: Mapped[str | None] = mapped_column(String(6))
    """``pv_id``: ties events and pings to the page view they happened on."""
    url: Mapped[str | None] = mapped_column(String(URL_LIMIT))
    action_name: Mapped[str | None] = mapped_column(String(TEXT_LIMIT))
    referrer: Mapped[str | None] = mapped_column(String(URL_LIMIT))
    resolution: Mapped[str | None] = mapped_column(String(20))
    language: Mapped[str | None] = mapped_column(String(64))
    event_category: Mapped[str | None] = mapped_column(String(TEXT_LIMIT))
    event_action: Mapped[str | None] = mapped_column(String(TEXT_LIMIT))
    event_name: Mapped[str | None] = mapped_column(String(TEXT_LIMIT))
    event_value: Mapped[float | None] = mapped_column(Float)
    search_keyword: Mapped[str | None] = mapped_column(String(TEXT_LIMIT))
    search_category: Mapped[str | None] = mapped_column(String(TEXT_LIMIT))
    search_count: Mapped[int | None] = mapped_column(Integer)
    new_visit: Mapped[int] = mapped_column(SmallInteger, default=0)
    consented: Mapped[int] = mapped_column(SmallInteger, default=0)
    """1 when the audience-measurement category was granted: only then are the fields below
    and the tracker's own visitor id kept."""
    dimensions: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    user_id: Mapped[str | None] = mapped_column(Encrypted(USER_ID_CONTEXT))
    user_id_index: Mapped[str | None] = mapped_column(
        BlindIndex(USER_ID_INDEX_CONTEXT, source="user_id"), index=True
    )
    consent_id: Mapped[str | None] = mapped_column(Encrypted(CONSENT_ID_CONTEXT))
    consent_id_index: Mapped[str | None] = mapped_column(
        BlindIndex(CONSENT_ID_INDEX_CONTEXT, source="consent_id"), index=True
    )


class AnalyticsBlock(Base):
    """A person whose further hits must not be stored: a restriction (Art. 18) or an upheld
    objection (Art. 21) recorded by the rights workflow. ``key`` is the identifier it applies
    to, prefixed by its kind: ``visitor:``, ``user:`` or ``consent:``."""

    __tablename__ = "analytics_block"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(Encrypted(BLOCK_KEY_CONTEXT))
    key_index: Mapped[str] = mapped_column(
        BlindIndex(BLOCK_KEY_INDEX_CONTEXT, source="key"), index=True
    )
    reason: Mapped[str] = mapped_column(String(16))
    """``restriction``, ``objection`` or ``withdrawal``."""
    created_at: Mapped[dt.datetime] = mapped_column()
    """For a withdrawal, the latest one: consents given after it are honoured."""


class AnalyticsSalt(Base):
    """The secret of one day's cookieless visitor ids, deleted once that day is over, so
    nobody (Gardien included) can link a visitor's days. Never exported or backed up."""

    __tablename__ = "analytics_salt"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))


LABEL_LIMIT = URL_LIMIT
"""Longest label of a rollup row (a page URL, an event's category / action / name...)."""


class AnalyticsDay(Base):
    """One site's totals for one UTC day, computed from the raw hits and kept after them.

    Aggregates only: no visitor id, address or user id, so they outlive the raw data."""

    __tablename__ = "analytics_day"

    site_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    visits: Mapped[int] = mapped_column(Integer)
    visitors: Mapped[int] = mapped_column(Integer)
    """Distinct visitor ids of the day (a cookieless id lasts one day)."""
    pageviews: Mapped[int] = mapped_column(Integer)
    bounces: Mapped[int] = mapped_column(Integer)
    time_on_site: Mapped[int] = mapped_column(BigInteger)
    """Seconds, summed over the day's visits."""
    events: Mapped[int] = mapped_column(Integer)
    searches: Mapped[int] = mapped_column(Integer)
    outlinks: Mapped[int] = mapped_column(Integer)
    downloads: Mapped[int] = mapped_column(Integer)
    hits: Mapped[int] = mapped_column(Integer)
    """Raw rows the day was computed from (pings included)."""
    computed_at: Mapped[dt.datetime] = mapped_column()


class AnalyticsDayRow(Base):
    """One line of one report table (``reports.TABLES``) for one site and day."""

    __tablename__ = "analytics_day_row"
    __table_args__ = (Index("ix_analytics_day_row_site_day", "site_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(Integer)
    day: Mapped[dt.date] = mapped_column(Date)
    report: Mapped[str] = mapped_column(String(24))
    label: Mapped[str] = mapped_column(String(LABEL_LIMIT))
    visits: Mapped[int] = mapped_column(Integer)
    actions: Mapped[int] = mapped_column(Integer)


class AnalyticsDirtyDay(Base):
    """A day whose raw hits changed other than by new hits (a data-subject erasure): the next
    rollup refresh recomputes it."""

    __tablename__ = "analytics_dirty_day"

    site_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    marked_at: Mapped[dt.datetime] = mapped_column()


class AnalyticsRollupState(Base):
    """How far the rollups have read the raw hits (one row, ``name = "hits"``)."""

    __tablename__ = "analytics_rollup_state"

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    watermark: Mapped[int] = mapped_column(BigInteger)
    """The highest hit id read by the last refresh."""
    previous_watermark: Mapped[int] = mapped_column(BigInteger)
    """The one read by the refresh before: hits between the two are counted again."""
    window_count: Mapped[int] = mapped_column(BigInteger)
    """Hits seen between the two watermarks; a different count later means a late commit."""
    refreshed_at: Mapped[dt.datetime | None] = mapped_column()
    """Hits committed before this instant are in the rollups."""


analytics_hit: Table = cast(Table, AnalyticsHit.__table__)
analytics_block: Table = cast(Table, AnalyticsBlock.__table__)
analytics_salt: Table = cast(Table, AnalyticsSalt.__table__)
analytics_day: Table = cast(Table, AnalyticsDay.__table__)
analytics_day_row: Table = cast(Table, AnalyticsDayRow.__table__)
