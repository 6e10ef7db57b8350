"""Fixtures of the group-commit tests: a probe table and a writer of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from gardien.deps import State
from gardien.storage.groupcommit import GroupCommit
from tests.storage.test_groupcommit import probe_metadata


@pytest.fixture
def engine(state: State) -> Engine:
    probe_metadata.create_all(state.engine)
    return state.engine


@pytest.fixture
def writer(engine: Engine) -> Iterator[GroupCommit]:
    writer = GroupCommit(engine, max_batch=100, name="test-group-commit")
    yield writer
    writer.stop()
