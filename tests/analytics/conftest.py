"""Fixtures of the audience-measurement tests: a visitor with a real address and browser, and
a register whose first site a test may change (``@pytest.mark.parametrize("site_changes",
[{...}])``) before the app starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from gardien.app import create_app
from gardien.config import Settings
from gardien.deps import State

IP = "203.0.113.198"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.fixture
def site_changes() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, register_path: Path, site_changes: dict[str, Any]
) -> Settings:
    if site_changes:
        register = yaml.safe_load(register_path.read_text(encoding="utf-8"))
        register["sites"][0].update(site_changes)
        register_path.write_text(yaml.safe_dump(register, allow_unicode=True), encoding="utf-8")
    return Settings(
        data_dir=tmp_path / "data", database_url=database_url, register_file=register_path
    )


@pytest.fixture
def visitor(settings: Settings, state: State) -> Iterator[TestClient]:
    """A client seen from a real address (the default test client has none)."""
    app = create_app(settings, state=state, scheduler=False)
    with TestClient(app, client=(IP, 50123), headers={"user-agent": UA}) as client:
        yield client
