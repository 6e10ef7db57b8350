"""Purge receipts: the evidence that retention ran (counts only, never personal data)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gardien.storage.base import Base


class PurgeReceipt(Base):
    __tablename__ = "purge_receipt"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    activity: Mapped[str] = mapped_column(String(63), index=True)
    store: Mapped[str] = mapped_column(String(63))
    action: Mapped[str] = mapped_column(String(16))
    period: Mapped[str] = mapped_column(String(40))
    trigger: Mapped[str] = mapped_column(String(32))
    cutoff: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(20))
    rows_affected: Mapped[int] = mapped_column(Integer)
    chunks: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime]
    duration_ms: Mapped[int] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text, default=None)
