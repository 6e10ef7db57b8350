"""What an attacker tries against the admin, and what they get: forged forms, replayed codes,
stale sessions, password guessing, SQL- and script-shaped input, oversized bodies.

Where a refusal is tested, the same request is also shown to succeed when it is legitimate, so
the refusal cannot come from a malformed request instead of the defence under test. Tests marked
Each test named after a bug pins its fix.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gardien.app import create_app
from gardien.config import Settings
from gardien.deps import State
from gardien.security import service
from gardien.security.auth import COOKIE
from gardien.security.models import AdminSession, AdminUser, AuditEntry, AuthThrottle
from gardien.storage.clock import FrozenClock
from tests.security.routes import admin_routes, call, refused
from tests.security.signin import (
    PASSWORD,
    STEP,
    add_user,
    create_token,
    csrf_of,
    new_client,
    second_factor,
    signed_in,
    snapshot,
    submit_password,
    totp,
)

WRONG = "wrong password, certainly"


def users(state: State) -> dict[int, str]:
    with state.sessions() as session:
        return {u.id: u.email for u in session.scalars(select(AdminUser))}


def refusals(state: State) -> list[tuple[str | None, str | None]]:
    with state.sessions() as session:
        return [
            (entry.target_type, entry.outcome)
            for entry in session.scalars(
                select(AuditEntry).where(AuditEntry.action == "access.refused")
            )
        ]


# -- CSRF ----------------------------------------------------------------------------------


def test_a_forged_form_changes_nothing_on_any_admin_post(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    victim = add_user(state, "victim@example.org", "agent")  # user 1: what disable would hit
    admin = signed_in(client, state, clock, "admin@example.org", "admin")
    create_token(admin, "cron", "auditor")  # token 1: what revoke would hit
    elsewhere = new_client(client)  # the same admin signed in on another device
    second_factor(elsewhere, clock, "admin@example.org", admin.secret)
    foreign = csrf_of(elsewhere.get("/admin").text)
    assert foreign != admin.csrf
    clock.advance(STEP)
    code = totp(admin.secret, clock)  # a valid code: only the CSRF token is wrong
    posts = [r for r in admin_routes(client.app) if r.method == "POST"]  # type: ignore[arg-type]
    assert {r.path for r in posts} >= {"/admin/users", "/admin/logout", "/admin/password"}
    own = admin.csrf
    before = snapshot(state)
    for route in posts:
        for forged in (foreign, "A" * 43, own + "x", own[:-1]):
            answer = call(admin.client, route, forged, code=code)
            assert answer.status_code == 403, f"{route} answered {answer.status_code}"
    assert snapshot(state) == before
    # each refusal of a signed-in user left its trace (the login form has no user yet)
    traced = [r for r in posts if r.path != "/admin/login"]
    assert refusals(state) == [("route", "refused")] * (4 * len(traced))
    assert admin.client.get("/admin").status_code == 200  # still signed in (logout refused)
    # the same forms with the session's own token do act
    created = admin.client.post(
        "/admin/users",
        data={"email": "new@example.org", "role": "agent", "password": PASSWORD, "csrf": own},
        follow_redirects=False,
    )
    assert created.status_code == 303
    disabled = admin.client.post(
        f"/admin/users/{victim}/disable", data={"csrf": own}, follow_redirects=False
    )
    assert disabled.status_code == 303
    revoked = admin.client.post(
        "/admin/tokens/1/revoke", data={"csrf": own}, follow_redirects=False
    )
    assert revoked.status_code == 303
    assert snapshot(state) != before


def test_a_half_signed_in_session_needs_its_csrf_token_for_the_code(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    admin = signed_in(client, state, clock, "admin@example.org", "admin")
    client.post("/admin/logout", data={"csrf": admin.csrf})
    assert submit_password(client, "admin@example.org").status_code == 303
    clock.advance(STEP)
    code = totp(admin.secret, clock)
    forged = client.post("/admin/mfa", data={"code": code, "csrf": "A" * 43})
    assert forged.status_code == 403
    assert client.get("/admin", follow_redirects=False).status_code == 303
    page = client.get("/admin/mfa")
    passed = client.post(
        "/admin/mfa", data={"code": code, "csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert passed.status_code == 303  # the refused attempt did not burn the code


def test_the_login_form_needs_its_own_cookie_and_field(client: TestClient, state: State) -> None:
    add_user(state, "admin@example.org", "admin")
    client.get("/admin/login")
    before = snapshot(state)
    forged = client.post(
        "/admin/login",
        data={"email": "admin@example.org", "password": PASSWORD, "csrf": "A" * 43},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert COOKIE not in forged.cookies
    assert snapshot(state) == before  # no session, no failure counted, no audit entry
    assert submit_password(client, "admin@example.org").status_code == 303


# -- TOTP replay ---------------------------------------------------------------------------


def _password_then(client: TestClient, email: str, code: str) -> int:
    assert submit_password(client, email).status_code == 303
    page = client.get("/admin/mfa")
    answer = client.post(
        "/admin/mfa", data={"code": code, "csrf": csrf_of(page.text)}, follow_redirects=False
    )
    return answer.status_code


def test_a_totp_code_works_once_across_sessions_and_older_steps_stay_dead(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    admin = signed_in(client, state, clock, "admin@example.org", "admin")
    enrolment_code = totp(admin.secret, clock)
    attacker = new_client(client, "203.0.113.5")
    # the code typed at enrolment, seen over the shoulder, is dead at once
    assert _password_then(attacker, "admin@example.org", enrolment_code) == 401
    clock.advance(STEP)
    fresh = totp(admin.secret, clock)
    assert _password_then(new_client(client), "admin@example.org", fresh) == 303
    # the attacker who saw the fresh code, in the same 30 seconds, is refused
    assert _password_then(new_client(client, "203.0.113.6"), "admin@example.org", fresh) == 401
    # and so in the next step, though clock-drift tolerance accepts the previous step's code
    clock.advance(STEP)
    assert _password_then(new_client(client, "203.0.113.7"), "admin@example.org", fresh) == 401
    latest = totp(admin.secret, clock)
    assert _password_then(new_client(client, "203.0.113.8"), "admin@example.org", latest) == 303


# -- session lifetime ----------------------------------------------------------------------


def test_an_idle_session_ends_after_30_minutes(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    csrf = signed_in(client, state, clock, "admin@example.org", "admin").csrf
    clock.advance(dt.timedelta(minutes=29))
    assert client.get("/admin").status_code == 200  # activity moves the idle deadline
    clock.advance(dt.timedelta(minutes=29))
    assert client.get("/admin").status_code == 200
    clock.advance(dt.timedelta(minutes=31))
    answer = client.get("/admin", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/login"
    assert client.get("/admin/api/me").status_code == 401
    stale = client.post(
        "/admin/users",
        data={"email": "late@example.org", "role": "agent", "password": PASSWORD, "csrf": csrf},
        follow_redirects=False,
    )
    assert refused(stale)
    assert "late@example.org" not in users(state).values()


def test_a_busy_session_still_ends_after_12_hours(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    signed_in(client, state, clock, "admin@example.org", "admin")
    for _ in range(35):  # 11 h 40 min of activity every 20 minutes
        clock.advance(dt.timedelta(minutes=20))
        assert client.get("/admin", follow_redirects=False).status_code == 200
    clock.advance(dt.timedelta(minutes=20))  # 12 h after sign-in
    answer = client.get("/admin", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/login"


def test_session_cookie_attributes(settings: Settings, state: State, clock: FrozenClock) -> None:
    add_user(state, "admin@example.org", "admin")
    secure = settings.model_copy(update={"secure_cookies": True})  # GARDIEN_SECURE_COOKIES=1
    served = dataclasses.replace(state, settings=secure)
    app = create_app(secure, state=served, scheduler=False)
    with TestClient(app, base_url="https://testserver") as browser:  # Secure cookies need https
        answer = submit_password(browser, "admin@example.org")
    [cookie] = [c.lower() for c in answer.headers.get_list("set-cookie") if c.startswith(COOKIE)]
    for attribute in ("httponly", "samesite=strict", "path=/admin", "secure", "max-age=43200"):
        assert attribute in cookie, attribute
    with state.sessions() as session:
        [stored] = session.scalars(select(AdminSession.token_hash)).all()
    token = cookie.split(";", 1)[0].split("=", 1)[1]
    assert token not in stored  # the table holds a hash, never the token


# -- password guessing ---------------------------------------------------------------------


def _attempt(client: TestClient, email: str, password: str) -> tuple[int, str | None]:
    answer = submit_password(client, email, password)
    return answer.status_code, answer.headers.get("retry-after")


def test_five_wrong_passwords_lock_the_account_from_everywhere(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    add_user(state, "dpo@example.org", "dpo")
    attacker = new_client(client, "203.0.113.10")
    for _ in range(service.FREE_FAILURES):
        assert _attempt(attacker, "dpo@example.org", WRONG) == (401, None)
    status, retry = _attempt(attacker, "dpo@example.org", PASSWORD)  # right, but too late
    assert status == 429
    assert retry is not None and 1 <= int(retry) <= 60
    # the real owner, from another address, is locked too (per-account lock)
    owner = new_client(client, "198.51.100.20")
    assert _attempt(owner, "DPO@example.org", PASSWORD)[0] == 429
    clock.advance(dt.timedelta(seconds=61))
    assert _attempt(owner, "dpo@example.org", PASSWORD)[0] == 303
    # the success reset the account's count: the next lone mistake is forgiven
    assert _attempt(new_client(client, "198.51.100.21"), "dpo@example.org", WRONG) == (401, None)


def test_the_lock_doubles_with_each_further_failure(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    add_user(state, "dpo@example.org", "dpo")
    expected = [60, 120, 240, 480]
    for lock in expected:
        attacker = new_client(client, f"203.0.113.{lock % 250}")
        while True:
            status, retry = _attempt(attacker, "dpo@example.org", WRONG)
            if status == 429:
                break
            assert status == 401
        assert retry is not None and lock - 1 <= int(retry) <= lock
        clock.advance(dt.timedelta(seconds=lock + 1))
    assert _attempt(client, "dpo@example.org", PASSWORD)[0] == 303


def test_five_failures_from_one_address_lock_that_address_for_every_account(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    add_user(state, "dpo@example.org", "dpo")
    add_user(state, "agent@example.org", "agent")
    sprayer = new_client(client, "203.0.113.30")
    # spread over accounts, existing or not: no account reaches five, the address does
    for email in ("dpo@example.org", "agent@example.org", "nobody@example.org", "x@y.org"):
        assert _attempt(sprayer, email, WRONG)[0] == 401
    assert _attempt(sprayer, "agent@example.org", PASSWORD)[0] == 303  # 4 failures: still open
    assert _attempt(sprayer, "ghost@example.org", WRONG)[0] == 401  # the 5th failure
    status, retry = _attempt(sprayer, "agent@example.org", PASSWORD)
    assert status == 429 and retry is not None
    assert _attempt(sprayer, "dpo@example.org", PASSWORD)[0] == 429
    # the same accounts from another address are not locked
    assert _attempt(new_client(client, "198.51.100.40"), "dpo@example.org", PASSWORD)[0] == 303


def test_a_guess_at_an_unknown_account_looks_like_a_wrong_password(
    client: TestClient, state: State
) -> None:
    add_user(state, "dpo@example.org", "dpo")
    wrong = submit_password(new_client(client, "192.0.2.1"), "dpo@example.org", WRONG)
    unknown = submit_password(new_client(client, "192.0.2.2"), "nobody@example.org", WRONG)
    assert wrong.status_code == unknown.status_code == 401
    message = re.compile(r'<p class="error" role="alert" id="login-error">([^<]+)</p>')
    assert message.findall(wrong.text) == message.findall(unknown.text) != []


def test_five_wrong_codes_lock_the_second_factor(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    admin = signed_in(client, state, clock, "admin@example.org", "admin")
    client.post("/admin/logout", data={"csrf": admin.csrf})
    attacker = new_client(client, "203.0.113.50")
    assert submit_password(attacker, "admin@example.org").status_code == 303  # stolen password
    csrf = csrf_of(attacker.get("/admin/mfa").text)
    for guess in ("000000", "111111", "222222", "333333", "444444"):
        assert attacker.post("/admin/mfa", data={"code": guess, "csrf": csrf}).status_code == 401
    clock.advance(STEP)
    right = attacker.post("/admin/mfa", data={"code": totp(admin.secret, clock), "csrf": csrf})
    assert right.status_code == 429
    assert int(right.headers["retry-after"]) >= 1


def test_a_unicode_spelling_of_the_address_does_not_dodge_the_account_lock(
    client: TestClient, state: State
) -> None:
    add_user(state, "dpo@example.org", "dpo")
    for _ in range(service.FREE_FAILURES):
        assert _attempt(new_client(client, "203.0.113.60"), "dpo@example.org", WRONG)[0] == 401
    disguised = "\uff44po@example.org"  # full-width d: the same account after NFKC
    assert _attempt(new_client(client, "203.0.113.61"), disguised, PASSWORD)[0] == 429


def test_a_passed_second_factor_forgives_earlier_typos(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    admin = signed_in(client, state, clock, "admin@example.org", "admin")
    for day in range(service.FREE_FAILURES):
        clock.advance(dt.timedelta(days=1))
        browser = new_client(client, f"198.51.100.{day + 1}")
        assert submit_password(browser, "admin@example.org").status_code == 303
        csrf = csrf_of(browser.get("/admin/mfa").text)
        assert browser.post("/admin/mfa", data={"code": "000000", "csrf": csrf}).status_code == 401
        done = browser.post(
            "/admin/mfa",
            data={"code": totp(admin.secret, clock), "csrf": csrf},
            follow_redirects=False,
        )
        assert done.status_code == 303, f"day {day + 1}: {done.status_code}"


def test_old_failures_are_forgotten(client: TestClient, state: State, clock: FrozenClock) -> None:
    add_user(state, "dpo@example.org", "dpo")
    office = new_client(client, "198.51.100.70")  # one NAT address for a whole office
    for _ in range(service.FREE_FAILURES - 1):
        assert _attempt(office, "someone-else@example.org", WRONG)[0] == 401
    clock.advance(dt.timedelta(days=30))
    assert _attempt(office, "dpo@example.org", WRONG)[0] == 401
    assert _attempt(office, "dpo@example.org", PASSWORD)[0] == 303


# -- SQL-shaped and hostile input ----------------------------------------------------------

SQL_SHAPED = [
    "' OR '1'='1",
    "admin@example.org' --",
    "admin@example.org'; DROP TABLE admin_user; --",
    '" OR ""="',
    "%",
    "_@%.%",
    "admin@example.org\x00",
    "1; SELECT pg_sleep(5)--@example.org",
    "'||(SELECT hash FROM audit_entry LIMIT 1)||'@example.org",
]


def test_sql_shaped_sign_in_is_a_clean_401(client: TestClient, state: State) -> None:
    add_user(state, "admin@example.org", "admin")
    for index, email in enumerate(SQL_SHAPED):
        browser = new_client(client, f"192.0.2.{index + 10}")
        for password in (WRONG, "' OR '1'='1' --", PASSWORD):
            status = _attempt(browser, email, password)[0]
            assert status == 401, (email, password, status)
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AdminSession)) == 0
    assert _attempt(new_client(client, "192.0.2.99"), "admin@example.org", PASSWORD)[0] == 303


def test_sql_shaped_account_creation_is_refused_or_stored_verbatim(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    admin = signed_in(client, state, clock, "admin@example.org", "admin")
    accepted: list[str] = []
    for email in SQL_SHAPED:
        answer = client.post(
            "/admin/users",
            data={"email": email, "role": "agent", "password": PASSWORD, "csrf": admin.csrf},
            follow_redirects=False,
        )
        assert answer.status_code in (303, 400), (email, answer.status_code)
        if answer.status_code == 303:
            accepted.append(email)
    for role in ("admin' --", "agent' OR '1'='1", "dpo; DROP TABLE admin_user"):
        answer = client.post(
            "/admin/users",
            data={"email": "r@example.org", "role": role, "password": PASSWORD, "csrf": admin.csrf},
        )
        assert answer.status_code in (400, 422)  # unknown role, or longer than any role
    stored = users(state)
    assert sorted(stored.values()) == sorted(["admin@example.org", *accepted])
    with state.sessions() as session:
        roles = set(session.scalars(select(AdminUser.role)))
    assert roles <= {"admin", "agent"}


def test_admin_forms_refuse_nul_bytes_with_a_4xx(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    admin = signed_in(client, state, clock, "admin@example.org", "admin")
    answer = client.post(
        "/admin/tokens", data={"name": "nightly\x00report", "role": "auditor", "csrf": admin.csrf}
    )
    assert answer.status_code == 400
    assert "control characters" in answer.text


def test_oversized_bodies_get_413(client: TestClient, state: State, settings: Settings) -> None:
    add_user(state, "admin@example.org", "admin")
    client.get("/admin/login")
    limit = settings.max_body_bytes
    declared = client.post(
        "/admin/login",
        content=b"email=" + b"a" * limit,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert declared.status_code == 413
    assert declared.headers["x-robots-tag"] == "noindex, nofollow"  # still behind the headers
    for field, size in (("email", 255), ("password", 257), ("csrf", 101)):
        values = {"email": "admin@example.org", "password": PASSWORD, "csrf": "x", field: ""}
        values[field] = "a" * size
        answer = client.post("/admin/login", data=values)
        assert answer.status_code == 422, field
        assert "a" * 50 not in answer.text  # the value is never echoed back
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuthThrottle)) == 0


def test_an_oversized_chunked_body_gets_413(client: TestClient, settings: Settings) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"email="
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"a" * 65536

    client.get("/admin/login")
    answer = client.post(
        "/admin/login",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 413


# -- stored XSS ----------------------------------------------------------------------------

XSS_EMAIL = "<img src=x onerror=alert(1)>@example.org"
XSS_TOKEN = "<script>alert(1)</script>"


def test_script_shaped_values_are_escaped_in_admin_pages(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    admin = signed_in(client, state, clock, "admin@example.org", "admin")
    created = client.post(
        "/admin/users",
        data={"email": XSS_EMAIL, "role": "admin", "password": PASSWORD, "csrf": admin.csrf},
        follow_redirects=False,
    )
    assert created.status_code == 400  # markup is not an e-mail address: refused outright
    assert "not an e-mail address" in created.text
    assert XSS_EMAIL not in created.text
    create_token(admin, XSS_TOKEN, "auditor")
    tokens = client.get("/admin/tokens").text
    assert XSS_TOKEN not in tokens
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in tokens


def test_stored_values_never_reach_the_audit_trail(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    admin = signed_in(client, state, clock, "admin@example.org", "admin")
    client.post(
        "/admin/users",
        data={
            "email": "jeanne@example.org",
            "role": "agent",
            "password": PASSWORD,
            "csrf": admin.csrf,
        },
    )
    create_token(admin, "jeanne's export", "auditor")
    assert "jeanne" not in client.get("/admin/audit").text
    with state.sessions() as session:
        entries = session.scalars(select(AuditEntry)).all()
    assert {"user.created", "token.created"} <= {e.action for e in entries}
    for entry in entries:
        assert "jeanne" not in repr(vars(entry)), entry.action
