"""``serve``'s periodic jobs: run a blocking job in a thread, again and again, until cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable


async def every(
    seconds: float, job: Callable[[], object], log: logging.Logger, failed: str
) -> None:
    """Run ``job`` in a thread, then wait ``seconds``, until cancelled. A failed run is logged
    as ``failed`` with the error's type only (a message may quote a value) and does not stop
    the schedule."""
    while True:
        try:
            await asyncio.to_thread(job)
        except Exception as exc:  # noqa: BLE001 - a failed run must not stop the schedule
            log.error(failed, extra={"error": type(exc).__name__})
        await asyncio.sleep(seconds)
