"""Published policy versions: what the policy said, when, and from which register."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gardien.storage.base import Base


class PolicyVersion(Base):
    """One published policy; ``documents`` keeps the exact text in every language."""

    __tablename__ = "policy_version"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    effective_at: Mapped[dt.datetime] = mapped_column(index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    register_snapshot: Mapped[str] = mapped_column(Text)
    documents: Mapped[str] = mapped_column(Text)
    published_by: Mapped[str] = mapped_column(String(40))
