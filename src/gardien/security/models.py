"""Security tables shared by every instance."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gardien.storage.base import Base


class RateLimitBucket(Base):
    """A fixed-window counter; the key is a keyed hash, never the raw IP or e-mail."""

    __tablename__ = "rate_limit_bucket"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[dt.datetime]
    count: Mapped[int] = mapped_column(Integer)
