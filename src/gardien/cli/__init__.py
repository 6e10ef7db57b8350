"""The ``gardien`` command: one group per domain, each calling services only.

Exit codes: 0 success, 1 a check found a problem, 2 bad input (one line per problem, never a
traceback).
"""

from __future__ import annotations

import os
import sys

from gardien.cli.main import app


def main() -> None:
    try:
        app()
    except Exception as exc:
        if os.environ.get("GARDIEN_DEBUG"):
            raise
        # Messages can carry personal values; the type is enough to start looking.
        print(  # noqa: T201
            f"gardien: unexpected error ({type(exc).__name__}); "
            "run again with GARDIEN_DEBUG=1 for details",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
