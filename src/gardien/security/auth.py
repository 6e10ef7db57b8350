"""Who is asking: admin sessions (cookie) and API tokens (Bearer or ``token_auth``), roles
enforced per route, and CSRF tokens on every state-changing form.

A route declares what it needs with ``Depends(require(Permission.x))``; anything else under
``/admin`` is refused, and ``tests/security/test_admin_routes.py`` enumerates every route to
prove no admin route is left without it. A signed-in user refused by their role or by a CSRF
check leaves an ``access.refused`` entry in the audit trail, committed before the 403 goes out
(the request's own changes are rolled back, the trace is not).
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy.orm import Session

from gardien.deps import AppState, DbSession
from gardien.errors import N_, GardienError
from gardien.security import audit, service
from gardien.security.audit import Actor
from gardien.security.models import AdminSession, AdminUser, ApiToken
from gardien.security.permissions import Permission, allowed, can_grant

COOKIE = "gardien_session"


class NotSignedIn(GardienError):
    """No valid session: browsers are sent to the sign-in page, programs get 401."""

    code = "not_signed_in"
    status = 401


class Forbidden(GardienError):
    code = "forbidden"
    status = 403


@dataclass
class AdminContext:
    user: AdminUser
    role: str
    session: AdminSession | None = None
    token: ApiToken | None = None
    db: Session | None = field(default=None, repr=False)
    """The request's database session, so a refusal can be recorded."""
    at: dt.datetime | None = None
    path: str = ""

    @property
    def actor(self) -> Actor:
        if self.token is not None:
            return Actor(f"user:{self.user.id}/token:{self.token.id}", self.role)
        return Actor(f"user:{self.user.id}", self.role)

    @property
    def csrf(self) -> str:
        return self.session.csrf_token if self.session else ""


def set_session_cookie(response: Response, request: Request, token: str, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure or request.url.scheme == "https",
        path="/admin",
        max_age=int(service.ABSOLUTE_TIMEOUT.total_seconds()),
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/admin")


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query_params.get("token_auth")


def resolve(
    request: Request, state: AppState, db: Session, *, partial: bool = False
) -> AdminContext:
    """The signed-in admin; ``partial`` accepts a session still waiting for its second factor."""
    now = state.clock.now()
    secret = _bearer(request)
    if secret is not None:
        token = service.authenticate_token(db, secret, now)
        if token is None:
            raise NotSignedIn(N_("invalid or revoked API token"))
        user = service.get_user(db, token.user_id)
        if not can_grant(user.role, token.role):  # the owner was demoted since
            raise NotSignedIn(N_("this token's role exceeds its owner's current role"))
        return AdminContext(
            user=user, role=token.role, token=token, db=db, at=now, path=request.url.path
        )
    record = service.resume_session(db, request.cookies.get(COOKIE, ""), now)
    if record is None:
        raise NotSignedIn(N_("sign in first"))
    owner = db.get(AdminUser, record.user_id)
    if owner is None or owner.disabled_at is not None:
        raise NotSignedIn(N_("sign in first"))
    if not record.mfa_passed and not partial:
        raise NotSignedIn(N_("second factor required"))
    return AdminContext(
        user=owner, role=owner.role, session=record, db=db, at=now, path=request.url.path
    )


def require(permission: Permission) -> Callable[..., AdminContext]:
    def dependency(request: Request, state: AppState, db: DbSession) -> AdminContext:
        context = resolve(request, state, db)
        if not allowed(context.role, permission):
            refused(context, f"permission={permission.value}")
            raise Forbidden(N_("your role (%(role)s) does not allow this"), role=context.role)
        return context

    dependency.__name__ = f"require_{permission.value}"
    return dependency


def partial_session(request: Request, state: AppState, db: DbSession) -> AdminContext:
    """A signed-in session before its second factor: only the MFA pages accept it."""
    context = resolve(request, state, db, partial=True)
    if context.session is None:
        raise Forbidden(N_("API tokens cannot enrol a second factor"))
    return context


PartialAdmin = Annotated[AdminContext, Depends(partial_session)]


def check_csrf(context: AdminContext, submitted: str) -> None:
    """Every state-changing form: the session's token must come back. API tokens never use
    these forms (they could otherwise turn a narrow token into a full session)."""
    if context.session is None:
        refused(context, "csrf: API token")
        raise Forbidden(N_("API tokens cannot submit admin forms; use the admin API"))
    # Bytes: compare_digest raises TypeError on non-ASCII text, and the field is whatever
    # was posted (a 500 before, found by tests/security/test_hostile_input.py).
    if not submitted or not hmac.compare_digest(
        submitted.encode(errors="replace"), context.session.csrf_token.encode()
    ):
        refused(context, "csrf: missing or wrong token")
        raise Forbidden(N_("the form has expired or did not come from this site: reload the page"))


def refused(context: AdminContext, reason: str) -> None:
    """Trace a signed-in user's refused request and commit the trace at once: the exception
    that follows rolls the request's transaction back, and the trace must survive it."""
    if context.db is None or context.at is None:
        return
    audit.record(
        context.db,
        context.actor,
        "access.refused",
        context.at,
        target_type="route",
        target_id=context.path[:200],
        reason=reason,
        outcome="refused",
    )
    context.db.commit()
