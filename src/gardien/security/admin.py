"""The admin shell and the security pages: sign-in, second factor, password, users, API
tokens, the audit trail. Server-rendered, usable without JavaScript; every POST carries the
session's CSRF token and every page is ``noindex``.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import secrets
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel

from gardien.deps import AppState, DbSession, State
from gardien.errors import N_, BadRequest, Conflict, TooManyRequests, localise
from gardien.i18n import negotiate
from gardien.security import audit, service
from gardien.security.auth import (
    AdminContext,
    Forbidden,
    PartialAdmin,
    check_csrf,
    clear_session_cookie,
    require,
    set_session_cookie,
)
from gardien.security.passwords import WeakPassword
from gardien.security.permissions import MATRIX, Permission, Role, allowed

router = APIRouter(prefix="/admin", include_in_schema=True)
LOGIN_CSRF = "gardien_login_csrf"


NAV = [
    ("/admin", N_("Dashboard"), Permission.view_dashboard),
    ("/admin/audit", N_("Audit trail"), Permission.view_audit_log),
    ("/admin/inbox", N_("Inbox"), Permission.handle_forms),
    ("/admin/rights", N_("Rights requests"), Permission.handle_rights),
    ("/admin/analytics", N_("Audience"), Permission.view_reports),
    ("/admin/consent", N_("Consent"), Permission.view_reports),
    ("/admin/abuse", N_("Abuse"), Permission.view_abuse),
    ("/admin/users", N_("Users"), Permission.manage_users),
    ("/admin/tokens", N_("API tokens"), Permission.manage_own_tokens),
    ("/admin/password", N_("Password"), Permission.view_dashboard),
]

Dashboard = Annotated[AdminContext, Depends(require(Permission.view_dashboard))]
AuditReader = Annotated[AdminContext, Depends(require(Permission.view_audit_log))]
UserManager = Annotated[AdminContext, Depends(require(Permission.manage_users))]
TokenOwner = Annotated[AdminContext, Depends(require(Permission.manage_own_tokens))]
Csrf = Annotated[str, Form(max_length=100)]


def language(state: State, request: Request) -> str:
    languages = state.register.languages
    return negotiate(
        request.query_params.get("lang"),
        request.headers.get("accept-language"),
        languages.available,
        languages.default,
    )


def page(
    state: State,
    request: Request,
    template: str,
    context: AdminContext | None = None,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    lang = language(state, request)
    flashes = [
        {**flash, "message": localise(flash["message"], {}, lang)}
        for flash in (service.pop_flash(context.session) if context and context.session else [])
    ]
    nav = [(href, label) for href, label, p in NAV if context and allowed(context.role, p)]
    html = (
        state.env(lang)
        .get_template(f"admin/{template}")
        .render(
            admin=context,
            nav=nav,
            flashes=flashes,
            current=request.url.path,
            languages=[],
            path=request.url.path,
            **values,
        )
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# -- sign-in ------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse, summary="Admin sign-in page")
def login_form(state: AppState, request: Request) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = page(state, request, "login.html", csrf=token, error=None)
    _login_cookie(response, request, state, token)
    return response


def _login_cookie(response: Response, request: Request, state: State, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF,
        token,
        httponly=True,
        samesite="strict",
        path="/admin",
        secure=state.settings.secure_cookies or request.url.scheme == "https",
    )


@router.post("/login", response_class=HTMLResponse, summary="Sign in with e-mail and password")
def login(
    state: AppState,
    db: DbSession,
    request: Request,
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=256)],
    csrf: Csrf,
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF, "")
    if not expected or not secrets.compare_digest(expected.encode(), csrf.encode(errors="replace")):
        raise Forbidden(N_("the sign-in form has expired: reload the page"))
    now = state.clock.now()
    try:
        user = service.authenticate(db, state.secret, email, password, client_ip(request), now)
    except service.SignInRefused as refused:
        lang = language(state, request)
        audit.record(db, audit.Actor("anonymous", "none"), "sign_in", now, outcome="refused")
        db.commit()  # keep the failure count and its trace even though we answer with an error
        if refused.retry_after is not None:
            raise TooManyRequests(refused.template, refused.retry_after) from None
        token = secrets.token_urlsafe(32)
        response = page(
            state, request, "login.html", csrf=token, error=refused.text(lang), status=401
        )
        _login_cookie(response, request, state, token)
        return response
    opened = service.open_session(db, user, now)
    audit.record(
        db,
        audit.Actor(f"user:{user.id}", user.role),
        "sign_in.password",
        now,
        target_type="admin_user",
        target_id=str(user.id),
    )
    target = "/admin/mfa" if user.totp_enrolled_at else "/admin/mfa/enrol"
    signed_in = redirect(target)
    set_session_cookie(signed_in, request, opened.token, state.settings.secure_cookies)
    signed_in.delete_cookie(LOGIN_CSRF, path="/admin")
    return signed_in


def _complete_sign_in(
    state: AppState, db: DbSession, request: Request, context: AdminContext, action: str
) -> Response:
    """Second factor passed: a new session token replaces the pre-MFA one (no fixation)."""
    assert context.session is not None
    now = state.clock.now()
    service.close_session(db, context.session)
    opened = service.open_session(db, context.user, now)
    opened.record.mfa_passed = True
    audit.record(
        db,
        audit.Actor(f"user:{context.user.id}", context.role),
        action,
        now,
        target_type="admin_user",
        target_id=str(context.user.id),
    )
    response = redirect("/admin")
    set_session_cookie(response, request, opened.token, state.settings.secure_cookies)
    return response


@router.get("/mfa", response_class=HTMLResponse, summary="Second-factor page")
def mfa_form(state: AppState, request: Request, context: PartialAdmin) -> Response:
    if context.user.totp_enrolled_at is None:
        return redirect("/admin/mfa/enrol")
    return page(state, request, "mfa.html", context, error=None)


@router.post("/mfa", response_class=HTMLResponse, summary="Check a TOTP or recovery code")
def mfa(
    state: AppState,
    db: DbSession,
    request: Request,
    context: PartialAdmin,
    code: Annotated[str, Form(max_length=40)],
    csrf: Csrf,
) -> Response:
    check_csrf(context, csrf)
    now = state.clock.now()
    keys = [("mfa", str(context.user.id)), ("ip", client_ip(request))]
    until = service.locked_until(db, state.secret, keys, now)
    if until is not None:
        raise TooManyRequests(
            N_("too many wrong codes: try again later"), int((until - now).total_seconds()) + 1
        )
    if service.verify_totp(context.user, code, now):
        service.clear_failures(db, state.secret, "mfa", str(context.user.id))
        return _complete_sign_in(state, db, request, context, "sign_in.totp")
    if service.use_recovery_code(db, context.user, code, now):
        service.clear_failures(db, state.secret, "mfa", str(context.user.id))
        return _complete_sign_in(state, db, request, context, "sign_in.recovery_code")
    service.record_failure(db, state.secret, keys, now)
    audit.record(
        db,
        audit.Actor(f"user:{context.user.id}", context.role),
        "sign_in.mfa",
        now,
        target_type="admin_user",
        target_id=str(context.user.id),
        outcome="refused",
    )
    db.commit()
    error = localise(N_("wrong or already used code"), {}, language(state, request))
    return page(state, request, "mfa.html", context, error=error, status=401)


def _qr_data_uri(uri: str) -> str:
    import qrcode  # only the enrolment page needs it: not imported at start-up
    import qrcode.image.svg

    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = io.BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


@router.get("/mfa/enrol", response_class=HTMLResponse, summary="Enrol an authenticator app")
def enrol_form(state: AppState, db: DbSession, request: Request, context: PartialAdmin) -> Response:
    if context.user.totp_enrolled_at is not None:
        # Never show an enrolled account's secret again: a stolen session would keep it.
        passed = context.session is not None and context.session.mfa_passed
        return redirect("/admin" if passed else "/admin/mfa")
    secret = service.start_enrolment(context.user)
    uri = service.provisioning_uri(context.user, f"Gardien ({state.register.operator.brand})")
    return page(
        state,
        request,
        "enrol.html",
        context,
        secret=secret,
        qr=_qr_data_uri(uri),
        error=None,
        codes=None,
    )


@router.post("/mfa/enrol", response_class=HTMLResponse, summary="Confirm the authenticator")
def enrol(
    state: AppState,
    db: DbSession,
    request: Request,
    context: PartialAdmin,
    code: Annotated[str, Form(max_length=10)],
    csrf: Csrf,
) -> Response:
    check_csrf(context, csrf)
    if context.user.totp_enrolled_at is not None:
        raise Forbidden(N_("this account already has a second factor"))
    now = state.clock.now()
    try:
        codes = service.confirm_enrolment(db, context.user, code, now)
    except BadRequest as exc:
        uri = service.provisioning_uri(context.user, f"Gardien ({state.register.operator.brand})")
        return page(
            state,
            request,
            "enrol.html",
            context,
            secret=context.user.totp_secret,
            qr=_qr_data_uri(uri),
            error=exc.text(language(state, request)),
            codes=None,
            status=400,
        )
    audit.record(
        db,
        audit.Actor(f"user:{context.user.id}", context.role),
        "mfa.enrolled",
        now,
        target_type="admin_user",
        target_id=str(context.user.id),
    )
    # Privilege changed: a new session token replaces the pre-MFA one (no fixation).
    assert context.session is not None
    service.close_session(db, context.session)
    opened = service.open_session(db, context.user, now)
    opened.record.mfa_passed = True
    context.session = opened.record
    shown = page(
        state, request, "enrol.html", context, secret=None, qr=None, error=None, codes=codes
    )
    set_session_cookie(shown, request, opened.token, state.settings.secure_cookies)
    return shown


@router.post("/logout", summary="Sign out")
def logout(state: AppState, db: DbSession, context: Dashboard, csrf: Csrf) -> Response:
    check_csrf(context, csrf)
    if context.session is not None:
        service.close_session(db, context.session)
    audit.record(db, context.actor, "sign_out", state.clock.now())
    response = redirect("/admin/login")
    clear_session_cookie(response)
    return response


# -- pages --------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse, summary="Admin dashboard")
def dashboard(state: AppState, db: DbSession, request: Request, context: Dashboard) -> HTMLResponse:
    seq, head_hash = audit.head(db)
    return page(
        state,
        request,
        "dashboard.html",
        context,
        head_seq=seq,
        head_hash=head_hash,
        permissions=sorted(p.value for p in MATRIX[Role(context.role)]),
    )


@router.get("/password", response_class=HTMLResponse, summary="Change your password")
def password_form(state: AppState, request: Request, context: Dashboard) -> HTMLResponse:
    return page(state, request, "password.html", context, error=None)


@router.post("/password", response_class=HTMLResponse, summary="Change your password")
def change_password(
    state: AppState,
    db: DbSession,
    request: Request,
    context: Dashboard,
    current: Annotated[str, Form(max_length=256)],
    new: Annotated[str, Form(max_length=256)],
    csrf: Csrf,
) -> Response:
    check_csrf(context, csrf)
    now = state.clock.now()
    try:
        service.change_password(db, context.user, current, new, now)
    except (BadRequest, WeakPassword) as exc:
        error = exc.text(language(state, request))
        return page(state, request, "password.html", context, error=error, status=400)
    audit.record(
        db,
        context.actor,
        "password.changed",
        now,
        target_type="admin_user",
        target_id=str(context.user.id),
    )
    opened = service.open_session(db, context.user, now)
    opened.record.mfa_passed = True
    service.set_flash(
        opened.record, "ok", N_("Your password was changed; other sessions were signed out.")
    )
    response = redirect("/admin")
    set_session_cookie(response, request, opened.token, state.settings.secure_cookies)
    return response


@router.get("/users", response_class=HTMLResponse, summary="Admin accounts")
def users(state: AppState, db: DbSession, request: Request, context: UserManager) -> HTMLResponse:
    audit.record(db, context.actor, "view.admin_users", state.clock.now(), target_type="admin_user")
    return page(
        state,
        request,
        "users.html",
        context,
        users=service.list_users(db),
        roles=[r.value for r in Role],
        error=None,
    )


@router.post("/users", response_class=HTMLResponse, summary="Create an admin account")
def create_user(
    state: AppState,
    db: DbSession,
    request: Request,
    context: UserManager,
    email: Annotated[str, Form(max_length=254)],
    role: Annotated[str, Form(max_length=20)],
    password: Annotated[str, Form(max_length=256)],
    csrf: Csrf,
) -> Response:
    check_csrf(context, csrf)
    now = state.clock.now()
    try:
        user = service.create_user(db, email, role, password, now)
    except (BadRequest, Conflict, WeakPassword) as exc:
        message = exc.text(language(state, request))
        return page(
            state,
            request,
            "users.html",
            context,
            users=service.list_users(db),
            roles=[r.value for r in Role],
            error=message,
            status=400,
        )
    audit.record(
        db,
        context.actor,
        "user.created",
        now,
        target_type="admin_user",
        target_id=str(user.id),
        reason=f"role={user.role}",
    )
    if context.session is not None:
        service.set_flash(
            context.session,
            "ok",
            N_("Account created. Its owner enrols a second factor at first sign-in."),
        )
    return redirect("/admin/users")


@router.post("/users/{user_id}/disable", summary="Disable an admin account")
def disable_user(
    state: AppState, db: DbSession, context: UserManager, user_id: int, csrf: Csrf
) -> Response:
    check_csrf(context, csrf)
    if user_id == context.user.id:
        raise BadRequest(N_("you cannot disable your own account"))
    user = service.get_user(db, user_id)
    now = state.clock.now()
    user.disabled_at = user.disabled_at or now
    audit.record(
        db, context.actor, "user.disabled", now, target_type="admin_user", target_id=str(user_id)
    )
    return redirect("/admin/users")


@router.get("/tokens", response_class=HTMLResponse, summary="Your API tokens")
def tokens(state: AppState, db: DbSession, request: Request, context: TokenOwner) -> HTMLResponse:
    return page(
        state,
        request,
        "tokens.html",
        context,
        tokens=service.tokens_of(db, context.user),
        roles=[
            r.value
            for r in Role
            if allowed(context.role, Permission.view_dashboard) and _grantable(context, r)
        ],
        created=None,
        error=None,
    )


def _grantable(context: AdminContext, role: Role) -> bool:
    return MATRIX[role] <= MATRIX[Role(context.role)]


@router.post("/tokens", response_class=HTMLResponse, summary="Create an API token (shown once)")
def create_token(
    state: AppState,
    db: DbSession,
    request: Request,
    context: TokenOwner,
    name: Annotated[str, Form(max_length=80)],
    role: Annotated[str, Form(max_length=20)],
    csrf: Csrf,
) -> Response:
    check_csrf(context, csrf)
    if context.token is not None:
        raise Forbidden(N_("API tokens cannot create API tokens"))
    now = state.clock.now()
    token, secret = service.create_token(db, context.user, name, role, now)
    audit.record(
        db,
        context.actor,
        "token.created",
        now,
        target_type="api_token",
        target_id=str(token.id),
        reason=f"role={role}",
    )
    return page(
        state,
        request,
        "tokens.html",
        context,
        tokens=service.tokens_of(db, context.user),
        roles=[r.value for r in Role if _grantable(context, r)],
        created=secret,
        error=None,
    )


@router.post("/tokens/{token_id}/revoke", summary="Revoke an API token")
def revoke_token(
    state: AppState, db: DbSession, context: TokenOwner, token_id: int, csrf: Csrf
) -> Response:
    check_csrf(context, csrf)
    now = state.clock.now()
    service.revoke_token(db, context.user, token_id, now)
    audit.record(
        db, context.actor, "token.revoked", now, target_type="api_token", target_id=str(token_id)
    )
    return redirect("/admin/tokens")


@router.get("/audit", response_class=HTMLResponse, summary="The audit trail")
def audit_page(
    state: AppState, db: DbSession, request: Request, context: AuditReader, page_number: int = 1
) -> HTMLResponse:
    page_number = max(1, min(page_number, 100_000))
    seq, head_hash = audit.head(db)
    entries = audit.recent(db, limit=100, offset=(page_number - 1) * 100)
    return page(
        state,
        request,
        "audit.html",
        context,
        entries=entries,
        head_seq=seq,
        head_hash=head_hash,
        page_number=page_number,
    )


# -- admin API (tokens or sessions) -------------------------------------------------------


class Me(BaseModel):
    user_id: int
    role: str
    via: str
    permissions: list[str]


@router.get("/api/me", summary="Who the token or session belongs to, and what it may do")
def api_me(context: Dashboard) -> Me:
    return Me(
        user_id=context.user.id,
        role=context.role,
        via="token" if context.token else "session",
        permissions=sorted(p.value for p in MATRIX[Role(context.role)]),
    )


class AuditHead(BaseModel):
    seq: int
    hash: str
    intact: bool
    first_break: str | None


@router.get("/api/audit/head", summary="The audit chain's head hash and whether it verifies")
def api_audit_head(state: AppState, db: DbSession, context: AuditReader) -> AuditHead:
    seq, head_hash = audit.head(db)
    broken = audit.verify_chain(db)
    audit.record(
        db,
        context.actor,
        "audit.verified",
        state.clock.now(),
        outcome="ok" if broken is None else "broken",
    )
    return AuditHead(
        seq=seq, hash=head_hash, intact=broken is None, first_break=str(broken) if broken else None
    )


def login_location(path: str) -> str:
    return "/admin/login?next=" + quote(path, safe="/")


AbuseReader = Annotated[AdminContext, Depends(require(Permission.view_abuse))]


@router.get(
    "/abuse", response_class=HTMLResponse, summary="Top sources of errors and rejected writes"
)
def abuse(
    state: AppState, db: DbSession, request: Request, context: AbuseReader, hours: int = 24
) -> HTMLResponse:
    from gardien.security.connection_log import top_sources

    hours = max(1, min(hours, 24 * 31))
    now = state.clock.now()
    sources = top_sources(db, now - dt.timedelta(hours=hours), limit=50)
    # The view shows IP addresses in clear: the access itself is personal-data access.
    audit.record(
        db,
        context.actor,
        "view.abuse",
        now,
        target_type="connection_log",
        reason=f"last {hours} h, {len(sources)} sources",
    )
    return page(state, request, "abuse.html", context, sources=sources, hours=hours)
