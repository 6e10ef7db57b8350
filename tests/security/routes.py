"""The admin routes as the application serves them, and what each one needs.

``admin_routes`` enumerates them from the app itself (so a route added later is probed too);
``ACCESS`` is the reviewed table of what each needs, which docs/security.md repeats and
``test_admin_routes`` keeps equal to what the code declares.
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

from gardien.security.permissions import Permission
from tests.security.signin import PASSWORD

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
    ("GET", "/admin/abuse"): P.view_abuse,
    ("GET", "/admin/api/me"): P.view_dashboard,
    ("GET", "/admin/api/audit/head"): P.view_audit_log,
    ("GET", "/admin/analytics"): P.view_reports,
    ("GET", "/admin/analytics/export"): P.view_reports,
    ("GET", "/admin/consent"): P.view_reports,
    ("GET", "/admin/consent/records"): P.view_personal_data,
    ("GET", "/admin/consent/revisions/{number}"): P.view_reports,
    ("GET", "/admin/consent/export"): P.export_data,
    ("GET", "/admin/api/consent/stats"): P.view_reports,
    ("GET", "/admin/inbox"): P.handle_forms,
    ("GET", "/admin/inbox/{public_id}"): P.handle_forms,
    ("POST", "/admin/inbox/{public_id}/answered"): P.handle_forms,
    ("POST", "/admin/inbox/{public_id}/note"): P.handle_forms,
    ("POST", "/admin/inbox/{public_id}/delete"): P.handle_forms,
    ("POST", "/admin/inbox/{public_id}/outbox/{outbox_id}/retry"): P.handle_forms,
    ("GET", "/admin/inbox-export"): P.export_data,
    ("GET", "/admin/rights"): P.handle_rights,
    ("GET", "/admin/rights/new"): P.handle_rights,
    ("POST", "/admin/rights/new"): P.handle_rights,
    ("GET", "/admin/rights/{reference}"): P.handle_rights,
    ("GET", "/admin/rights/{reference}/attachments/{attachment_id}"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/assign"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/note"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/verify"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/acknowledge"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/extend"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/close"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/export"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/send-package"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/erase"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/identity/doubt"): P.handle_rights,
    ("GET", "/admin/rights/{reference}/identity/document"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/identity/decision"): P.handle_rights,
    ("GET", "/admin/rights/{reference}/rectification"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/rectification"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/death"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/directive"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/withdraw-consent"): P.handle_rights,
    ("GET", "/admin/rights/{reference}/letters/{notice_id}"): P.handle_rights,
    ("GET", "/admin/rights/{reference}/restriction"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/restrict"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/restriction/announce"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/restriction/lift"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/objection"): P.export_data,
    ("POST", "/admin/rights/{reference}/recipients/notify"): P.handle_rights,
    ("POST", "/admin/rights/{reference}/recipients/{notice_id}/close"): P.handle_rights,
    ("GET", "/admin/rights/{reference}/evidence"): P.export_data,
    ("GET", "/admin/evidence"): P.export_data,
}

FORM_VALUES = {
    "email": "newcomer@example.org",
    "password": PASSWORD,
    "role": "auditor",
    "name": "nightly report",
    "current": PASSWORD,
    "new": "another long passphrase 42",
    "code": "123456",
    "note": "called back",
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

    @property
    def access(self) -> Permission | str | None:
        """What the reviewed table says this route needs (``None``: not in the table)."""
        return ACCESS.get((self.method, self.path))

    def form(self, csrf: str, **values: str) -> dict[str, str]:
        form = {name: values.get(name, FORM_VALUES.get(name, "1")) for name in self.fields}
        if "csrf" in form:
            form["csrf"] = csrf
        return form

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


def call(
    client: TestClient, route: AdminRoute, csrf: str = "not-the-token", **values: str
) -> httpx.Response:
    if route.method == "GET":
        return client.get(route.url, follow_redirects=False)
    return client.request(
        route.method, route.url, data=route.form(csrf, **values) or None, follow_redirects=False
    )


def refused(response: httpx.Response) -> bool:
    if response.status_code in (401, 403):
        return True
    return response.status_code == 303 and response.headers["location"].startswith("/admin/login")
