"""Every ``/admin`` route refuses a caller without a valid session, and every role gets exactly
what ``permissions.MATRIX`` grants it, through a session or an API token.

The routes are enumerated from the application itself, so a route added later without
protection fails ``test_no_admin_route_answers_without_a_session``; ``ACCESS`` below spells out
what each route needs and must list every admin route, so the matrix cannot silently fall behind
(docs/security.md shows the same table).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from gardien.deps import State
from gardien.security.auth import COOKIE
from gardien.security.permissions import MATRIX, Permission, Role, allowed
from gardien.storage.clock import FrozenClock
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

PUBLIC = "public"
SECOND_FACTOR = "second factor"
"""The MFA pages: a session that passed the password step, before or after its second factor."""

P = Permission
ACCESS: dict[tuple[str, str], Permission | str] = {
    ("GET", "/admin/login"): PUBLIC,
    ("POST", "/admin/login"): PUBLIC,
    ("GET", "/admin/mfa"): SECOND_FACTOR,
    ("POST", "/admin/mfa"): SECOND_FACTOR,
    ("GET", "/admin/mfa/enrol"): SECOND_FACTOR,
    ("POST", "/admin/mfa/enrol"): SECOND_FACTOR,
    ("POST", "/admin/logout"): P.view_dashboard,
    ("GET", "/admin"): P.view_dashboard,
    ("GET", "/admin/password"): P.view_dashboard,
    ("POST", "/admin/password"): P.view_dashboard,
    ("GET", "/admin/users"): P.manage_users,
    ("POST", "/admin/users"): P.manage_users,
    ("POST", "/admin/users/{user_id}/disable"): P.manage_users,
    ("GET", "/admin/tokens"): P.manage_own_tokens,
    ("POST", "/admin/tokens"): P.manage_own_tokens,
    ("POST", "/admin/tokens/{token_id}/revoke"): P.manage_own_tokens,
    ("GET", "/admin/audit"): P.view_audit_log,
    ("GET", "/admin/api/me"): P.view_dashboard,
    ("GET", "/admin/api/audit/head"): P.view_audit_log,
}

FORM_VALUES = {
    "email": "newcomer@example.org",
    "password": PASSWORD,
    "role": "auditor",
    "name": "nightly report",
    "current": PASSWORD,
    "new": "another long passphrase 42",
    "code": "123456",
}
"""Plausible values for the admin forms' fields, so a refusal is never a validation error."""


@dataclass(frozen=True)
class AdminRoute:
    method: str
    path: str
    """The path template, as declared (``/admin/users/{user_id}/disable``)."""
    fields: tuple[str, ...]
    needs: tuple[str, ...]
    """What the route's dependencies demand: ``require_<permission>`` or ``partial_session``."""

    @property
    def url(self) -> str:
        return re.sub(r"\{[^}]+\}", "1", self.path)

    @property
    def declared(self) -> Permission | str:
        permissions = [n.removeprefix("require_") for n in self.needs if n.startswith("require_")]
        if permissions:
            assert len(permissions) == 1, f"{self}: several permission dependencies"
            return Permission(permissions[0])
        return SECOND_FACTOR if "partial_session" in self.needs else PUBLIC

    def form(self, csrf: str) -> dict[str, str]:
        values = {name: FORM_VALUES.get(name, "1") for name in self.fields}
        if "csrf" in values:
            values["csrf"] = csrf
        return values

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _dependencies(dependant: Any) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from _dependencies(dependency)


def admin_routes(app: FastAPI) -> list[AdminRoute]:
    """Every (method, path) the app serves under ``/admin``, whatever kind of route it is."""
    found: list[AdminRoute] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = context.path or ""
        if not (path == "/admin" or path.startswith("/admin/")):
            continue
        if isinstance(route, APIRoute):
            dependant = context.dependant
            calls = [getattr(d.call, "__name__", "") for d in _dependencies(dependant)]
            fields = [
                f.alias for d in (dependant, *_dependencies(dependant)) for f in d.body_params
            ]
            for method in sorted(context.methods or ()):
                found.append(AdminRoute(method, path, tuple(fields), tuple(calls)))
        elif isinstance(route, Route):
            for method in sorted((context.methods or set()) - {"HEAD"}):
                found.append(AdminRoute(method, path, (), ()))
        elif isinstance(route, Mount):
            found.append(AdminRoute("GET", path + "/probe", (), ()))
        else:
            pytest.fail(
                f"{path}: a {type(route).__name__} under /admin that this test cannot probe"
            )
    return found


def call(client: TestClient, route: AdminRoute, csrf: str = "not-the-token") -> httpx.Response:
    if route.method == "GET":
        return client.get(route.url, follow_redirects=False)
    return client.request(
        route.method, route.url, data=route.form(csrf) or None, follow_redirects=False
    )


def refused(response: httpx.Response) -> bool:
    if response.status_code in (401, 403):
        return True
    return response.status_code == 303 and response.headers["location"].startswith("/admin/login")


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
        if route.declared == PUBLIC or (
            caller == "password but no second factor" and route.declared == SECOND_FACTOR
        ):
            continue
        response = call(client, route)
        assert refused(response), f"{route} answered {response.status_code} to {caller}"
        assert response.status_code != 200
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
    # the cookie of one browser with the field of another does not sign in either
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
    for route in routes:
        if route.method == "GET" and route.declared != PUBLIC and route not in forbidden:
            response = call(person.client, route)
            assert response.status_code == 200, f"{route} answered {response.status_code}"


@pytest.mark.parametrize("role", [r.value for r in Role])
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
        response = call(api, route)
        if route.declared == SECOND_FACTOR:  # tokens never enrol or pass a second factor
            assert response.status_code == 403, str(route)
        elif not allowed(role, route.declared):  # type: ignore[arg-type]
            assert response.status_code == 403, f"{route} answered {response.status_code}"
        elif route.method == "GET":
            assert response.status_code == 200, f"{route} answered {response.status_code}"
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
        "/admin/tokens", headers=bearer, data={"name": "x", "role": "auditor", "csrf": ""}
    )
    assert minted.status_code in (403, 422)


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
