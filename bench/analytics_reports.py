"""Audience reports: a 31-day report over 5,000,000 raw hits against the same over 50,000.

Target (issue 7, reported, not enforced): ``reports.build_report`` for 31 days over 5 million
raw hits answers within 3x the time of the same report over 50,000 hits — reports read the
daily rollups, never the raw rows. The rollup refresh that builds them is timed too (a full
build from nothing, then an incremental refresh after one more minute of traffic), the figure
to read next to Matomo's archiving (runs of hours, 36 h+ reported in matomo-org/matomo#20457).

Each size gets its own SQLite database (the default install) filled with 31 days of generated
traffic of the same shape — visits of one to nine hits (page views, events, site searches,
outlinks, downloads, pings) from a pool of visit templates (300 pages, a dozen referrers, six
user agents, five networks), so the labels are alike and only the volume differs — inserted
with ``executemany`` in chunks (``COPY`` on PostgreSQL; on SQLite the secondary indexes are
dropped for the bulk fill and created again, the same ones, before anything is measured).
Free disk is checked first (about 420 bytes per hit with its indexes). The report is timed
``REPEATS`` times; the medians are compared.

``python -m bench.analytics_reports --big 5000000 --small 50000 [--postgres]`` sets the sizes
(``BENCH_REPORTS_BIG`` / ``BENCH_REPORTS_SMALL`` too, for ``python -m bench``) and measures
PostgreSQL as well (``GARDIEN_TEST_POSTGRES_URL``, else the local test server).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import SEED_REGISTER, Verdict, heading, print_table, ratio
from gardien.config import Settings
from gardien.deps import State

SMALL = int(os.environ.get("BENCH_REPORTS_SMALL", "50000"))
BIG = int(os.environ.get("BENCH_REPORTS_BIG", "5000000"))
DAYS = 31
REPEATS = 15
TARGET = 3.0
CHUNK = 100_000
BYTES_PER_HIT = 420
"""Measured: the SQLite file after filling, divided by the hits (rows and indexes)."""
HOST = "https://www.cegedim-rx.ro"

AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
)
REFERRERS = (
    None,
    None,
    None,
    "https://www.google.com/",
    "https://www.google.ro/search?q=farmacie",
    "https://www.bing.com/search?q=cegedim",
    "https://duckduckgo.com/",
    "https://l.facebook.com/",
    "https://www.linkedin.com/feed/",
    "https://t.co/x",
    "https://forum.example.org/thread/12",
    "https://news.example.com/2026/article",
)
PLACES = (
    ("81.56.0.0", "fr-FR"),
    ("5.2.0.0", "ro-RO"),
    ("8.8.0.0", "en-US"),
    ("10.0.0.0", "de-DE"),
    ("2a01:e0a::", "fr-FR"),
)
PAGES = tuple(f"{HOST}/section-{n % 12}/page-{n}" for n in range(300))

HIT_COLUMNS = (
    "received_at",
    "visitor_id",
    "site_id",
    "network",
    "user_agent",
    "action",
    "url",
    "referrer",
    "language",
    "event_category",
    "event_action",
    "event_name",
    "search_keyword",
    "new_visit",
    "consented",
)

Hit = tuple[int, str, str | None, str | None, str | None, str | None, str | None]
"""(seconds after the visit's start, action, url, event category, action, name, keyword)."""


@dataclass(frozen=True)
class Template:
    hits: tuple[Hit, ...]
    referrer: str | None
    agent: str
    network: str
    language: str
    campaign: str


def _templates(rng: random.Random, count: int = 2000) -> list[Template]:
    templates = []
    for _ in range(count):
        offset = 0
        hits: list[Hit] = []
        for position in range(rng.choice((1, 1, 2, 2, 3, 4, 5, 7, 9))):
            kind = (
                "pageview"
                if position == 0
                else rng.choice(
                    ("pageview",) * 6 + ("event", "event", "search", "outlink", "download", "ping")
                )
            )
            page = rng.choice(PAGES)
            if kind == "event":
                hits.append(
                    (offset, kind, page, "Video", rng.choice(("Play", "Pause")), None, None)
                )
            elif kind == "search":
                hits.append((offset, kind, page, None, None, None, rng.choice(("rgpd", "contact"))))
            elif kind in ("outlink", "download"):
                target = (
                    f"{HOST}/files/doc-{rng.randrange(20)}.pdf"
                    if kind == "download"
                    else (f"https://partner-{rng.randrange(30)}.example.net/")
                )
                hits.append((offset, kind, target, None, None, None, None))
            else:
                hits.append((offset, kind, page, None, None, None, None))
            offset += rng.randint(5, 900)
        network, language = rng.choice(PLACES)
        templates.append(
            Template(
                hits=tuple(hits),
                referrer=rng.choice(REFERRERS),
                agent=rng.choice(AGENTS),
                network=network,
                language=language,
                campaign=rng.choice(("",) * 9 + ("?mtm_campaign=newsletter",)),
            )
        )
    return templates


def _rows(
    total: int, first_day: dt.date, days: int = DAYS, seed: int = 11
) -> list[list[tuple[object, ...]]]:
    """``total`` hits spread evenly over ``days`` days, as chunks of row tuples."""
    rng = random.Random(seed)
    templates = _templates(rng)
    per_day = total // days
    chunks: list[list[tuple[object, ...]]] = []
    chunk: list[tuple[object, ...]] = []
    visitor = seed << 40
    for day_number in range(days):
        midnight = dt.datetime.combine(first_day + dt.timedelta(days=day_number), dt.time(), dt.UTC)
        quota = per_day if day_number < days - 1 else total - per_day * (days - 1)
        made = 0
        while made < quota:
            template = rng.choice(templates)
            visitor += 1
            start = midnight + dt.timedelta(seconds=rng.randrange(0, 86_400 - 9 * 900))
            vid = f"{visitor:016x}"
            for position, (offset, kind, url, e_c, e_a, e_n, keyword) in enumerate(template.hits):
                if made == quota:
                    break
                chunk.append(
                    (
                        start + dt.timedelta(seconds=offset),
                        vid,
                        1,
                        template.network,
                        template.agent,
                        kind,
                        (url or "") + (template.campaign if position == 0 else ""),
                        template.referrer if position == 0 else f"{HOST}/",
                        template.language,
                        e_c,
                        e_a,
                        e_n,
                        keyword,
                        0,
                        0,
                    )
                )
                made += 1
                if len(chunk) == CHUNK:
                    chunks.append(chunk)
                    chunk = []
    if chunk:
        chunks.append(chunk)
    return chunks


def _state(directory: Path, database_url: str | None = None) -> State:
    from gardien.runtime import build_state, start
    from gardien.storage.migrate import upgrade

    directory.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=directory, database_url=database_url, register_file=SEED_REGISTER)
    state = build_state(settings)
    upgrade(state.engine)
    start(state)
    return state


def _fill(state: State, total: int, first_day: dt.date, days: int = DAYS, seed: int = 11) -> None:
    columns = ", ".join(HIT_COLUMNS)
    postgres = state.engine.dialect.name == "postgresql"
    indexes: list[str] = []
    if not postgres and days > 1:
        # Filling an indexed table row by row is most of the time: drop the secondary
        # indexes, fill, and create the very same ones again (their SQL as SQLite kept it).
        with state.engine.begin() as connection:
            found = connection.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                "AND tbl_name = 'analytics_hit' AND sql IS NOT NULL"
            ).all()
            for name, sql in found:
                connection.exec_driver_sql(f'DROP INDEX "{name}"')
                indexes.append(sql)
    for chunk in _rows(total, first_day, days, seed):
        with state.engine.begin() as connection:
            if postgres:
                cursor = connection.connection.cursor()
                with cursor.copy(f"COPY analytics_hit ({columns}) FROM STDIN") as copy:
                    for row in chunk:
                        copy.write_row(row)
            else:
                stamp = "%Y-%m-%d %H:%M:%S.%f"
                rows = [(row[0].strftime(stamp), *row[1:]) for row in chunk]  # type: ignore[attr-defined]
                connection.exec_driver_sql(
                    f"INSERT INTO analytics_hit ({columns}) "
                    f"VALUES ({', '.join('?' * len(HIT_COLUMNS))})",
                    rows,
                )
    with state.engine.begin() as connection:
        for sql in indexes:
            connection.exec_driver_sql(sql)
        if postgres:
            connection.exec_driver_sql("ANALYZE analytics_hit")


@dataclass(frozen=True)
class Measured:
    backend: str
    hits: int
    filled: float
    refresh: float
    incremental: float
    report: float
    report_best: float
    visits: int
    rollup_rows: int


def _measure(backend: str, directory: Path, hits: int, database_url: str | None = None) -> Measured:
    from sqlalchemy import func, select

    from gardien.analytics.models import AnalyticsDayRow
    from gardien.analytics.reports import build_report, refresh_rollups

    today = dt.datetime.now(dt.UTC).date()
    first_day = today - dt.timedelta(days=DAYS)
    last_day = today - dt.timedelta(days=1)
    state = _state(directory, database_url)
    try:
        started = time.perf_counter()
        _fill(state, hits, first_day)
        filled = time.perf_counter() - started

        started = time.perf_counter()
        refresh_rollups(state.sessions, state.register, state.clock)
        refresh = time.perf_counter() - started

        # One more minute of traffic on the last day, then the refresh the server runs.
        _fill(state, max(hits // DAYS // 1440, 10), last_day, days=1, seed=12)
        started = time.perf_counter()
        incremental_report = refresh_rollups(state.sessions, state.register, state.clock)
        incremental = time.perf_counter() - started
        assert incremental_report.recomputed, "the incremental refresh recomputed nothing"

        with state.sessions() as session:
            build_report(session, 1, first_day, last_day)  # warm-up, not timed
        timings = []
        visits = 0
        for _ in range(REPEATS):
            with state.sessions() as session:
                started = time.perf_counter()
                report = build_report(session, 1, first_day, last_day)
                timings.append(time.perf_counter() - started)
                visits = report.totals.visits
        with state.sessions() as session:
            rollup_rows = int(
                session.scalar(select(func.count()).select_from(AnalyticsDayRow)) or 0
            )
    finally:
        state.engine.dispose()
    return Measured(
        backend,
        hits,
        filled,
        refresh,
        incremental,
        statistics.median(timings),
        min(timings),
        visits,
        rollup_rows,
    )


def _room(directory: Path, hits: int) -> bool:
    free = shutil.disk_usage(directory).free
    needed = hits * BYTES_PER_HIT
    print(
        f"free disk in {directory}: {free / 1e9:.1f} GB; {hits:,} hits need about "
        f"{needed / 1e9:.1f} GB"
    )
    return free > needed * 1.5


def run(small: int = SMALL, big: int = BIG, postgres: bool = False) -> list[Verdict]:
    heading(f"analytics reports: a {DAYS}-day report over {big:,} and over {small:,} raw hits")
    measured: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="gardien-reports-") as directory:
        root = Path(directory)
        if not _room(root, big + small):
            print("not enough free disk for the large data set: lower --big")
            return [Verdict("analytics reports: 31 days over big vs small", "no disk", False)]
        backends: list[tuple[str, str | None]] = [("sqlite", None)]
        if postgres:
            from bench.connlog import DEFAULT_POSTGRES

            backends.append(
                ("postgresql", os.environ.get("GARDIEN_TEST_POSTGRES_URL", DEFAULT_POSTGRES))
            )
        for backend, url in backends:
            for hits in (small, big):
                if url is None:
                    measured.append(_measure(backend, root / f"{backend}-{hits}", hits))
                else:
                    from bench.connlog import _postgres_schema

                    with _postgres_schema(url) as schema_url:
                        if schema_url:
                            measured.append(
                                _measure(backend, root / f"pg-{hits}", hits, schema_url)
                            )
                print(f"  {backend}, {hits:,} hits measured", flush=True)
    print_table(
        [
            "backend",
            "raw hits",
            "fill s",
            "full refresh s",
            "hits/s",
            "1-min refresh s",
            "rollup rows",
            "visits",
            "report median ms",
            "best ms",
        ],
        [
            [
                m.backend,
                f"{m.hits:,}",
                f"{m.filled:.1f}",
                f"{m.refresh:.1f}",
                f"{m.hits / m.refresh:,.0f}",
                f"{m.incremental:.2f}",
                f"{m.rollup_rows:,}",
                f"{m.visits:,}",
                f"{m.report * 1000:.1f}",
                f"{m.report_best * 1000:.1f}",
            ]
            for m in measured
        ],
    )
    verdicts = []
    for backend in dict.fromkeys(m.backend for m in measured):
        pair = [m for m in measured if m.backend == backend]
        if len(pair) != 2:
            continue
        low, high = pair
        factor = ratio(high.report, low.report)
        print(
            f"{backend}: report ratio of medians {factor:.2f}, of best "
            f"{ratio(high.report_best, low.report_best):.2f} (target <= {TARGET:g}); full "
            f"rollup build of {high.hits:,} hits in {high.refresh:.0f} s"
        )
        verdicts.append(
            Verdict(
                f"analytics reports ({backend}): {DAYS} days over {high.hits:,} vs "
                f"{low.hits:,} hits <= {TARGET:g}x",
                f"{low.report * 1000:.1f} ms -> {high.report * 1000:.1f} ms ({factor:.2f}x)",
                factor <= TARGET,
            )
        )
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.analytics_reports", description=__doc__)
    parser.add_argument("--big", type=int, default=BIG, help="raw hits of the large set")
    parser.add_argument("--small", type=int, default=SMALL, help="raw hits of the small set")
    parser.add_argument("--postgres", action="store_true", help="measure PostgreSQL too")
    arguments = parser.parse_args()
    run(arguments.small, arguments.big, arguments.postgres)


if __name__ == "__main__":
    main()
