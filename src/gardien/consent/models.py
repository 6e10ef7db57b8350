"""Consent tables: the hash-chained proof-of-consent records and the archived banner revisions.

A record is what one decision was, as the server received it: who (the visitor's random consent
id, encrypted, found again through its blind index), what (every category and service, granted
or denied), how (action, layer, control), on what information (banner revision and content
hash, policy version in force, language, page) and until when. No IP address is kept. Records
are appended in order and chained (``storage.chain``): each holds the hash of the previous one,
so an edit, a deletion or a reordering is caught by ``gardien consent verify``; a lawful purge or
an erasure empties a record into a tombstone that keeps its hashes.
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import JSON, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from gardien.security.crypto import BlindIndex, Encrypted
from gardien.storage.base import PERSONAL_DATA, Base

CONSENT_ID_CONTEXT = "consent_record.consent_id"
CONSENT_INDEX_CONTEXT = "consent_record.consent_id_index"


class ConsentRecord(Base):
    __tablename__ = "consent_record"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(32), unique=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(index=True)
    consent_id: Mapped[str | None] = mapped_column(Encrypted(CONSENT_ID_CONTEXT))
    consent_id_index: Mapped[str | None] = mapped_column(
        BlindIndex(CONSENT_INDEX_CONTEXT, source="consent_id"), index=True
    )
    action: Mapped[str | None] = mapped_column(String(20), index=True)
    layer: Mapped[str | None] = mapped_column(String(10))
    control: Mapped[str | None] = mapped_column(String(10))
    choices: Mapped[dict[str, object] | None] = mapped_column(JSON)
    """``{"categories": {id: bool}, "services": {id: bool}}``; strictly necessary as granted."""
    revision: Mapped[int | None] = mapped_column(Integer, index=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    policy_version: Mapped[int | None] = mapped_column(Integer)
    language: Mapped[str | None] = mapped_column(String(8))
    page: Mapped[str | None] = mapped_column(String(300))
    user_agent: Mapped[str | None] = mapped_column(String(120))
    client_time: Mapped[str | None] = mapped_column(String(40))
    gpc: Mapped[bool | None] = mapped_column()
    dnt: Mapped[bool | None] = mapped_column()
    expires_at: Mapped[dt.datetime | None] = mapped_column()
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    purged: Mapped[bool] = mapped_column(default=False)


class ConsentRevision(Base):
    """One version of everything the banner and panel show, in every language, archived so a
    record proves exactly what the visitor saw. A new revision is made whenever the hash of
    the categories, services, cookies and texts changes."""

    __tablename__ = "consent_revision"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column()
    content: Mapped[str] = mapped_column(Text)
    """The canonical JSON the hash covers (every language's texts, categories and cookies)."""
    changes: Mapped[dict[str, object] | None] = mapped_column(JSON)
    """What changed since the previous revision (ids, per kind), rendered per language."""


consent_record: Table = cast(Table, ConsentRecord.__table__)
