"""Alembic has one head, and it describes exactly the tables the models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from gardien.config import Settings
from gardien.deps import State
from gardien.models import metadata
from gardien.storage.database import make_engine
from gardien.storage.migrate import (
    alembic_config,
    current_heads,
    pending,
    script_heads,
    upgrade_fast,
)


def test_one_head_and_the_quick_reader_agrees_with_alembic(state: State) -> None:
    script = ScriptDirectory.from_config(alembic_config(state.engine))
    assert len(script.get_heads()) == 1
    assert set(script.get_heads()) == set(script_heads())
    assert not pending(state.engine)


def test_models_and_migrations_agree(state: State) -> None:
    with state.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_fast_install_equals_replaying_the_migrations(settings: Settings) -> None:
    """A fresh database set up by ``upgrade_fast`` has the same schema as one migrated."""
    fast_engine = make_engine(settings.resolved_database_url)
    try:
        upgrade_fast(fast_engine)
        assert not pending(fast_engine)
        with fast_engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": False})
            assert compare_metadata(context, metadata) == []
        assert current_heads(fast_engine) == set(script_heads())
        upgrade_fast(fast_engine)  # second call: an ordinary (no-op) Alembic upgrade
        assert not pending(fast_engine)
    finally:
        fast_engine.dispose()
