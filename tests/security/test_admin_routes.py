"""Every ``/admin`` route refuses a caller without a valid session, and every role gets exactly
what ``permissions.MATRIX`` grants it, through a session or an API token.

The routes are enumerated from the application itself, so a route added later without
protection fails ``test_no_admin_route_answers_without_a_session``; ``ACCESS`` below spells out
what each route needs and must list every admin route, so the matrix cannot silently fall behind
(docs/security.md shows the same table).
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gardien.deps import State
from gardien.forms.models import FormSubmission
from gardien.rights.documents import DOCUMENT_PURPOSE, write_encrypted
from gardien.rights.exchange import RightsDocument, RightsNotice
from gardien.rights.models import RightsAttachment, RightsCase
from gardien.security import service
from gardien.security.auth import COOKIE
from gardien.security.models import AuditEntry
from gardien.security.permissions import MATRIX, Permission, Role, allowed
from gardien.storage.clock import FrozenClock
from tests.security.routes import ACCESS, PUBLIC, SECOND_FACTOR, admin_routes, call, refused
from tests.security.signin import (
    PASSWORD,
    STEP,
    SignedIn,
    add_user,
    create_token,
    new_client,
    signed_in,
    snapshot,
    submit_password,
)


def test_the_access_table_lists_every_admin_route(client: TestClient) -> None:
    routes = admin_routes(client.app)  # type: ignore[arg-type]
    served = {(r.method, r.path) for r in routes}
    assert served - ACCESS.keys() == set(), "new admin routes: add them to ACCESS (and the docs)"
    assert ACCESS.keys() - served == set(), "ACCESS lists routes the app no longer serves"
    for route in routes:
        assert route.declared == ACCESS[(route.method, route.path)], str(route)


# -- without a valid session ---------------------------------------------------------------


def _expired(client: TestClient, state: State, clock: FrozenClock) -> None:
    signed_in(client, state, clock, "someone@example.org", "admin")
    clock.advance(STEP * 62)  # 31 minutes idle


def _password_only(client: TestClient, state: State, clock: FrozenClock) -> None:
    add_user(state, "someone@example.org", "admin")
    assert submit_password(client, "someone@example.org").status_code == 303


def _forged_cookie(client: TestClient, state: State, clock: FrozenClock) -> None:
    client.cookies.set(COOKIE, "forged-session-token", path="/admin")


def _unknown_token(client: TestClient, state: State, clock: FrozenClock) -> None:
    client.headers["Authorization"] = "Bearer gdn_" + "A" * 43


CALLERS = {
    "anonymous": lambda client, state, clock: None,
    "forged cookie": _forged_cookie,
    "expired session": _expired,
    "password but no second factor": _password_only,
    "unknown API token": _unknown_token,
}


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_no_admin_route_answers_without_a_session(
    client: TestClient, state: State, clock: FrozenClock, caller: str
) -> None:
    CALLERS[caller](client, state, clock)
    routes = admin_routes(client.app)  # type: ignore[arg-type]
    assert len(routes) >= len(ACCESS)
    before = snapshot(state)
    for route in routes:
        # only what the reviewed table calls public (or MFA pages, for a half-signed-in
        # session) is skipped: a route missing from it is probed like any protected one
        if route.access == PUBLIC or (
            caller == "password but no second factor" and route.access == SECOND_FACTOR
        ):
            continue
        response = call(client, route)
        assert refused(response), f"{route} answered {response.status_code} to {caller}"
    assert snapshot(state) == before


def test_login_page_is_public_and_its_post_needs_the_login_cookie(
    client: TestClient, state: State
) -> None:
    add_user(state, "someone@example.org", "admin")
    page = client.get("/admin/login")
    assert page.status_code == 200
    assert 'action="/admin/login"' in page.text
    stranger = new_client(client)  # never loaded the form: no login CSRF cookie
    forged = stranger.post(
        "/admin/login",
        data={"email": "someone@example.org", "password": PASSWORD, "csrf": "guess"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert COOKIE not in forged.cookies
    # with the cookie, a field that does not match it is refused too
    stranger.get("/admin/login")
    mixed = stranger.post(
        "/admin/login",
        data={"email": "someone@example.org", "password": PASSWORD, "csrf": "x" * 43},
        follow_redirects=False,
    )
    assert mixed.status_code == 403


# -- each role, through a session and through a token ----------------------------------------


@pytest.fixture
def bystander(client: TestClient, state: State, clock: FrozenClock) -> None:
    """User 1 and token 1 belong to someone else, so ``{user_id}``/``{token_id}`` = 1 are real
    rows that a refused request would otherwise have changed."""
    owner = signed_in(new_client(client), state, clock, "owner@example.org", "admin")
    create_token(owner, "owner's report", "auditor")
    with state.sessions.begin() as session:  # submission "1", for ``/admin/inbox/{public_id}``
        now = clock.now()
        session.add(
            FormSubmission(
                public_id="1",
                form_id="contact",
                activity="contact_forms",
                received_at=now,
                delete_after=now + dt.timedelta(days=90),
                language="en",
                fields='{"first_name": "Bystander"}',
                legal_basis="consent",
                duplicate_key="bystander",
                status="new",
                restricted=False,
            )
        )
        # case "1" with document 1, for ``/admin/rights/{reference}`` and its attachments
        case = RightsCase(
            reference="1",
            rights="access",
            channel="post",
            status="open",
            language="en",
            received_at=now,
            due_at=now.date() + dt.timedelta(days=31),
            email="bystander@example.org",
        )
        session.add(case)
        session.flush()
        session.add(
            RightsAttachment(
                id=1,
                case_id=case.id,
                added_at=now,
                media_type="application/pdf",
                size=8,
                sha256="0" * 64,
                content="JVBERi0xLjQK",
            )
        )
        # identity document 1 awaiting a decision and letter 1 of the same case
        stored = write_encrypted(state.settings.data_dir / "test", b"%PDF-1.4\n", DOCUMENT_PURPOSE)
        session.add(
            RightsDocument(
                id=1,
                case_id=case.id,
                requested_at=now,
                requested_by="user:1",
                reason="the signature differs",
                upload_token_hash="0" * 64,
                uploaded_at=now,
                media_type="application/pdf",
                size=9,
                path=stored.path,
                file_key=stored.key,
            )
        )
        session.add(
            RightsNotice(
                id=1,
                case_id=case.id,
                kind="acknowledgement",
                channel="letter",
                created_at=now,
                params='{"due": "2026-04-30"}',
            )
        )


@pytest.mark.parametrize("role", [r.value for r in Role])
@pytest.mark.usefixtures("bystander")
def test_each_role_reaches_exactly_what_the_matrix_grants(
    client: TestClient, state: State, clock: FrozenClock, role: str
) -> None:
    person = signed_in(client, state, clock, f"{role}@example.org", role)
    routes = admin_routes(client.app)  # type: ignore[arg-type]
    forbidden = [
        r for r in routes if isinstance(r.declared, Permission) and not allowed(role, r.declared)
    ]
    assert {(r.method, r.path) for r in forbidden} == {
        route
        for route, need in ACCESS.items()
        if isinstance(need, Permission) and need not in MATRIX[Role(role)]
    }
    csrf = person.csrf
    before = snapshot(state)
    for route in forbidden:
        response = call(person.client, route, csrf)  # the right CSRF token: only the role refuses
        assert response.status_code == 403, f"{route} answered {response.status_code} to {role}"
        assert "does not allow" in response.text, str(route)
    assert snapshot(state) == before, "a refused request changed something"
    with state.sessions() as session:  # each refusal is traced, and committed despite the 403
        traces = session.execute(
            select(AuditEntry.actor, AuditEntry.target_id, AuditEntry.reason).where(
                AuditEntry.action == "access.refused"
            )
        ).all()
        user = service.find_user_by_email(session, f"{role}@example.org")
        assert user is not None
    assert sorted(tuple(t) for t in traces) == sorted(
        (f"user:{user.id}", route.url.split("?")[0], f"permission={route.declared.value}")
        for route in forbidden
        if isinstance(route.declared, Permission)
    )
    for route in routes:
        if route.method == "GET" and route.declared != PUBLIC and route not in forbidden:
            response = call(person.client, route)
            if route.path == "/admin/mfa/enrol":
                # an enrolled, signed-in account is sent on; its secret is never shown again
                assert response.status_code == 303, f"{route} answered {response.status_code}"
                continue
            assert response.status_code == 200, f"{route} answered {response.status_code}"


@pytest.mark.parametrize("role", [r.value for r in Role])
@pytest.mark.usefixtures("bystander")
def test_an_api_token_reaches_exactly_what_its_role_grants(
    client: TestClient, state: State, clock: FrozenClock, role: str
) -> None:
    person = signed_in(client, state, clock, f"{role}@example.org", role)
    token = create_token(person, "script", role)
    api = new_client(client)
    api.headers["Authorization"] = f"Bearer {token}"
    before = snapshot(state)
    for route in admin_routes(client.app):  # type: ignore[arg-type]
        if route.declared == PUBLIC:
            continue
        grants = isinstance(route.declared, Permission) and allowed(role, route.declared)
        if grants and route.method != "GET":
            continue  # what a token may change is tested below, route by route
        response = call(api, route)
        expected = 200 if grants else 403  # tokens never enrol or pass a second factor
        assert response.status_code == expected, f"{route} answered {response.status_code}"
    after = snapshot(state)
    del before["audit_entry"], after["audit_entry"]  # allowed views are traced
    assert after == before


def test_a_token_is_scoped_below_its_owner(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    admin = signed_in(client, state, clock, "admin@example.org", "admin")
    token = create_token(admin, "auditor script", "auditor")
    api = new_client(client)
    bearer = {"Authorization": f"Bearer {token}"}
    me = api.get("/admin/api/me", headers=bearer)
    assert me.status_code == 200
    assert me.json()["role"] == "auditor" and me.json()["via"] == "token"
    assert api.get("/admin/users", headers=bearer).status_code == 403
    assert api.get("/admin/api/audit/head", headers=bearer).status_code == 200
    assert api.get("/admin/api/me", params={"token_auth": token}).status_code == 200
    # a token cannot mint tokens, even for a role it holds
    minted = api.post(
        "/admin/tokens", headers=bearer, data={"name": "x", "role": "auditor", "csrf": "-"}
    )
    assert minted.status_code == 403


def _revoke_all(admin: SignedIn) -> None:
    page = admin.client.get("/admin/tokens").text
    for token_id in re.findall(r'action="/admin/tokens/(\d+)/revoke"', page):
        answer = admin.client.post(
            f"/admin/tokens/{token_id}/revoke", data={"csrf": admin.csrf}, follow_redirects=False
        )
        assert answer.status_code == 303


def test_revoked_unknown_and_orphaned_tokens_get_401(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    admin = signed_in(client, state, clock, "admin@example.org", "admin")
    token = create_token(admin, "cron", "admin")
    api = new_client(client)
    assert api.get("/admin/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    _revoke_all(admin)
    for credentials in (
        {"headers": {"Authorization": f"Bearer {token}"}},
        {"params": {"token_auth": token}},
        {"headers": {"Authorization": f"Bearer {token[:-1]}x"}},
        {"headers": {"Authorization": "Bearer " + "gdn_" + "x" * 200}},
        {"headers": {"Authorization": "Bearer not-a-gardien-token"}},
    ):
        answer = api.get("/admin/api/me", **credentials)  # type: ignore[arg-type]
        assert answer.status_code == 401, credentials
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["error"] == "not_signed_in"
    # a token whose owner is disabled stops working at once
    other = signed_in(new_client(client), state, clock, "leaver@example.org", "auditor")
    leaver_token = create_token(other, "leaver", "auditor")
    bearer = {"Authorization": f"Bearer {leaver_token}"}
    assert api.get("/admin/api/me", headers=bearer).status_code == 200
    user_id = api.get("/admin/api/me", headers=bearer).json()["user_id"]
    disabled = admin.client.post(
        f"/admin/users/{user_id}/disable", data={"csrf": admin.csrf}, follow_redirects=False
    )
    assert disabled.status_code == 303
    assert api.get("/admin/api/me", headers=bearer).status_code == 401
    assert other.client.get("/admin", follow_redirects=False).status_code == 303


def test_second_factor_pages_need_a_password_step(client: TestClient, state: State) -> None:
    """The MFA pages accept a half-signed-in session, and nothing else."""
    add_user(state, "someone@example.org", "dpo")
    assert client.get("/admin/mfa/enrol", follow_redirects=False).status_code == 303
    assert submit_password(client, "someone@example.org").status_code == 303
    assert client.get("/admin/mfa/enrol").status_code == 200
    assert client.get("/admin", follow_redirects=False).status_code == 303
    assert client.get("/admin/api/me").status_code == 401


def test_an_api_token_cannot_turn_into_a_signed_in_session(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    admin = signed_in(client, state, clock, "admin@example.org", "admin")
    token = create_token(admin, "read-only report", "auditor")
    api = new_client(client)
    answer = api.post(
        "/admin/password",
        headers={"Authorization": f"Bearer {token}"},
        data={"current": PASSWORD, "new": "another long passphrase 42", "csrf": "-"},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert COOKIE not in answer.cookies
    assert submit_password(new_client(client), "admin@example.org").status_code == 303


def test_an_admin_token_creating_a_user_gets_an_answer_not_a_500(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    admin = signed_in(client, state, clock, "admin@example.org", "admin")
    token = create_token(admin, "provisioning", "admin")
    answer = new_client(client).post(
        "/admin/users",
        headers={"Authorization": f"Bearer {token}"},
        data={"email": "new@example.org", "role": "agent", "password": PASSWORD, "csrf": "-"},
        follow_redirects=False,
    )
    assert answer.status_code in (303, 403)
