"""A DPO's first day: account, second factor, sign-in, what the role shows, tokens, sign-out."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from gardien.deps import State
from gardien.security import service
from gardien.security.models import AuditEntry
from gardien.storage.clock import FrozenClock

PASSWORD = "correct horse battery staple"


def make_user(state: State, email: str = "dpo@example.org", role: str = "dpo") -> int:
    with state.sessions.begin() as session:
        return service.create_user(session, email, role, PASSWORD, state.clock.now()).id


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def sign_in(client: TestClient, clock: FrozenClock, email: str = "dpo@example.org") -> str:
    """Password, then TOTP enrolment on first sign-in; returns the TOTP secret."""
    form = client.get("/admin/login")
    response = client.post(
        "/admin/login",
        data={"email": email, "password": PASSWORD, "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/admin/mfa/enrol"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    enrol = client.get("/admin/mfa/enrol")
    assert 'src="data:image/svg+xml;base64,' in enrol.text  # the QR code, inline under CSP
    secret = re.search(r"Or enter this key by hand: <code>([A-Z2-7]+)</code>", enrol.text)
    assert secret
    code = pyotp.TOTP(secret.group(1)).at(clock.now())
    done = client.post("/admin/mfa/enrol", data={"code": code, "csrf": csrf_of(enrol.text)})
    assert done.status_code == 200
    assert len(re.findall(r"<li><code>[0-9a-f]{8}-[0-9a-f]{8}</code></li>", done.text)) == 10
    return secret.group(1)


def test_first_sign_in_enrols_totp_then_dashboard(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    make_user(state)
    assert client.get("/admin", follow_redirects=False).headers["location"] == "/admin/login"
    sign_in(client, clock)
    dashboard = client.get("/admin")
    assert dashboard.status_code == 200
    assert "dpo@example.org" in dashboard.text and "(dpo)" in dashboard.text
    assert dashboard.headers["x-robots-tag"] == "noindex, nofollow"
    assert '<meta name="robots" content="noindex, nofollow">' in dashboard.text
    assert re.search(r"#\d+ [0-9a-f]{64}", dashboard.text)  # the audit head hash
    assert ">Users<" not in dashboard.text  # a dpo does not manage accounts
    with state.sessions() as session:
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)).all()
    # on start, by the server itself: the policy, then the banner revision that names it
    assert actions[:2] == ["policy.published", "consent.revision"]
    assert actions[2:4] == ["sign_in.password", "mfa.enrolled"]


def test_second_sign_in_needs_the_code_and_refuses_replays(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    make_user(state)
    secret = sign_in(client, clock)
    logout = client.post(
        "/admin/logout", data={"csrf": csrf_of(client.get("/admin").text)}, follow_redirects=False
    )
    assert logout.headers["location"] == "/admin/login"
    assert client.get("/admin", follow_redirects=False).status_code == 303
    form = client.get("/admin/login")
    client.post(
        "/admin/login",
        data={"email": "DPO@example.org ", "password": PASSWORD, "csrf": csrf_of(form.text)},
    )
    mfa = client.get("/admin/mfa")
    assert (
        client.get("/admin", follow_redirects=False).status_code == 303
    )  # password alone is not enough
    replay = pyotp.TOTP(secret).at(clock.now())  # the step used at enrolment
    refused = client.post("/admin/mfa", data={"code": replay, "csrf": csrf_of(mfa.text)})
    assert refused.status_code == 401
    clock.advance(dt.timedelta(seconds=30))
    fresh = pyotp.TOTP(secret).at(clock.now())
    assert (
        client.post(
            "/admin/mfa", data={"code": fresh, "csrf": csrf_of(mfa.text)}, follow_redirects=False
        ).status_code
        == 303
    )
    assert client.get("/admin").status_code == 200


def test_recovery_code_works_once(client: TestClient, state: State, clock: FrozenClock) -> None:
    make_user(state)
    sign_in(client, clock)
    with state.sessions.begin() as session:
        user = service.find_user_by_email(session, "dpo@example.org")
        assert user is not None
        codes = service.new_recovery_codes(session, user)
    client.post("/admin/logout", data={"csrf": csrf_of(client.get("/admin").text)})
    for attempt, expected in ((1, 303), (2, 401)):
        form = client.get("/admin/login")
        client.post(
            "/admin/login",
            data={"email": "dpo@example.org", "password": PASSWORD, "csrf": csrf_of(form.text)},
        )
        mfa = client.get("/admin/mfa")
        answer = client.post(
            "/admin/mfa", data={"code": codes[0], "csrf": csrf_of(mfa.text)}, follow_redirects=False
        )
        assert answer.status_code == expected, attempt
        if expected == 303:
            client.post("/admin/logout", data={"csrf": csrf_of(client.get("/admin").text)})


def test_roles_see_only_what_they_may(client: TestClient, state: State, clock: FrozenClock) -> None:
    make_user(state, "auditor@example.org", "auditor")
    sign_in(client, clock, "auditor@example.org")
    assert client.get("/admin/audit").status_code == 200
    assert client.get("/admin/users").status_code == 403
    assert (
        client.post(
            "/admin/users",
            data={"email": "x@example.org", "role": "admin", "password": PASSWORD, "csrf": "x"},
        ).status_code
        == 403
    )


def test_api_tokens_shown_once_scoped_and_revocable(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    make_user(state, "admin@example.org", "admin")
    sign_in(client, clock, "admin@example.org")
    page = client.get("/admin/tokens")
    created = client.post(
        "/admin/tokens", data={"name": "reports", "role": "auditor", "csrf": csrf_of(page.text)}
    )
    token = re.search(r"<code class=\"hash\">(gdn_[A-Za-z0-9_-]+)</code>", created.text)
    assert token
    assert token.group(1) not in client.get("/admin/tokens").text  # shown once
    api = TestClient(client.app)
    me = api.get("/admin/api/me", headers={"Authorization": f"Bearer {token.group(1)}"})
    assert me.json()["role"] == "auditor" and me.json()["via"] == "token"
    assert (
        api.get("/admin/api/audit/head", params={"token_auth": token.group(1)}).json()["intact"]
        is True
    )
    assert (
        api.get("/admin/users", headers={"Authorization": f"Bearer {token.group(1)}"}).status_code
        == 403
    )
    token_id = re.search(r'action="/admin/tokens/(\d+)/revoke"', client.get("/admin/tokens").text)
    assert token_id
    client.post(
        f"/admin/tokens/{token_id.group(1)}/revoke",
        data={"csrf": csrf_of(client.get("/admin/tokens").text)},
    )
    revoked = api.get("/admin/api/me", headers={"Authorization": f"Bearer {token.group(1)}"})
    assert revoked.status_code == 401


def test_token_cannot_outrank_its_owner(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    make_user(state, "agent@example.org", "agent")
    sign_in(client, clock, "agent@example.org")
    page = client.get("/admin/tokens")
    assert "<option>admin</option>" not in page.text
    response = client.post(
        "/admin/tokens", data={"name": "x", "role": "admin", "csrf": csrf_of(page.text)}
    )
    assert response.status_code == 400


def test_refusals_and_form_errors_speak_the_admins_language(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    make_user(state, "auditor@example.org", "auditor")
    sign_in(client, clock, "auditor@example.org")
    french = {"Accept-Language": "fr-FR,fr;q=0.9"}
    refused = client.get("/admin/users", headers=french)
    assert refused.status_code == 403
    assert "votre rôle (auditor) ne le permet pas" in refused.text
    romanian = client.get("/admin/users", headers={"Accept-Language": "ro"})
    assert "rolul dumneavoastră (auditor) nu permite acest lucru" in romanian.text
    # programs keep the stable English message
    api = client.get("/admin/users", headers={**french, "Accept": "application/json"})
    assert api.json() == {"error": "forbidden", "detail": "your role (auditor) does not allow this"}
    page = client.get("/admin/password", headers=french)
    weak = client.post(
        "/admin/password",
        headers=french,
        data={"current": PASSWORD, "new": "short", "csrf": csrf_of(page.text)},
    )
    assert weak.status_code == 400
    assert "un mot de passe doit comporter au moins 12 caractères" in weak.text
