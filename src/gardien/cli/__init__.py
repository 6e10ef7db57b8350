"""The ``gardien`` command: one group per domain, each calling services only.

Exit codes: 0 success, 1 a check found a problem, 2 bad input (one line per problem, never a
traceback).
"""

from __future__ import annotations

from gardien.cli.main import app


def main() -> None:
    app()
