"""Signing in to the admin the way a browser does (login form, TOTP), for the attack tests.

Every helper goes through the real pages: the login CSRF cookie, the password step, TOTP
enrolment or the second-factor page. Codes come from ``pyotp`` at the app's frozen clock, so a
test that needs a second code advances the clock by one 30-second step first.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import httpx2 as httpx
import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select

from gardien.deps import State
from gardien.models import metadata
from gardien.security import service
from gardien.storage.clock import FrozenClock

PASSWORD = "correct horse battery staple"
STEP = dt.timedelta(seconds=30)
UNSNAPSHOTTED = {"connection_log"}
"""Tables every request writes to by design (one row per request), left out of snapshots."""
VOLATILE = {("admin_session", "last_seen_at"), ("api_token", "last_used_at")}
"""Columns that move on every authenticated request, left out of snapshots."""


def add_user(state: State, email: str, role: str, password: str = PASSWORD) -> int:
    with state.sessions.begin() as session:
        return service.create_user(session, email, role, password, state.clock.now()).id


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def totp(secret: str, clock: FrozenClock) -> str:
    return str(pyotp.TOTP(secret).at(clock.now()))


def new_client(client: TestClient, ip: str = "testclient") -> TestClient:
    """Another browser (own cookie jar) on the same app, optionally from another address."""
    return TestClient(client.app, raise_server_exceptions=False, client=(ip, 50000))


def submit_password(client: TestClient, email: str, password: str = PASSWORD) -> httpx.Response:
    form = client.get("/admin/login")
    assert form.status_code == 200
    return client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )


@dataclass
class SignedIn:
    client: TestClient
    secret: str

    @property
    def csrf(self) -> str:
        return csrf_of(self.client.get("/admin").text)


def enrol(client: TestClient, clock: FrozenClock, email: str) -> SignedIn:
    """First sign-in of an account: password, then TOTP enrolment (the session passes MFA)."""
    answer = submit_password(client, email)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/admin/mfa/enrol"
    page = client.get("/admin/mfa/enrol")
    secret = re.search(r"Or enter this key by hand: <code>([A-Z2-7]+)</code>", page.text)
    assert secret, "no TOTP key on the enrolment page"
    done = client.post(
        "/admin/mfa/enrol",
        data={"code": totp(secret.group(1), clock), "csrf": csrf_of(page.text)},
    )
    assert done.status_code == 200, done.text
    assert client.get("/admin", follow_redirects=False).status_code == 200
    return SignedIn(client, secret.group(1))


def second_factor(client: TestClient, clock: FrozenClock, email: str, secret: str) -> None:
    """A later sign-in: password, then a fresh TOTP code (one step after the last one used)."""
    answer = submit_password(client, email)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/admin/mfa"
    clock.advance(STEP)
    page = client.get("/admin/mfa")
    done = client.post(
        "/admin/mfa",
        data={"code": totp(secret, clock), "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text


def signed_in(
    client: TestClient, state: State, clock: FrozenClock, email: str, role: str
) -> SignedIn:
    add_user(state, email, role)
    return enrol(client, clock, email)


def create_token(session: SignedIn, name: str, role: str) -> str:
    """Create an API token through the admin page; returns the secret shown once."""
    page = session.client.get("/admin/tokens")
    created = session.client.post(
        "/admin/tokens", data={"name": name, "role": role, "csrf": csrf_of(page.text)}
    )
    assert created.status_code == 200, created.text
    token = re.search(r'<code class="hash">(gdn_[A-Za-z0-9_-]+)</code>', created.text)
    assert token, "the new token is not shown"
    return token.group(1)


Snapshot = dict[str, list[tuple[object, ...]]]


def snapshot(state: State) -> Snapshot:
    """Every row of every table (decrypted), minus the columns that mark activity."""
    present = set(inspect(state.engine).get_table_names())
    rows: Snapshot = {}
    with state.sessions() as session:
        for table in metadata.sorted_tables:
            if table.name not in present or table.name in UNSNAPSHOTTED:
                continue
            columns = [c for c in table.columns if (table.name, c.name) not in VOLATILE]
            query = select(*columns)
            if table.name == "audit_entry":
                # Refused requests leave a trace by design (see ``auth.refused``); what a
                # snapshot compares is everything else.
                query = query.where(table.c.action.is_distinct_from("access.refused"))
            found = session.execute(query).all()
            rows[table.name] = sorted((tuple(row) for row in found), key=repr)
    return rows
