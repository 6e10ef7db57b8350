"""A real ``gardien serve`` on a fresh SQLite database with one staff account created through
the CLI, for the browser tests that sign in to the admin."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import Server, gardien_env, serving

PASSWORD = "correct horse battery staple"
SEED_REGISTER = Path(__file__).resolve().parents[2] / "examples" / "seed-site" / "register.yaml"


def create_user(env: dict[str, str], email: str, role: str) -> None:
    created = subprocess.run(
        [sys.executable, "-m", "gardien", "admin", "create-user", email, "--role", role]
        + ["--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr


@contextmanager
def serving_with_user(root: Path, email: str, role: str) -> Iterator[Server]:
    env = gardien_env(root / "data", f"sqlite:///{root / 'gardien.db'}", SEED_REGISTER)
    create_user(env, email, role)
    with serving(env) as server:
        yield server
