"""Rights: finding and exporting one person's data with 10,000 and with 1,000,000 other people.

Target (issue 8, reported, not enforced): the access package of one person (every provider's
``find`` and ``export``, the Art. 15 information and the ZIP, i.e. ``export_package``) costs
less than twice as much with a million other people in ``analytics_hit`` and
``connection_log`` as with ten thousand: lookups go through blind indexes, never scans.

One SQLite database (the default install) is filled with the person (a form submission,
analytics hits under their consent id and visitor id, connection-log rows under their IP),
then with other people bulk-inserted through the driver (``executemany``, random blind
indexes and ciphertext-sized blobs: only the lookups are measured, not the writers). The
export is timed at 10,000 others, the tables are grown to 1,000,000, and it is timed again
in the same run. Each timing is the median of ``REPEATS`` packages, each in a transaction
rolled back so the timeline and audit entries do not accumulate. ``BENCH_RIGHTS_BIG`` changes
the large size.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import statistics
import tempfile
import time
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


def _state(directory: Path) -> State:
    from gardien.runtime import build_state, start
    from gardien.storage.migrate import upgrade

    settings = Settings(data_dir=directory, register_file=SEED_REGISTER)
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


def _add_others(state: State, count: int) -> None:
    """``count`` other people's hits and requests, through the driver in chunks."""
    hits = (
        "INSERT INTO analytics_hit (site_id, received_at, visitor_id, network, action, url, "
        "new_visit, consented, consent_id, consent_id_index) "
        "VALUES (1, ?, ?, '198.51.0.0', 'pageview', 'https://www.cegedim-rx.ro/', 0, 1, ?, ?)"
    )
    requests = (
        "INSERT INTO connection_log (at, ip, ip_index, user_agent, method, path, status, "
        "latency_ms) VALUES (?, ?, ?, 'Mozilla/5.0', 'GET', '/', 200, 1.0)"
    )
    # Sequential index values insert at the end of each B-tree, so a million rows take
    # seconds, not minutes; the person's own values are HMACs, found by the same B-tree search.
    first = _others(state)
    blob = os.urandom(49)
    done = 0
    while done < count:
        size = min(CHUNK, count - done)
        numbers = range(first + done, first + done + size)
        with state.engine.begin() as connection:
            connection.exec_driver_sql(
                hits,
                [(WHEN, f"{n:016x}", blob, f"bench:{n:040x}") for n in numbers],
            )
            connection.exec_driver_sql(
                requests,
                [(WHEN, blob[:41], f"bench:{n:040x}") for n in numbers],
            )
        done += size


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


def run() -> list[Verdict]:
    heading(f"rights: one person's access package with {SMALL:,} and {BIG:,} other people")
    with tempfile.TemporaryDirectory(prefix="gardien-rights-") as directory:
        state = _state(Path(directory))
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
    factor = ratio(big, small)
    best = ratio(big_best, small_best)
    print_table(
        ["backend", "others per table", "records found", "median ms", "best ms"],
        [
            ["sqlite", f"{n:,}", str(found), f"{median * 1000:.1f}", f"{low * 1000:.1f}"]
            for n, found, median, low in (
                (SMALL, records, small, small_best),
                (BIG, big_records, big, big_best),
            )
        ],
    )
    print(
        f"ratio of medians {factor:.2f}, of best {best:.2f} (target < {TARGET:g}); "
        f"tables grown to {BIG:,} rows each in {filled:.0f} s"
    )
    return [
        Verdict(
            f"rights: find+export of one person, {BIG:,} vs {SMALL:,} others < {TARGET:g}x",
            f"{small * 1000:.1f} ms -> {big * 1000:.1f} ms ({factor:.2f}x, SQLite)",
            factor < TARGET,
        )
    ]


if __name__ == "__main__":
    run()
