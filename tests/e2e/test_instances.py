"""Several instances from day one (DESIGN principle 7): two ``gardien serve`` processes on one
PostgreSQL database, on different ports, behind no shared memory at all.

- an admin session opened on one is valid on the other;
- sign-in failures counted on both lock the account on both; the public write budget of one
  address is spent through both;
- under a mixed write load through both, every acknowledged write is stored, the outbox's
  messages reach the SMTP server once each, and the consent and audit chains stay one chain
  (``gardien consent verify`` and ``gardien audit verify`` pass);
- retention runs every few seconds on both, yet runs never overlap in time and the rows of a
  purge are counted in one receipt only;
- the analytics rollups, scheduled every 0.1 s on both, compute each day once in all: the
  days the two processes' logs report as refreshed add up to the days that changed;
- with ``GARDIEN_REDIS_URL`` set, the public write budget is one exact budget in Redis and
  the lockout still holds on both; with Redis unreachable, writes are counted in the database.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx
import pyotp
import pytest
import redis
from sqlalchemy import func, insert, select

from gardien.analytics.models import AnalyticsDay, analytics_hit
from gardien.config import Settings
from gardien.forms.models import OutboxMessage
from gardien.retention.models import PurgeReceipt
from gardien.runtime import build_state, start
from gardien.security import service
from gardien.security.keys import read_keys
from gardien.security.public_limits import PER_ADDRESS, budget_subject
from gardien.security.ratelimit import bucket_key, window_start
from gardien.storage.migrate import upgrade
from tests.e2e.load import Load, connected, missing, unsent
from tests.forms.smtp import Mailbox, smtp_server
from tests.security.signin import PASSWORD
from tests.support import Server, free_port, gardien, gardien_env, serving

pytestmark = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
ADMIN = "dpo@example.org"
OLD_HITS = 40
"""Audience hits two years old, past the register's retention, seeded before the start."""
ACKNOWLEDGED = 120


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def password_step(client: httpx.Client, password: str) -> httpx.Response:
    page = client.get("/admin/login")
    return client.post(
        "/admin/login",
        data={"email": ADMIN, "password": password, "csrf": csrf_of(page.text)},
    )


def sign_in(client: httpx.Client) -> None:
    """Password then TOTP enrolment, as a browser does; the session passes MFA."""
    answer = password_step(client, PASSWORD)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/mfa/enrol"
    page = client.get("/admin/mfa/enrol")
    secret = re.search(r"Or enter this key by hand: <code>([A-Z2-7]+)</code>", page.text)
    assert secret, page.text[:300]
    code = pyotp.TOTP(secret.group(1)).now()
    done = client.post("/admin/mfa/enrol", data={"code": code, "csrf": csrf_of(page.text)})
    assert done.status_code == 200, done.text[:300]


def receipts(database_url: str) -> list[tuple[str, str, str, int, dt.datetime, dt.datetime]]:
    with connected(database_url) as connection:
        rows = connection.execute(
            select(
                PurgeReceipt.run_id,
                PurgeReceipt.activity,
                PurgeReceipt.store,
                PurgeReceipt.rows_affected,
                PurgeReceipt.started_at,
                PurgeReceipt.finished_at,
            )
        ).all()
        return [tuple(row) for row in rows]


def count_old_hits(database_url: str, before: dt.datetime) -> int:
    with connected(database_url) as connection:
        query = select(func.count()).select_from(analytics_hit)
        return int(
            connection.execute(query.where(analytics_hit.c.received_at < before)).scalar_one()
        )


def prepare(
    tmp_path: Path, database_url: str, register_path: Path, old_hits: int = OLD_HITS
) -> dt.datetime:
    """Schema, keys, the admin account and two-year-old hits; returns the hits' cut-off."""
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, register_file=register_path
    )
    state = build_state(settings)
    try:
        upgrade(state.engine)
        start(state)
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=730)
        with state.sessions.begin() as session:
            service.create_user(session, ADMIN, "admin", PASSWORD, state.clock.now())
            if old_hits:
                session.execute(
                    insert(analytics_hit),
                    [
                        {
                            "site_id": 1,
                            "received_at": old + dt.timedelta(minutes=number),
                            "visitor_id": f"{number:016x}",
                            "action": "pageview",
                            "new_visit": 1,
                            "consented": 0,
                        }
                        for number in range(old_hits)
                    ],
                )
    finally:
        state.engine.dispose()
    return old + dt.timedelta(days=1)


def test_two_instances_share_everything_through_the_database(
    tmp_path: Path, register_path: Path, database_url: str
) -> None:
    source = register_path.read_text(encoding="utf-8")
    register_path.write_text(source.replace("min_fill_seconds: 3", "min_fill_seconds: 0", 1))
    cutoff = prepare(tmp_path, database_url, register_path)
    assert count_old_hits(database_url, cutoff) == OLD_HITS
    env = gardien_env(tmp_path / "data", database_url, register_path)
    env["GARDIEN_RETENTION_INTERVAL_HOURS"] = str(2 / 3600)  # a run every 2 s on each
    mailbox = Mailbox(delay=0.01)
    with smtp_server(mailbox) as port, ExitStack() as stack:
        env["GARDIEN_SMTP_URL"] = f"smtp://127.0.0.1:{port}"
        first = stack.enter_context(serving(env))
        second = stack.enter_context(serving(env))
        check_admin_session_and_lockout(first, second)
        check_public_budget(first, second)
        load = Load([first.url, second.url])
        pool = load.run(6)
        deadline = time.monotonic() + 60
        while len(load.acked()) < ACKNOWLEDGED and time.monotonic() < deadline:
            time.sleep(0.05)
        load.stop.set()
        pool.shutdown(wait=True)
        drained = time.monotonic() + 90
        while unsent(database_url) and time.monotonic() < drained:
            time.sleep(0.2)
    assert not [s for s in load.statuses if s >= 500], load.statuses
    assert len(load.acked()) >= ACKNOWLEDGED, load.statuses
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, register_file=register_path
    )
    state = build_state(settings)
    start(state)
    try:
        assert missing(state, load.acked()) == []
        with state.sessions() as session:
            queued = set(session.scalars(select(OutboxMessage.message_id)))
    finally:
        state.engine.dispose()
    assert unsent(database_url) == 0
    delivered = Counter(mailbox.message_ids())
    assert set(delivered) == queued and max(delivered.values()) == 1, "an e-mail went twice"
    check_retention_ran_one_at_a_time(database_url, cutoff)
    for chain in ("consent", "audit"):
        verified = gardien(chain, "verify", env=env)
        assert verified.returncode == 0, verified.stdout + verified.stderr


def check_admin_session_and_lockout(first: Server, second: Server) -> None:
    with httpx.Client(base_url=first.url) as on_first:
        sign_in(on_first)
        with httpx.Client(base_url=second.url, cookies=on_first.cookies) as on_second:
            page = on_second.get("/admin")
            assert page.status_code == 200 and ADMIN in page.text
            # An admin action on the second, with the session's CSRF token from the first.
            created = on_second.post(
                "/admin/tokens",
                data={
                    "name": "shared",
                    "role": "auditor",
                    "csrf": csrf_of(on_first.get("/admin").text),
                },
            )
            assert created.status_code == 200, created.text[:300]
    # Five wrong passwords, from two addresses, spread over both: the account is locked on
    # both, even with the right password.
    for number, server in enumerate([first, second, first, second, first]):
        headers = {"X-Forwarded-For": f"192.0.2.{number + 1}"}
        with httpx.Client(base_url=server.url, headers=headers) as client:
            refused = password_step(client, "not the password at all")
            assert refused.status_code in (400, 401, 429), refused.status_code
    for server in (first, second):
        headers = {"X-Forwarded-For": "192.0.2.200"}
        with httpx.Client(base_url=server.url, headers=headers) as client:
            locked = password_step(client, PASSWORD)
            assert locked.status_code != 303, "signed in past the lockout"
            assert "too many failed attempts" in locked.text


def check_public_budget(first: Server, second: Server) -> None:
    """One address's 60 public writes a minute, spent on both instances: the budget is one.

    Each instance decides from its own counts plus the shared totals it last read, and merges
    within a second (the documented slack); the pauses let each merge happen: the first's 40
    reach the database with no request after them, the second reads them on its first
    request for that address, and then refuses past 60 in all."""
    headers = {"X-Forwarded-For": "198.51.100.7", "Content-Type": "application/json"}

    def send(server: Server, times: int) -> list[int]:
        with httpx.Client(base_url=server.url, headers=headers) as client:
            return [
                client.post("/api/consent/records", content=b"{}").status_code for _ in range(times)
            ]

    # The budget's window is the clock's minute: start early enough in one to finish in it.
    into_minute = dt.datetime.now(dt.UTC).second
    if into_minute > 45:
        time.sleep(61 - into_minute)
    statuses = send(first, 40)
    time.sleep(2.5)
    statuses += send(second, 1)
    time.sleep(1.5)
    statuses += send(second, 39)
    assert statuses[:41] == [400] * 41
    assert Counter(statuses) == {400: 60, 429: 20}


def check_retention_ran_one_at_a_time(database_url: str, cutoff: dt.datetime) -> None:
    assert count_old_hits(database_url, cutoff) == 0
    found = receipts(database_url)
    runs: dict[str, list[dt.datetime]] = {}
    for run_id, _, _, _, started, finished in found:
        runs.setdefault(run_id, []).extend([started, finished])
    assert len(runs) >= 2, "retention did not run on a schedule"
    spans = sorted((min(times), max(times)) for times in runs.values())
    for (_, end), (begin, _) in zip(spans, spans[1:], strict=False):
        assert end <= begin, "two retention runs overlapped"
    purged: Counter[tuple[str, str]] = Counter()
    for _, activity, store, rows, _, _ in found:
        purged[(activity, store)] += rows
    hits = [key for key in purged if "hit" in key[1]]
    assert hits, purged
    assert sum(purged[key] for key in hits) == OLD_HITS, purged


ROLLUP_DAYS = 30
HITS_PER_DAY = 200


def rolled_up(database_url: str) -> tuple[int, int]:
    """Days with a rollup, and the raw hits they were computed from."""
    with connected(database_url) as connection:
        days, hits = connection.execute(
            select(func.count(), func.coalesce(func.sum(AnalyticsDay.hits), 0))
        ).one()
        return int(days), int(hits)


def refreshed_days(server: Server) -> list[int]:
    """Stop ``server`` and read from its log the days each of its rollup refreshes computed."""
    server.process.terminate()
    _, err = server.process.communicate(timeout=30)
    days = []
    for line in err.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == "analytics rollups refreshed":
                days.append(int(entry["days"]))
    return days


def test_two_instances_refresh_the_rollups_one_at_a_time(
    tmp_path: Path, register_path: Path, database_url: str
) -> None:
    """Both instances run the rollup schedule every 0.1 s; the hits of 30 days arrive while
    both are running. A refresh computes the days one by one and moves the watermark only at
    its end, so an instance starting a refresh while the other's runs would compute the same
    days again: the days the two logs report add up to 30, each day once."""
    prepare(tmp_path, database_url, register_path, old_hits=0)
    env = gardien_env(tmp_path / "data", database_url, register_path)
    env["GARDIEN_ANALYTICS_ROLLUP_SECONDS"] = "0.1"
    env["GARDIEN_LOG_LEVEL"] = "INFO"  # the refreshes' log lines (no request is made)
    with ExitStack() as stack:
        servers = [stack.enter_context(serving(env)) for _ in range(2)]
        today = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
        with connected(database_url, write=True) as connection:
            connection.execute(
                insert(analytics_hit),
                [
                    {
                        "site_id": 1,
                        "received_at": today - dt.timedelta(days=day, seconds=number),
                        "visitor_id": f"{number % 20:016x}",
                        "action": "pageview",
                        "url": f"https://www.example.org/page/{number % 7}",
                        "new_visit": 0,
                        "consented": 0,
                    }
                    for day in range(1, ROLLUP_DAYS + 1)
                    for number in range(HITS_PER_DAY)
                ],
            )
        deadline = time.monotonic() + 120
        while rolled_up(database_url)[0] < ROLLUP_DAYS and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # twenty more turns of each schedule
        assert rolled_up(database_url) == (ROLLUP_DAYS, ROLLUP_DAYS * HITS_PER_DAY)
        logged = [refreshed_days(server) for server in servers]
    assert sum(map(sum, logged)) == ROLLUP_DAYS, logged


REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_count(
    tmp_path: Path, database_url: str, register_path: Path, scope: str, subject: str
) -> int:
    """The count of this installation's bucket ``(scope, subject)`` of the current minute."""
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, register_file=register_path
    )
    secret = read_keys(settings).hmac_key
    start = window_start(dt.datetime.now(dt.UTC), dt.timedelta(minutes=1))
    client = redis.Redis.from_url(REDIS_URL)
    try:
        key = f"gardien:rate:{bucket_key(secret, scope, subject)}:{int(start.timestamp())}"
        value = client.get(key)
    finally:
        client.close()
    return int(value or 0)


def test_two_instances_with_redis_share_one_exact_budget_and_the_lockout(
    tmp_path: Path, register_path: Path, database_url: str
) -> None:
    """With ``GARDIEN_REDIS_URL`` the public write budget is counted in Redis: a burst sent
    alternately to both instances, without a pause, is admitted 60 times in all, not 60 plus
    what the database path's one-second merges would let through; the sign-in lockout (in the
    database) holds on both."""
    prepare(tmp_path, database_url, register_path, old_hits=0)
    env = gardien_env(tmp_path / "data", database_url, register_path)
    env["GARDIEN_REDIS_URL"] = REDIS_URL
    address = "198.51.100.9"
    headers = {"X-Forwarded-For": address, "Content-Type": "application/json"}
    with ExitStack() as stack:
        first, second = (stack.enter_context(serving(env)) for _ in range(2))
        check_admin_session_and_lockout(first, second)
        clients = [
            stack.enter_context(httpx.Client(base_url=server.url, headers=headers))
            for server in (first, second)
        ]
        into_minute = dt.datetime.now(dt.UTC).second
        if into_minute > 45:
            time.sleep(61 - into_minute)
        statuses = [
            clients[number % 2].post("/api/consent/records", content=b"{}").status_code
            for number in range(80)
        ]
        counted = redis_count(
            tmp_path, database_url, register_path, PER_ADDRESS.scope, budget_subject(address)
        )
    assert statuses == [400] * 60 + [429] * 20
    # Every request of the burst went through Redis, the refused ones included.
    assert counted == 80


def test_an_unreachable_redis_leaves_the_budget_to_the_database(
    tmp_path: Path, register_path: Path, database_url: str
) -> None:
    """Redis down (nothing listens on the port): public writes are still answered, counted
    by the database path, which one instance keeps exact; the log says why, by error type."""
    prepare(tmp_path, database_url, register_path, old_hits=0)
    env = gardien_env(tmp_path / "data", database_url, register_path)
    env["GARDIEN_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    headers = {"X-Forwarded-For": "198.51.100.10", "Content-Type": "application/json"}
    with serving(env) as server, httpx.Client(base_url=server.url, headers=headers) as client:
        into_minute = dt.datetime.now(dt.UTC).second
        if into_minute > 45:
            time.sleep(61 - into_minute)
        statuses = [
            client.post("/api/consent/records", content=b"{}").status_code for _ in range(65)
        ]
        server.process.terminate()
        _, err = server.process.communicate(timeout=30)
    assert statuses == [400] * 60 + [429] * 5
    assert "rate limits: Redis unavailable" in err
