"""Daily rollups of the raw hits: what every report reads, so no report scans raw data.

**A day's rollup** (``compute_day``) turns one site's raw hits of one UTC day into visits and
aggregates. Hits are grouped by visitor id and ordered by time; a visit ends after 30 minutes
without an action (Matomo's default) or when a hit says ``new_visit=1``. A ping (heartbeat)
never starts a visit: it only extends the visit it follows, within the same 30 minutes. A visit
never crosses midnight UTC (a cookieless visitor id changes at midnight anyway), which is what
lets one day be recomputed alone. The first action gives the visit its referrer, campaign,
device, browser, OS and country (``enrich``); its first and last page views are its entry and
exit pages; it is a bounce with exactly one action (pings are not actions); its time on site is
its last hit (pings count) minus its first. Only aggregates are stored: counts per label, no
visitor id, address or user id. Each table keeps its ``ROWS_PER_DAY`` largest labels and sums
the rest as ``OTHERS``.

**Keeping them current** (``refresh_rollups``): one instance at a time (the ``job_lock`` lease
``analytics.rollups``) recomputes only the days that changed: days with hits above the
watermark (the highest hit id already read), days marked dirty by a data-subject erasure
(``mark_dirty``, called by the analytics provider in the erasure's transaction), and, when the
count of hits between the last two watermarks changed, the days of those hits too (a
transaction on PostgreSQL may commit after a refresh read a higher id: its hits are caught one
refresh later). The server runs it every ``GARDIEN_ANALYTICS_ROLLUP_SECONDS`` (60 s by default);
``gardien analytics report`` runs it before reading.

**Rollups outlive raw data.** A retention purge deletes raw hits and leaves every rollup as it
is. A day that already has a rollup and began before the raw-data retention cutoff is frozen:
it is never recomputed (from raw data that is partly or wholly purged), not even when an
erasure marks it; only days whose raw data is still complete are recomputed from what is left.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Engine,
    Float,
    String,
    cast,
    delete,
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from gardien.analytics.enrich import CAMPAIGN, agent, classify_referrer, country, page_label
from gardien.analytics.models import (
    LABEL_LIMIT,
    AnalyticsDay,
    AnalyticsDayRow,
    AnalyticsDirtyDay,
    AnalyticsHit,
    AnalyticsRollupState,
    analytics_day,
    analytics_day_row,
)
from gardien.register.durations import parse_period
from gardien.register.schema import Register
from gardien.storage.clock import Clock
from gardien.storage.database import reader_factory
from gardien.storage.locks import LockBusy, acquire, holder_id, release

VISIT_GAP = dt.timedelta(minutes=30)
ROWS_PER_DAY = 1000
OTHERS = "Others"
LEASE = "analytics.rollups"
LEASE_TTL = dt.timedelta(minutes=10)
STATE = "hits"

TABLES: tuple[str, ...] = (
    "pages",
    "entry_pages",
    "exit_pages",
    "referrers",
    "referrer_types",
    "campaigns",
    "devices",
    "browsers",
    "operating_systems",
    "countries",
    "events",
    "searches",
    "outlinks",
    "downloads",
)

ACTIONS = ("pageview", "event", "search", "outlink", "download", "other")
"""What counts as an action of a visit; a ``ping`` only extends it."""

_HIT_COLUMNS = (
    AnalyticsHit.visitor_id,
    AnalyticsHit.received_at,
    AnalyticsHit.action,
    AnalyticsHit.url,
    AnalyticsHit.referrer,
    AnalyticsHit.user_agent,
    AnalyticsHit.language,
    AnalyticsHit.network,
    AnalyticsHit.new_visit,
    AnalyticsHit.event_category,
    AnalyticsHit.event_action,
    AnalyticsHit.event_name,
    AnalyticsHit.search_keyword,
)


@dataclass
class DayRollup:
    """One site's day, computed: the totals and each table's counts per label."""

    visits: int = 0
    visitors: int = 0
    pageviews: int = 0
    bounces: int = 0
    time_on_site: int = 0
    events: int = 0
    searches: int = 0
    outlinks: int = 0
    downloads: int = 0
    hits: int = 0
    visits_by: dict[str, Counter[str]] = field(
        default_factory=lambda: {name: Counter() for name in TABLES}
    )
    actions_by: dict[str, Counter[str]] = field(
        default_factory=lambda: {name: Counter() for name in TABLES}
    )


class _Visit:
    __slots__ = (
        "actions",
        "entry",
        "exit",
        "first_url",
        "language",
        "last",
        "network",
        "pages",
        "pageviews",
        "referrer",
        "started",
        "user_agent",
        "labels",
    )

    def __init__(
        self,
        started: float,
        first_url: str | None,
        referrer: str | None,
        user_agent: str | None,
        language: str | None,
        network: str | None,
    ) -> None:
        self.started = self.last = started
        self.first_url = first_url
        self.referrer = referrer
        self.user_agent = user_agent
        self.language = language
        self.network = network
        self.actions = 0
        self.pageviews = 0
        self.entry: str | None = None
        self.exit: str | None = None
        self.labels: dict[str, set[str]] = {}
        """Labels of the tables a visit may hit several times (pages, events...)."""

    def saw(self, table: str, label: str) -> None:
        labels = self.labels.get(table)
        if labels is None:
            self.labels[table] = {label}
        else:
            labels.add(label)


def _event_label(category: str | None, action: str | None, name: str | None) -> str:
    parts = [part for part in (category, action, name) if part]
    return " / ".join(parts)[:LABEL_LIMIT]


_GAP = VISIT_GAP.total_seconds()


class _DayBuilder:
    """Walks one day's hits in visitor and time order, closing each visit as it ends."""

    def __init__(self, own_hosts: frozenset[str]) -> None:
        self.own_hosts = own_hosts
        self.day = DayRollup()
        self.visitors: set[str] = set()

    def close(self, visit: _Visit) -> None:
        day = self.day
        visits_by, actions_by = day.visits_by, day.actions_by
        day.visits += 1
        if visit.actions == 1:
            day.bounces += 1
        day.time_on_site += round(visit.last - visit.started)
        ref = classify_referrer(visit.referrer, visit.first_url, self.own_hosts)
        found = agent(visit.user_agent)
        single = [
            ("referrer_types", ref.kind),
            ("devices", found.device),
            ("browsers", found.browser),
            ("operating_systems", found.operating_system),
            ("countries", country(visit.network, visit.language)),
        ]
        if ref.label:
            single.append(("referrers", ref.label[:LABEL_LIMIT]))
        if ref.kind == CAMPAIGN and ref.name:
            single.append(("campaigns", ref.name))
        for table, label in single:
            visits_by[table][label] += 1
            actions_by[table][label] += 1
        if visit.entry is not None:
            visits_by["entry_pages"][visit.entry] += 1
            actions_by["entry_pages"][visit.entry] += visit.pageviews
        if visit.exit is not None:
            visits_by["exit_pages"][visit.exit] += 1
            actions_by["exit_pages"][visit.exit] += visit.pageviews
        for table, labels in visit.labels.items():
            visits_by[table].update(labels)

    def add(self, hits: Iterable[Sequence[Any]]) -> DayRollup:
        day = self.day
        actions_by = day.actions_by
        visit: _Visit | None = None
        current: str | None = None
        for row in hits:
            (
                visitor,
                when,
                action,
                url,
                referrer,
                user_agent,
                language,
                network,
                new_visit,
                e_category,
                e_action,
                e_name,
                keyword,
            ) = row
            day.hits += 1
            if visitor != current:
                if visit is not None:
                    self.close(visit)
                visit, current = None, visitor
            if action == "ping":
                if visit is not None and when - visit.last <= _GAP:
                    visit.last = max(visit.last, when)
                continue
            if action not in ACTIONS:
                continue
            if visit is None or new_visit == 1 or when - visit.last > _GAP:
                if visit is not None:
                    self.close(visit)
                visit = _Visit(when, url, referrer, user_agent, language, network)
                self.visitors.add(visitor)
            if when > visit.last:
                visit.last = when
            visit.actions += 1
            if action == "pageview":
                day.pageviews += 1
                visit.pageviews += 1
                label = page_label(url)
                if label is not None:
                    if visit.entry is None:
                        visit.entry = label
                    visit.exit = label
                    visit.saw("pages", label)
                    actions_by["pages"][label] += 1
            elif action == "event":
                day.events += 1
                name = _event_label(e_category, e_action, e_name)
                visit.saw("events", name)
                actions_by["events"][name] += 1
            elif action == "search":
                day.searches += 1
                term = (keyword or "").strip().lower()[:LABEL_LIMIT]
                visit.saw("searches", term)
                actions_by["searches"][term] += 1
            elif action in ("outlink", "download"):
                label = page_label(url)
                if label is None:
                    continue
                table = "outlinks" if action == "outlink" else "downloads"
                if action == "outlink":
                    day.outlinks += 1
                else:
                    day.downloads += 1
                visit.saw(table, label)
                actions_by[table][label] += 1
        if visit is not None:
            self.close(visit)
        day.visitors = len(self.visitors)
        return day


def _seconds(session: Session) -> ColumnElement[float]:
    """A hit's time as seconds since the epoch, computed by the database (cheaper to read
    than a datetime, and enough for 30-minute gaps and whole-second times on site)."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(type_coerce(AnalyticsHit.received_at, String)) - 2440587.5) * 86400.0
    return cast(func.extract("epoch", AnalyticsHit.received_at), Float)


def compute_day(
    session: Session, site_id: int, day: dt.date, own_hosts: frozenset[str] = frozenset()
) -> DayRollup:
    """One site's day from its raw hits (read only here, in visitor and time order)."""
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    end = start + dt.timedelta(days=1)
    rows = session.connection().execute(
        select(AnalyticsHit.visitor_id, _seconds(session), *_HIT_COLUMNS[2:])
        .where(AnalyticsHit.site_id == site_id)
        .where(AnalyticsHit.received_at >= start, AnalyticsHit.received_at < end)
        .order_by(AnalyticsHit.visitor_id, AnalyticsHit.received_at, AnalyticsHit.id)
        .execution_options(yield_per=5000)
    )
    return _DayBuilder(own_hosts).add(rows)


def _top(visits: Counter[str], actions: Counter[str]) -> list[tuple[str, int, int]]:
    labels = sorted(
        set(visits) | set(actions), key=lambda label: (-actions[label], -visits[label], label)
    )
    kept = [(label, visits[label], actions[label]) for label in labels[:ROWS_PER_DAY]]
    rest = labels[ROWS_PER_DAY:]
    if rest:
        kept.append((OTHERS, sum(visits[x] for x in rest), sum(actions[x] for x in rest)))
    return kept


def store_day(
    session: Session, site_id: int, day: dt.date, rollup: DayRollup, now: dt.datetime
) -> None:
    """Replace the stored rollup of one site's day (flushes, does not commit)."""
    session.execute(
        delete(AnalyticsDayRow).where(
            AnalyticsDayRow.site_id == site_id, AnalyticsDayRow.day == day
        )
    )
    session.execute(
        delete(AnalyticsDay).where(AnalyticsDay.site_id == site_id, AnalyticsDay.day == day)
    )
    session.execute(
        insert(analytics_day).values(
            site_id=site_id,
            day=day,
            visits=rollup.visits,
            visitors=rollup.visitors,
            pageviews=rollup.pageviews,
            bounces=rollup.bounces,
            time_on_site=rollup.time_on_site,
            events=rollup.events,
            searches=rollup.searches,
            outlinks=rollup.outlinks,
            downloads=rollup.downloads,
            hits=rollup.hits,
            computed_at=now,
        )
    )
    rows = [
        {"site_id": site_id, "day": day, "report": table, "label": label, "visits": v, "actions": a}
        for table in TABLES
        for label, v, a in _top(rollup.visits_by[table], rollup.actions_by[table])
    ]
    if rows:
        session.execute(insert(analytics_day_row), rows)


# --- keeping rollups current --------------------------------------------------------------


def mark_dirty(session: Session, days: Iterable[tuple[int, dt.date]], now: dt.datetime) -> int:
    """Mark days for recomputation by the next refresh (in the caller's transaction)."""
    wanted = set(days)
    if not wanted:
        return 0
    known = {
        (site, day)
        for site, day in session.execute(
            select(AnalyticsDirtyDay.site_id, AnalyticsDirtyDay.day).where(
                AnalyticsDirtyDay.day.in_({day for _, day in wanted})
            )
        )
    }
    fresh = wanted - known
    for site, day in sorted(fresh):
        session.add(AnalyticsDirtyDay(site_id=site, day=day, marked_at=now))
    for site, day in wanted & known:
        # A refresh computing that day right now leaves a mark made later than its read.
        session.execute(
            update(AnalyticsDirtyDay)
            .where(AnalyticsDirtyDay.site_id == site, AnalyticsDirtyDay.day == day)
            .values(marked_at=now)
        )
    session.flush()
    return len(fresh)


def _hit_day(session: Session) -> ColumnElement[dt.date]:
    """The UTC day of a hit, computed by the database."""
    if session.get_bind().dialect.name == "sqlite":
        # Stored as naive UTC text, "YYYY-MM-DD HH:MM:SS[.ffffff]".
        return func.substr(type_coerce(AnalyticsHit.received_at, String), 1, 10)
    return cast(func.timezone("UTC", AnalyticsHit.received_at), Date)


def _as_date(value: object) -> dt.date:
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def _days_between(session: Session, low: int, high: int) -> set[tuple[int, dt.date]]:
    if high <= low:
        return set()
    day = _hit_day(session)
    rows = session.execute(
        select(AnalyticsHit.site_id, day)
        .where(AnalyticsHit.id > low, AnalyticsHit.id <= high)
        .group_by(AnalyticsHit.site_id, day)
    )
    return {(int(site), _as_date(value)) for site, value in rows}


def _count_between(session: Session, low: int, high: int) -> int:
    if high <= low:
        return 0
    count = session.scalar(
        select(func.count())
        .select_from(AnalyticsHit)
        .where(AnalyticsHit.id > low, AnalyticsHit.id <= high)
    )
    return int(count or 0)


def raw_cutoffs(register: Register, now: dt.datetime) -> dict[int, dt.datetime]:
    """Per site: raw hits received before this instant may have been purged by retention."""
    cutoffs: dict[int, dt.datetime] = {}
    for site in register.sites:
        activity = next((a for a in register.activities if a.id == site.activity), None)
        if activity is not None:
            cutoffs[site.id] = parse_period(activity.retention.period).before(now)
    return cutoffs


def site_hosts(register: Register) -> dict[int, frozenset[str]]:
    return {site.id: frozenset(h.lower() for h in site.hostnames) for site in register.sites}


@dataclass
class RefreshReport:
    """What one refresh did."""

    recomputed: list[tuple[int, dt.date]] = field(default_factory=list)
    frozen: list[tuple[int, dt.date]] = field(default_factory=list)
    """Days that changed but are older than the raw-data retention: kept as they were."""
    hits_read: int = 0
    as_of: dt.datetime | None = None


def refresh_rollups(
    sessions: sessionmaker[Session],
    register: Register,
    clock: Clock,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> RefreshReport:
    """Bring the rollups up to date: recompute every day that changed since the last refresh.

    Runs under the ``analytics.rollups`` lease and raises ``storage.locks.LockBusy`` at once
    when another instance holds it (that instance is doing the same work). Each day is read
    and computed in a read-only session (on SQLite it never holds the write lock, so tracking
    hits do not wait), then replaced in one short transaction; the watermark moves only after
    all of them, so a refresh that dies is simply done again. ``progress(done, total)`` is
    called after each day (for the CLI's progress bar). Callable from the CLI and from the
    server's schedule (``rollup_schedule``).
    """
    holder = holder_id()
    if not acquire(sessions, LEASE, holder, LEASE_TTL, clock):
        raise LockBusy(LEASE)
    try:
        return _refresh(sessions, register, clock, holder, progress)
    finally:
        release(sessions, LEASE, holder, clock)


def _refresh(
    sessions: sessionmaker[Session],
    register: Register,
    clock: Clock,
    holder: str,
    progress: Callable[[int, int], None] | None,
) -> RefreshReport:
    report = RefreshReport()
    started = clock.now()
    with sessions() as session:
        # Reading and computing run in read-only sessions: on SQLite a writing session holds
        # the write lock from its BEGIN, and tracking hits must not wait for a day's rollup.
        bind = session.get_bind()
    readers = reader_factory(bind if isinstance(bind, Engine) else bind.engine)
    with readers() as session:
        state = session.get(AnalyticsRollupState, STATE)
        watermark = state.watermark if state else 0
        previous = state.previous_watermark if state else 0
        window = state.window_count if state else 0
        top = int(session.scalar(select(func.max(AnalyticsHit.id))) or 0)
        top = max(top, watermark)
        changed = _days_between(session, watermark, top)
        report.hits_read = _count_between(session, watermark, top)
        in_window = _count_between(session, previous, watermark)
        if in_window != window:
            changed |= _days_between(session, previous, watermark)
        dirty = {
            (site, day)
            for site, day in session.execute(
                select(AnalyticsDirtyDay.site_id, AnalyticsDirtyDay.day)
            )
        }
        changed |= dirty
        existing = (
            {
                (site, day)
                for site, day in session.execute(
                    select(AnalyticsDay.site_id, AnalyticsDay.day).where(
                        AnalyticsDay.day.in_({day for _, day in changed})
                    )
                )
            }
            if changed
            else set()
        )
    cutoffs = raw_cutoffs(register, started)
    hosts = site_hosts(register)
    todo = sorted(changed)
    for done, (site, day) in enumerate(todo, start=1):
        cutoff = cutoffs.get(site)
        day_start = dt.datetime.combine(day, dt.time(), dt.UTC)
        frozen = (site, day) in existing and cutoff is not None and day_start < cutoff
        rollup: DayRollup | None = None
        with readers() as session:
            # Only the mark seen now is removed: an erasure marking the day again meanwhile
            # (it sets a later marked_at) leaves its mark for the next refresh.
            marked = session.scalar(
                select(AnalyticsDirtyDay.marked_at).where(
                    AnalyticsDirtyDay.site_id == site, AnalyticsDirtyDay.day == day
                )
            )
            if not frozen:
                rollup = compute_day(session, site, day, hosts.get(site, frozenset()))
        with sessions() as session, session.begin():
            if rollup is None:
                report.frozen.append((site, day))
            else:
                store_day(session, site, day, rollup, clock.now())
                report.recomputed.append((site, day))
            if marked is not None:
                session.execute(
                    delete(AnalyticsDirtyDay).where(
                        AnalyticsDirtyDay.site_id == site,
                        AnalyticsDirtyDay.day == day,
                        AnalyticsDirtyDay.marked_at <= marked,
                    )
                )
        if not acquire(sessions, LEASE, holder, LEASE_TTL, clock):
            raise LockBusy(LEASE)  # the lease expired and another instance took over
        if progress is not None:
            progress(done, len(todo))
    with sessions() as session, session.begin():
        state = session.get(AnalyticsRollupState, STATE)
        if state is None:
            state = AnalyticsRollupState(name=STATE)
            session.add(state)
        if top > watermark:
            state.previous_watermark, state.watermark = watermark, top
            state.window_count = report.hits_read
        else:  # nothing new: the window stays open until hits come in
            state.previous_watermark, state.watermark = previous, watermark
            state.window_count = in_window
        state.refreshed_at = started
    report.as_of = started
    return report


def rollups_as_of(session: Session) -> dt.datetime | None:
    """Hits committed before this instant are in the rollups (``None``: never refreshed)."""
    return session.scalar(
        select(AnalyticsRollupState.refreshed_at).where(AnalyticsRollupState.name == STATE)
    )
