"""Alembic, driven from code: upgrade to head, or tell whether migrations are pending.

Telling needs no Alembic import (it pulls in Mako and Pygments, a quarter of a second at
start): the head is read from the revision files and the current revision with one SELECT.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"
_REVISION = re.compile(r"^revision\s*=\s*['\"]([0-9a-zA-Z_]+)['\"]", re.MULTILINE)
_DOWN = re.compile(r"^down_revision\s*=\s*(.+)$", re.MULTILINE)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


def upgrade_fast(engine: Engine) -> None:
    """Upgrade; an empty database gets the models' schema directly, stamped at head.

    Equivalent to replaying every migration (``tests/storage/test_migrations.py`` proves the
    models and the migrations describe the same schema) but without importing Alembic, which
    keeps a first ``gardien serve`` under two seconds. Any other database goes through Alembic.
    """
    from gardien.models import metadata

    heads = script_heads()
    with engine.begin() as connection:
        if inspect(connection).get_table_names() or len(heads) != 1:
            fresh = False
        else:
            fresh = True
            metadata.create_all(connection)
            connection.execute(
                text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
            )
            connection.execute(
                text("INSERT INTO alembic_version (version_num) VALUES (:head)"),
                {"head": next(iter(heads))},
            )
    if not fresh:
        upgrade(engine)


@cache
def script_heads() -> frozenset[str]:
    """Revisions no other revision builds on, read from ``migrations/versions``."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision = _REVISION.search(source)
        down = _DOWN.search(source)
        if revision:
            revisions.add(revision.group(1))
        if down:
            parents.update(re.findall(r"['\"]([0-9a-zA-Z_]+)['\"]", down.group(1)))
    return frozenset(revisions - parents)


def current_heads(engine: Engine) -> set[str]:
    from gardien.storage.database import READ_ONLY

    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        if not inspect(connection).has_table("alembic_version"):
            return set()
        return set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


def pending(engine: Engine) -> bool:
    return current_heads(engine) != set(script_heads())
