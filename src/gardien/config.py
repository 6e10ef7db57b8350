"""Gardien's settings, read from ``GARDIEN_*`` environment variables.

Built once by the entry point (``create_app`` or the CLI) and passed down; nothing reads the
environment at import time.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Durability(StrEnum):
    normal = "normal"
    full = "full"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GARDIEN_", extra="ignore", frozen=True, populate_by_name=True
    )

    data_dir: Path = Path("var")
    database_url: str | None = None
    register_file: Path = Field(
        default=Path("examples/seed-site/register.yaml"), validation_alias="GARDIEN_REGISTER"
    )
    keys_file: Path | None = None
    smtp_url: str | None = None
    redis_url: str | None = None
    """Public write budgets counted in Redis (exact across instances) instead of the database."""
    base_url: str = "http://127.0.0.1:8000"
    secure_cookies: bool = False
    durability: Durability = Durability.normal
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    retention_interval_hours: float = Field(default=24.0, gt=0)
    analytics_rollup_seconds: float = Field(default=60.0, gt=0)
    """How often ``serve`` brings the audience rollups up to date (analytics/rollups.py)."""
    rights_reminder_seconds: float = Field(default=3600.0, gt=0)
    """How often ``serve`` looks for rights cases to remind staff of (rights/reminders.py)."""
    log_level: str = "INFO"
    trusted_proxies: str = "127.0.0.1"
    """Addresses (comma-separated, or ``*``) whose X-Forwarded-For / X-Forwarded-Proto
    headers are believed: uvicorn's ``forwarded_allow_ips`` (docs/operations.md)."""
    metrics_token: str | None = None
    """Bearer token that opens ``/metrics`` to other addresses than loopback."""

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gardien.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def https(self) -> bool:
        return self.base_url.startswith("https://")
