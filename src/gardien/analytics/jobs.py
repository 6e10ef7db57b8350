"""``serve``'s rollup loop: the reports stay within about a minute of the raw hits.

Every instance runs the loop; the ``analytics.rollups`` lease lets one of them refresh at a
time, and the others skip their turn (``LockBusy``) instead of waiting.
"""

from __future__ import annotations

import logging

from gardien.analytics.rollups import refresh_rollups
from gardien.deps import State
from gardien.storage.locks import LockBusy
from gardien.storage.schedule import every

log = logging.getLogger("gardien.analytics.rollups")


def refresh_once(state: State) -> int:
    """One refresh; the number of days recomputed (0 when another instance holds the lease)."""
    try:
        report = refresh_rollups(state.sessions, state.register, state.clock)
    except LockBusy:
        return 0
    if report.recomputed or report.frozen:
        log.info(
            "analytics rollups refreshed",
            extra={"days": len(report.recomputed), "frozen": len(report.frozen)},
        )
    return len(report.recomputed)


async def rollup_schedule(state: State) -> None:
    """Refresh every ``settings.analytics_rollup_seconds`` until cancelled."""
    await every(
        state.settings.analytics_rollup_seconds,
        lambda: refresh_once(state),
        log,
        "analytics rollup refresh failed",
    )
