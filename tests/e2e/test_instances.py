"""Several instances from day one (DESIGN principle 7): two ``gardien serve`` processes on one
PostgreSQL database, on different ports, behind no shared memory at all.

- an admin session opened on one is valid on the other;
- sign-in failures counted on both lock the account on both; the public write budget of one
  address is spent through both;
- under a mixed write load through both, every acknowledged write is stored, the outbox's
  messages reach the SMTP server once each, and the consent and audit chains stay one chain
  (``gardien consent verify`` and ``gardien audit verify`` pass);
- retention runs every few seconds on both, yet runs never overlap in time and the rows of a
  purge are counted in one receipt only.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx
import pyotp
import pytest
from sqlalchemy import func, insert, select

from gardien.analytics.models import analytics_hit
from gardien.config import Settings
from gardien.forms.models import OutboxMessage
from gardien.retention.models import PurgeReceipt
from gardien.runtime import build_state, start
from gardien.security import service
from gardien.storage.migrate import upgrade
from tests.e2e.load import Load, connected, missing, unsent
from tests.forms.smtp import Mailbox, smtp_server
from tests.security.signin import PASSWORD
from tests.support import Server, gardien, gardien_env, serving

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


def prepare(tmp_path: Path, database_url: str, register_path: Path) -> dt.datetime:
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
                    for number in range(OLD_HITS)
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
