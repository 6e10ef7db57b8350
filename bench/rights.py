"""Rights: finding and exporting one person's data with 10,000 and with 1,000,000 other people.

Target (issue 8, reported, not enforced): the access package of one person (every provider's
``find`` and ``export``, the Art. 15 information and the ZIP, i.e. ``export_package``) costs
less than twice as much with a million other people in ``analytics_hit`` and
``connection_log`` as with ten thousand: lookups go through blind indexes, never scans.

One SQLite database (the default install) is filled with the person (a form submission,
analytics hits under their consent id and visitor id, connection-log rows under their IP),
then with other people bulk-inserted through the driver (blind-index values of the right
shape, ciphertext-sized blobs: only the lookups are measured, not the writers). The
export is timed at 10,000 others, the tables are grown to 1,000,000, and it is timed again
in the same run. Each timing is the median of ``REPEATS`` packages, each in a transaction
rolled back so the timeline and audit entries do not accumulate. ``BENCH_RIGHTS_BIG`` changes
the large size; PostgreSQL (``GARDIEN_TEST_POSTGRES_URL``, else the local test server) is
measured too unless ``BENCH_RIGHTS_POSTGRES=0``, filled with ``COPY`` and then analysed.

Known limit, found here: once SQLite has statistics (``ANALYZE``, ``PRAGMA optimize``), it
plans ``analytics_hit``'s ``visitor_id = ? OR user_id_index IN (...) OR consent_id_index IN
(...)`` as a full scan, because ``sqlite_stat1`` counts the NULLs of ``user_id_index`` (most
hits have no user id) as one value matching every row: 17x slower at a million rows. Gardien
never analyses SQLite, so the bench does not either; partial indexes (``WHERE ... IS NOT
NULL``) or one query per identifier in the analytics provider would remove the trap.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import SEED_REGISTER, Verdict, heading, print_table, ratio
from gardien.config import Settings
from gardien.deps import State
from gardien.security.audit import Actor
from gardien.storage.subjects import SubjectIdentity

SMALL = 10_000
BIG = int(os.environ.get("BENCH_RIGHTS_BIG", "1000000"))
CHUNK = 50_000
REPEATS = 30
TARGET = 2.0
EMAIL = "ana.popescu@clinica.example.ro"
CONSENT_ID = "5f0e0c4b8a3d4e2f9a1b2c3d4e5f6a7b"
VISITOR_ID = "a1b2c3d4e5f60718"
IP = "203.0.113.7"
DPO = Actor("bench", "dpo")
WHEN = "2026-03-10 12:00:00.000000"
URL = "https://www.cegedim-rx.ro/"


def _state(directory: Path, database_url: str | None = None) -> State:
    from gardien.runtime import build_state, start
    from gardien.storage.migrate import upgrade

    settings = Settings(data_dir=directory, register_file=SEED_REGISTER, database_url=database_url)
    state = build_state(settings)
    upgrade(state.engine)
    start(state)
    return state


def _seed_person(state: State) -> None:
    from gardien.analytics.models import CONSENT_ID_INDEX_CONTEXT, AnalyticsHit
    from gardien.forms.models import FormSubmission
    from gardien.forms.provider import email_index
    from gardien.security.connection_log import IP_INDEX_CONTEXT, ConnectionLogEntry
    from gardien.security.crypto import blind_index

    at = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
    with state.sessions.begin() as session:
        session.add(
            FormSubmission(
                public_id=secrets.token_hex(8),
                form_id="contact",
                activity="contact_forms",
                received_at=at,
                delete_after=at + dt.timedelta(days=90),
                language="ro",
                fields=json.dumps({"email": EMAIL, "last_name": "Popescu", "message": "Salut"}),
                email_index=email_index(EMAIL),
                legal_basis="consent",
                duplicate_key=secrets.token_hex(16),
            )
        )
        for visitor in (VISITOR_ID, "00000000000000aa", "00000000000000aa"):
            session.add(
                AnalyticsHit(
                    site_id=1,
                    received_at=at,
                    visitor_id=visitor,
                    action="pageview",
                    url="https://www.cegedim-rx.ro/",
                    new_visit=0,
                    consented=1,
                    consent_id=CONSENT_ID,
                    consent_id_index=blind_index(CONSENT_ID, CONSENT_ID_INDEX_CONTEXT),
                )
            )
        for minute in range(5):
            session.add(
                ConnectionLogEntry(
                    at=at + dt.timedelta(minutes=minute),
                    ip=IP,
                    ip_index=blind_index(IP, IP_INDEX_CONTEXT, "ip"),
                    method="GET",
                    path="/",
                    status=200,
                    latency_ms=1.0,
                )
            )


HIT_COLUMNS = (
    "received_at, visitor_id, consent_id, consent_id_index, site_id, network, action, url, "
    "new_visit, consented"
)
REQUEST_COLUMNS = "at, ip, ip_index, user_agent, method, path, status, latency_ms"


def _add_others(state: State, count: int) -> None:
    """``count`` other people's hits and requests: ``executemany`` on SQLite, ``COPY`` on
    PostgreSQL, in chunks. Sequential index values insert at the end of each B-tree, so a
    million rows take seconds, not minutes; the person's own values are HMACs, found by the
    same B-tree search."""
    first = _others(state)
    blob = os.urandom(49)
    done = 0
    while done < count:
        size = min(CHUNK, count - done)
        numbers = range(first + done, first + done + size)
        hits = [
            (WHEN, f"{n:016x}", blob, f"bench:{n:040x}", 1, "198.51.0.0", "pageview", URL, 0, 1)
            for n in numbers
        ]
        requests = [
            (WHEN, blob[:41], f"bench:{n:040x}", "Mozilla/5.0", "GET", "/", 200, 1.0)
            for n in numbers
        ]
        with state.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                cursor = connection.connection.cursor()
                for table, columns, rows in (
                    ("analytics_hit", HIT_COLUMNS, hits),
                    ("connection_log", REQUEST_COLUMNS, requests),
                ):
                    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
            else:
                connection.exec_driver_sql(
                    f"INSERT INTO analytics_hit ({HIT_COLUMNS}) VALUES ({', '.join('?' * 10)})",
                    hits,
                )
                connection.exec_driver_sql(
                    f"INSERT INTO connection_log ({REQUEST_COLUMNS}) VALUES ({', '.join('?' * 8)})",
                    requests,
                )
        done += size
    if state.engine.dialect.name == "postgresql":
        # Planner statistics as autovacuum keeps them. Not on SQLite: Gardien never runs
        # ANALYZE there, and with statistics SQLite plans the analytics provider's OR of
        # mostly-NULL blind indexes as a full scan (see the module docstring).
        with state.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")


def _others(state: State) -> int:
    with state.engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT count(*) FROM connection_log").scalar_one())


def _time_export(state: State) -> tuple[float, float, int]:
    """Median and best seconds of one person's access package, and its record count."""
    from gardien.rights.service import Desk, export_package, open_case

    desk = Desk(state.register, state.providers)
    subject = SubjectIdentity(
        email=EMAIL, consent_id=CONSENT_ID, visitor_id=VISITOR_ID, ip_address=IP
    )
    timings: list[float] = []
    records = 0
    for _ in range(REPEATS):
        with state.sessions() as session:
            now = dt.datetime.now(dt.UTC)
            case = open_case(session, desk, subject, ["access"], channel="cli", now=now, actor=DPO)
            started = time.perf_counter()
            package = export_package(session, desk, case, subject, now=now, actor=DPO)
            timings.append(time.perf_counter() - started)
            records = sum(found.total for found in package.found.values())
            session.rollback()
    return statistics.median(timings), min(timings), records


@dataclass(frozen=True)
class Measured:
    backend: str
    small: float
    small_best: float
    big: float
    big_best: float
    records: int
    filled: float


def _measure(backend: str, directory: Path, database_url: str | None = None) -> Measured:
    state = _state(directory, database_url)
    try:
        _seed_person(state)
        started = time.perf_counter()
        _add_others(state, SMALL)
        small, small_best, records = _time_export(state)
        _add_others(state, BIG - SMALL)
        filled = time.perf_counter() - started
        big, big_best, big_records = _time_export(state)
    finally:
        state.engine.dispose()
    assert records == big_records, "the person's records changed between the two sizes"
    return Measured(backend, small, small_best, big, big_best, records, filled)


def run() -> list[Verdict]:
    from bench.connlog import DEFAULT_POSTGRES, _postgres_schema

    heading(f"rights: one person's access package with {SMALL:,} and {BIG:,} other people")
    measured: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="gardien-rights-") as directory:
        measured.append(_measure("sqlite", Path(directory) / "sqlite"))
        if os.environ.get("BENCH_RIGHTS_POSTGRES", "1") != "0":
            url = os.environ.get("GARDIEN_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
            with _postgres_schema(url) as schema_url:
                if schema_url:
                    measured.append(_measure("postgresql", Path(directory) / "pg", schema_url))
    rows: list[list[str]] = []
    for m in measured:
        for others, median, best in ((SMALL, m.small, m.small_best), (BIG, m.big, m.big_best)):
            rows.append(
                [
                    m.backend,
                    f"{others:,}",
                    str(m.records),
                    f"{median * 1000:.1f}",
                    f"{best * 1000:.1f}",
                ]
            )
    print_table(["backend", "others per table", "records found", "median ms", "best ms"], rows)
    verdicts = []
    for m in measured:
        factor = ratio(m.big, m.small)
        print(
            f"{m.backend}: ratio of medians {factor:.2f}, of best "
            f"{ratio(m.big_best, m.small_best):.2f} (target < {TARGET:g}); tables grown to "
            f"{BIG:,} rows each in {m.filled:.0f} s"
        )
        verdicts.append(
            Verdict(
                f"rights ({m.backend}): find+export of one person, {BIG:,} vs {SMALL:,} "
                f"others < {TARGET:g}x",
                f"{m.small * 1000:.1f} ms -> {m.big * 1000:.1f} ms ({factor:.2f}x)",
                factor < TARGET,
            )
        )
    return verdicts


if __name__ == "__main__":
    run()
