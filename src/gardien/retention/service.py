"""Run the register's retention rules against the stores, and report how close each is.

A run takes the ``retention`` job lease (one instance at a time), then for each activity:
skips it if a legal hold is in force or its store is not built yet, otherwise deletes or
anonymises due rows in chunks, each chunk its own short transaction so no write path waits
long, and finally writes one ``PurgeReceipt``. Running twice purges nothing the second time.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gardien.register.durations import parse_period
from gardien.register.schema import Activity, LegalHold, Register
from gardien.retention.models import PurgeReceipt
from gardien.retention.stores import StoreRegistry, Sweep
from gardien.rights.deadlines import local_day
from gardien.security import audit
from gardien.storage.clock import Clock
from gardien.storage.database import unit_of_work
from gardien.storage.locks import job_lease

JOB_NAME = "retention"
DEFAULT_CHUNK = 500


class Outcome(StrEnum):
    purged = "purged"
    dry_run = "dry_run"
    held = "held"
    not_implemented = "not_implemented"
    unsupported = "unsupported"


@dataclass(frozen=True)
class ActivityResult:
    activity: str
    store: str
    outcome: Outcome
    cutoff: dt.datetime
    rows: int
    chunks: int
    duration_ms: int
    note: str | None = None


Progress = Callable[[str, int], None]
"""Called with (activity id, rows so far) after each chunk, for progress bars."""


def active_hold(activity: Activity, now: dt.datetime, time_zone: str) -> LegalHold | None:
    """The activity's legal hold in force at ``now``: one expiring today, on the controller's
    clock (the register's ``rights.time_zone``), still holds until that day ends there."""
    today = local_day(now, time_zone)
    return next((h for h in activity.legal_holds if h.expires >= today), None)


def unsupported_reason(activity: Activity, stores: StoreRegistry) -> str | None:
    store = stores.get(activity.storage)
    if store is None:
        return f"store {activity.storage!r} is not implemented yet"
    if activity.retention.trigger not in store.triggers:
        return f"store {activity.storage!r} cannot honour trigger {activity.retention.trigger}"
    if activity.retention.action not in store.actions:
        return f"store {activity.storage!r} cannot {activity.retention.action}"
    return None


def _purge_activity(
    sessions: sessionmaker[Session],
    activity: Activity,
    stores: StoreRegistry,
    now: dt.datetime,
    time_zone: str,
    dry_run: bool,
    chunk_size: int,
    progress: Progress | None,
) -> ActivityResult:
    started = time.monotonic()
    cutoff = parse_period(activity.retention.period).before(now)
    store = stores.get(activity.storage)

    def result(
        outcome: Outcome, rows: int = 0, chunks: int = 0, note: str | None = None
    ) -> ActivityResult:
        elapsed = int((time.monotonic() - started) * 1000)
        return ActivityResult(
            activity.id, activity.storage, outcome, cutoff, rows, chunks, elapsed, note
        )

    reason = unsupported_reason(activity, stores)
    if store is None or reason:
        outcome = Outcome.not_implemented if store is None else Outcome.unsupported
        return result(outcome, note=reason)
    hold = active_hold(activity, now, time_zone)
    if hold is not None:
        return result(
            Outcome.held, note=f"legal hold until {hold.expires}: {hold.reason} ({hold.owner})"
        )
    trigger, action = activity.retention.trigger, activity.retention.action
    if dry_run:
        with sessions() as session:
            due = store.count_due(session, trigger, cutoff)
        return result(Outcome.dry_run, rows=due)
    total = chunks = 0
    while True:
        with unit_of_work(sessions) as session:
            affected = store.purge_chunk(session, trigger, action, cutoff, chunk_size)
        total += affected
        chunks += 1
        if progress:
            progress(activity.id, total)
        if affected < chunk_size:
            break
    return result(Outcome.purged, rows=total, chunks=chunks)


def run_retention(
    sessions: sessionmaker[Session],
    register: Register,
    stores: StoreRegistry,
    clock: Clock,
    *,
    dry_run: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Progress | None = None,
) -> list[ActivityResult]:
    """Apply every activity's retention; raises ``LockBusy`` if another instance is running it."""
    run_id = uuid.uuid4().hex
    results: list[ActivityResult] = []
    with job_lease(sessions, JOB_NAME, clock, ttl=dt.timedelta(hours=6)):
        for activity in register.activities:
            started_at = clock.now()
            outcome = _purge_activity(
                sessions,
                activity,
                stores,
                started_at,
                register.rights.time_zone,
                dry_run,
                chunk_size,
                progress,
            )
            results.append(outcome)
            if dry_run:
                continue
            with unit_of_work(sessions) as session:
                _receipt(
                    session,
                    clock,
                    run_id,
                    outcome,
                    started_at,
                    target=("activity", activity.id),
                    action=activity.retention.action.value,
                    period=activity.retention.period,
                    trigger=activity.retention.trigger.value,
                )
        for sweep in stores.sweeps:
            results.append(
                _sweep(sessions, register, sweep, clock, run_id, dry_run, chunk_size, progress)
            )
    return results


def _receipt(
    session: Session,
    clock: Clock,
    run_id: str,
    result: ActivityResult,
    started_at: dt.datetime,
    *,
    target: tuple[str, str],
    action: str,
    period: str,
    trigger: str,
) -> None:
    """The receipt of one activity's purge or one sweep, and an audit entry when rows went."""
    if result.outcome is Outcome.purged and result.rows:
        audit.record(
            session,
            audit.Actor.system("retention"),
            f"retention.{action}",
            clock.now(),
            target_type=target[0],
            target_id=target[1],
            reason=f"run {run_id}: {result.rows} rows, cutoff {result.cutoff:%F}",
        )
    session.add(
        PurgeReceipt(
            run_id=run_id,
            activity=result.activity,
            store=result.store,
            action=action,
            period=period,
            trigger=trigger,
            cutoff=result.cutoff,
            status=result.outcome.value,
            rows_affected=result.rows,
            chunks=result.chunks,
            started_at=started_at,
            finished_at=started_at + dt.timedelta(milliseconds=result.duration_ms),
            duration_ms=result.duration_ms,
            note=result.note,
        )
    )


def _sweep(
    sessions: sessionmaker[Session],
    register: Register,
    sweep: Sweep,
    clock: Clock,
    run_id: str,
    dry_run: bool,
    chunk_size: int,
    progress: Progress | None,
) -> ActivityResult:
    """One sweep of short-lived working data: chunks, then a receipt (and an audit entry when
    something was deleted), like an activity's purge."""
    started_at = clock.now()
    started = time.monotonic()
    limit = sweep.limit(register)
    cutoff = started_at - limit
    total = chunks = 0
    if dry_run:
        with sessions() as session:
            total = sweep.count_due(session, cutoff, started_at)
    else:
        while True:
            with unit_of_work(sessions) as session:
                affected = sweep.sweep_chunk(session, cutoff, started_at, chunk_size)
            total += affected
            chunks += 1
            if progress:
                progress(sweep.sweep_id, total)
            if affected < chunk_size:
                break
    elapsed = int((time.monotonic() - started) * 1000)
    outcome = Outcome.dry_run if dry_run else Outcome.purged
    result = ActivityResult(sweep.activity, sweep.sweep_id, outcome, cutoff, total, chunks, elapsed)
    if dry_run:
        return result
    with unit_of_work(sessions) as session:
        _receipt(
            session,
            clock,
            run_id,
            result,
            started_at,
            target=("sweep", sweep.sweep_id),
            action="delete",
            period=f"P{limit.days}D",
            trigger=sweep.trigger,
        )
    return result


class State(StrEnum):
    within_limit = "within limit"
    overdue = "OVERDUE"
    empty = "empty"
    held = "held"
    not_implemented = "not implemented"


@dataclass(frozen=True)
class ActivityStatus:
    activity: str
    store: str
    period: str
    limit: dt.datetime
    oldest: dt.datetime | None
    state: State
    last_run: dt.datetime | None
    note: str | None = None

    @property
    def oldest_age_days(self) -> float | None:
        if self.oldest is None:
            return None
        return (self.limit - self.oldest).total_seconds() / 86400


def retention_status(
    session: Session, register: Register, stores: StoreRegistry, clock: Clock
) -> Iterator[ActivityStatus]:
    """Per activity: the oldest stored record against the promised limit."""
    now = clock.now()
    last_runs: dict[str, dt.datetime] = dict(
        session.execute(
            select(PurgeReceipt.activity, func.max(PurgeReceipt.finished_at)).group_by(
                PurgeReceipt.activity
            )
        )
        .tuples()
        .all()
    )
    for activity in register.activities:
        cutoff = parse_period(activity.retention.period).before(now)
        store = stores.get(activity.storage)
        reason = unsupported_reason(activity, stores)
        oldest: dt.datetime | None = None
        note: str | None = reason
        if store is None or reason:
            state = State.not_implemented
        else:
            oldest = store.oldest(session, activity.retention.trigger)
            hold = active_hold(activity, now, register.rights.time_zone)
            note = hold.reason if hold else None
            if oldest is None:
                state = State.empty
            elif oldest < cutoff:
                state = State.held if hold else State.overdue
            else:
                state = State.within_limit
        yield ActivityStatus(
            activity=activity.id,
            store=activity.storage,
            period=activity.retention.period,
            limit=cutoff,
            oldest=oldest,
            state=state,
            last_run=last_runs.get(activity.id),
            note=note,
        )
