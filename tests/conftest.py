"""Shared fixtures: a migrated database per test on SQLite and on PostgreSQL, settings,
a frozen clock, the app and its client.

PostgreSQL runs when ``GARDIEN_TEST_POSTGRES_URL`` is set (``make test`` always sets it and
starts the server); each test gets its own schema there, its own file on SQLite.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from gardien.app import create_app
from gardien.config import Settings
from gardien.deps import State
from gardien.runtime import build_state, start
from gardien.storage.clock import FrozenClock
from gardien.storage.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]
SEED_REGISTER = ROOT / "examples" / "seed-site" / "register.yaml"
POSTGRES_URL = os.environ.get("GARDIEN_TEST_POSTGRES_URL")
START = dt.datetime(2026, 1, 15, 9, 30, tzinfo=dt.UTC)

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if POSTGRES_URL:
        return
    skip = pytest.mark.skip(reason="GARDIEN_TEST_POSTGRES_URL is not set (make test sets it)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def _postgres_schema_url(schema: str) -> str:
    assert POSTGRES_URL
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend, dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gardien.db'}"
        return
    assert POSTGRES_URL
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _postgres_schema_url(schema)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def register_path(tmp_path: Path) -> Path:
    """A private copy of the seed register that a test may edit."""
    path = tmp_path / "register.yaml"
    shutil.copy(SEED_REGISTER, path)
    return path


@pytest.fixture
def settings(tmp_path: Path, database_url: str, register_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        register_file=register_path,
    )


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def state(settings: Settings, clock: FrozenClock) -> Iterator[State]:
    built = build_state(settings, clock=clock)
    upgrade(built.engine)
    start(built)
    try:
        yield built
    finally:
        built.engine.dispose()


@pytest.fixture
def engine(state: State) -> Engine:
    return state.engine


@pytest.fixture
def client(settings: Settings, state: State) -> Iterator[TestClient]:
    app = create_app(settings, state=state, scheduler=False)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
