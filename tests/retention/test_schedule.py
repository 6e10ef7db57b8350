"""``gardien serve`` runs retention on its own schedule (daily by default)."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from gardien.app import create_app
from gardien.config import Settings
from gardien.deps import State
from gardien.retention.models import PurgeReceipt
from gardien.retention.stores import StoreRegistry
from tests.retention.store import SampleStore, test_metadata
from tests.retention.test_engine import register_with_sample, remaining, seed_rows


def test_the_server_purges_on_schedule(
    settings: Settings, state: State, register_path: Path
) -> None:
    test_metadata.create_all(state.engine)
    state.register = register_with_sample(register_path)
    state.stores = StoreRegistry([SampleStore()])
    seed_rows(state, [3, 120])
    fast = settings.model_copy(update={"retention_interval_hours": 0.2 / 3600})
    state.settings = fast
    app = create_app(fast, state=state, scheduler=True)
    with TestClient(app):
        deadline = time.monotonic() + 20
        while remaining(state) != [3] and time.monotonic() < deadline:
            time.sleep(0.05)
    assert remaining(state) == [3]
    with state.sessions() as session:
        runs = session.scalars(
            select(PurgeReceipt.run_id).where(PurgeReceipt.activity == "sample_activity")
        ).all()
    assert len(runs) >= 1
