"""Alembic environment: the engine comes from Gardien (``storage.migrate``) or the settings."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Engine

from gardien.models import metadata
from gardien.security.crypto import BlindIndex, Encrypted
from gardien.storage.base import UTCDateTime

config = context.config


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine  # type: ignore[no-any-return]
    from gardien.config import Settings
    from gardien.storage.database import engine_from_settings

    return engine_from_settings(Settings())


def _render_item(kind: str, obj: Any, autogen_context: Any) -> str | bool:
    # UTCDateTime only converts values in Python; the column itself is a plain timestamptz.
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    # Encryption happens in Python; on disk a ciphertext is bytes and a blind index text.
    if kind == "type" and isinstance(obj, Encrypted):
        return "sa.LargeBinary()"
    if kind == "type" and isinstance(obj, BlindIndex):
        return "sa.String(length=64)"
    return False


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            render_item=_render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
