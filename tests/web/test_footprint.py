"""What a server on SQLite without Redis loads: no driver or client it has no use for.

psycopg (about 9 MB resident) and the Redis client (about 6 MB) are imported only where a
PostgreSQL database or ``GARDIEN_REDIS_URL`` needs them; ``bench startup`` and ``bench
throughput`` measure the memory this keeps free. A fresh interpreter is needed to see what
the server imports, since the test process itself has loaded both.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from fastapi.testclient import TestClient
from gardien.app import create_app
from gardien.config import Settings
from gardien.runtime import build_state, start
from gardien.storage.migrate import upgrade_fast

settings = Settings()
state = build_state(settings)
upgrade_fast(state.engine)
start(state)
with TestClient(create_app(settings, state=state, scheduler=False)) as client:
    statuses = [
        client.get("/healthz").status_code,
        client.get("/privacy").status_code,
        # A public write: through the write budgets and the connection log's group commit.
        client.post("/privacy").status_code,
    ]
print(statuses)
print(",".join(name for name in ("psycopg", "redis") if name in sys.modules) or "-")
"""


def test_a_sqlite_server_without_redis_imports_neither_psycopg_nor_redis(
    tmp_path: Path, register_path: Path
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "GARDIEN_DATA_DIR": str(tmp_path / "data"),
        "GARDIEN_DATABASE_URL": f"sqlite:///{tmp_path / 'gardien.db'}",
        "GARDIEN_REGISTER": str(register_path),
        "GARDIEN_LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    statuses, imported = done.stdout.splitlines()[-2:]
    assert statuses == "[200, 200, 405]"
    assert imported == "-"
