"""The portal's pages for the rights that change what Gardien holds, opened from the status
page of a verified request (its token is the key): ``/rights/rectify/{reference}`` (propose
corrections) and ``/rights/directive/{reference}`` (record or revoke post-mortem directives,
with the directive's own consent); and the admin's ``/admin/rights/{reference}/rectification``
(the proposal shown decrypted, the view traced; approve or refuse with reasons) and
``/admin/rights/{reference}/death`` (record the death certificate, which freezes the deceased's
data) and ``/admin/rights/{reference}/directive`` (apply the directive, which lifts it).

Withdrawal of consent needs no page: it is carried out when the request is verified
(``withdrawal.on_verified``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from gardien.deps import AppState, DbSession, State
from gardien.errors import N_, BadRequest, GardienError, NotFound
from gardien.forms.routes import _language as language_of
from gardien.i18n import translator
from gardien.register.schema import FormField
from gardien.rights import (
    directives,
    notify,
    portal,
    rectification,
    repository,
    withdrawal,
)
from gardien.rights.amendments import RightsDirective
from gardien.rights.models import RightsCase
from gardien.rights.postmortem import ALL, Instruction, Requester
from gardien.rights.routes import NO_STORE, _body, _form
from gardien.rights.service import Desk, subject_of
from gardien.security import audit
from gardien.security.admin import page
from gardien.security.auth import AdminContext, check_csrf, require
from gardien.security.permissions import Permission
from gardien.security.service import set_flash
from gardien.storage.database import unit_of_work

router = APIRouter()
Handler = Annotated[AdminContext, Depends(require(Permission.handle_rights))]
Csrf = Annotated[str, Form(max_length=100)]
Reasons = Annotated[str, Form(max_length=rectification.MAX_DESCRIPTION * 2)]
PERSON = portal.PORTAL_ACTOR
MAX_CERTIFICATE = 5 * 1024 * 1024


def _desk(state: State) -> Desk:
    return Desk(state.register, state.providers, state.settings.base_url)


def _render(
    state: State, template: str, language: str, *, status: int = 200, **context: Any
) -> HTMLResponse:
    html = (
        state.env(language)
        .get_template(f"rights/{template}")
        .render(languages=[], path=portal.PORTAL, **context)
    )
    return HTMLResponse(html, status_code=status, headers=NO_STORE)


def _unknown(state: State, language: str) -> HTMLResponse:
    return _render(state, "status_unknown.html", language, status=404)


def _case(session: Session, state: State, reference: str, token: str, right: str) -> RightsCase:
    """The verified case ``token`` opens, asking for ``right``; ``NotFound`` otherwise (the
    same answer whatever is wrong: reference, token, right)."""
    case = portal.case_for_token(session, secret=state.secret, reference=reference, token=token)
    if case is None or right not in portal.rights_of(case) or case.verified_at is None:
        raise NotFound(portal.VERIFY_MESSAGES[portal.Outcome.unknown])
    return case


async def _posted(state: State, request: Request) -> tuple[dict[str, object], str, str]:
    """A portal form: its fields, the language and the status page's token."""
    raw = _form(await _body(request, "application/x-www-form-urlencoded"))
    chosen = raw.get("lang")
    language = language_of(state, request, chosen if isinstance(chosen, str) else None)
    token = raw.get("token")
    return raw, language, token[:64] if isinstance(token, str) else ""


# -- rectification, the person's side -------------------------------------------------------


def _rectify_page(
    state: State,
    language: str,
    reference: str,
    token: str,
    held: Mapping[str, FormField],
    *,
    values: Mapping[str, str] | None = None,
    error: str | None = None,
    done: bool = False,
    status: int = 200,
) -> HTMLResponse:
    default = state.register.languages.default
    fields = [
        {
            "name": spec.name,
            "label": spec.label.get(language) or spec.label.get(default) or spec.name,
            "max_length": spec.max_length,
            "multiline": spec.type.value == "textarea",
        }
        for spec in held.values()
    ]
    return _render(
        state,
        "rectify.html",
        language,
        status=status,
        reference=reference,
        token=token,
        fields=fields,
        values=values or {},
        error=error,
        done=done,
        max_description=rectification.MAX_DESCRIPTION,
        not_rectifiable=sorted(rectification.NOT_RECTIFIABLE.values()),
    )


@router.get(
    "/rights/rectify/{reference}", response_class=HTMLResponse, summary="Propose corrections"
)
async def rectify_page(reference: str, state: AppState, request: Request) -> Response:
    language = language_of(state, request)
    token = request.query_params.get("token", "")[:64]
    held = await run_in_threadpool(_held, state, reference[:24], token)
    if held is None:
        return _unknown(state, language)
    return _rectify_page(state, language, reference[:24], token, held)


def _held(state: State, reference: str, token: str) -> dict[str, FormField] | None:
    """The fields of the activities that hold the person's data, or None (no such case)."""
    with state.sessions() as session:
        try:
            case = _case(session, state, reference, token, rectification.RIGHT)
        except NotFound:
            return None
        return rectification.held_fields(session, _desk(state), case)


def _propose(state: State, reference: str, token: str, raw: Mapping[str, object]) -> None:
    with unit_of_work(state.sessions) as session:
        case = _case(session, state, reference, token, rectification.RIGHT)
        corrections = {k[6:]: v for k, v in raw.items() if k.startswith("field.")}
        unknown = set(raw) - {"token", "lang", "description"} - {f"field.{k}" for k in corrections}
        if unknown:
            corrections[sorted(unknown)[0][:64]] = ""  # reported as not a field we hold
        rectification.propose(
            session,
            _desk(state),
            case,
            corrections,
            raw.get("description"),
            now=state.clock.now(),
            actor=PERSON,
        )


@router.post("/rights/rectify/{reference}", response_class=HTMLResponse, summary="Send corrections")
async def rectify_submit(reference: str, state: AppState, request: Request) -> Response:
    raw, language, token = await _posted(state, request)
    reference = reference[:24]
    values = {k: v for k, v in raw.items() if isinstance(v, str) and k not in ("token", "lang")}
    try:
        await run_in_threadpool(_propose, state, reference, token, raw)
    except NotFound:
        return _unknown(state, language)
    except GardienError as refused:
        held = await run_in_threadpool(_held, state, reference, token)
        return _rectify_page(
            state,
            language,
            reference,
            token,
            held or {},
            values=values,
            error=refused.text(language),
            status=422 if refused.status == 400 else refused.status,
        )
    return _rectify_page(state, language, reference, token, {}, done=True)


# -- post-mortem directives, the person's side ----------------------------------------------


def _directive_state(state: State, reference: str, token: str) -> dict[str, Any] | None:
    with state.sessions() as session:
        try:
            case = _case(session, state, reference, token, directives.RIGHT)
        except NotFound:
            return None
        now = state.clock.now()
        who = directives.holder(case)
        row = directives.in_force(session, who, now) if who is not None else None
        directive = directives.directive_of(row) if row is not None else None
        return {
            "in_force": directive is not None,
            "instructions": dict(directive.instructions) if directive else {},
            "designee_name": directive.designee_name if directive else "",
            "designee_contact": directive.designee_contact if directive else "",
        }


def _directive_page(
    state: State,
    language: str,
    reference: str,
    token: str,
    current: Mapping[str, Any],
    *,
    error: str | None = None,
    message: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    gettext = translator(language).gettext
    return _render(
        state,
        "directive.html",
        language,
        status=status,
        reference=reference,
        token=token,
        current=current,
        categories=[ALL, *directives.categories(_desk(state))],
        instructions=[i.value for i in Instruction],
        consent_text=str(gettext(directives.CONSENT_TEXT)),
        error=error,
        message=message,
    )


@router.get(
    "/rights/directive/{reference}",
    response_class=HTMLResponse,
    summary="Post-mortem directives: record, change or revoke them",
)
async def directive_page(reference: str, state: AppState, request: Request) -> Response:
    language = language_of(state, request)
    token = request.query_params.get("token", "")[:64]
    current = await run_in_threadpool(_directive_state, state, reference[:24], token)
    if current is None:
        return _unknown(state, language)
    return _directive_page(state, language, reference[:24], token, current)


def _directive_act(
    state: State, reference: str, token: str, raw: Mapping[str, object], language: str
) -> str:
    with unit_of_work(state.sessions) as session:
        case = _case(session, state, reference, token, directives.RIGHT)
        now = state.clock.now()
        if raw.get("action") == "revoke":
            directives.revoke(session, case, now=now, actor=PERSON)
            return "revoked"
        consent_text = str(translator(language).gettext(directives.CONSENT_TEXT))
        directives.save(
            session, _desk(state), case, raw, consent_text=consent_text, now=now, actor=PERSON
        )
        return "recorded"


@router.post(
    "/rights/directive/{reference}",
    response_class=HTMLResponse,
    summary="Record (with its own consent) or revoke post-mortem directives",
)
async def directive_submit(reference: str, state: AppState, request: Request) -> Response:
    raw, language, token = await _posted(state, request)
    reference = reference[:24]
    gettext = translator(language).gettext
    try:
        done = await run_in_threadpool(_directive_act, state, reference, token, raw, language)
    except GardienError as refused:
        current = await run_in_threadpool(_directive_state, state, reference, token)
        if current is None:
            return _unknown(state, language)
        return _directive_page(
            state,
            language,
            reference,
            token,
            current,
            error=refused.text(language),
            status=422 if refused.status == 400 else refused.status,
        )
    current = await run_in_threadpool(_directive_state, state, reference, token)
    message = (
        gettext("Your directives are recorded.")
        if done == "recorded"
        else gettext("Your directives are revoked: they no longer apply.")
    )
    return _directive_page(state, language, reference, token, current or {}, message=message)


# -- the agent's side -----------------------------------------------------------------------


def _admin_case(db: Session, reference: str) -> RightsCase:
    case = repository.by_reference(db, reference)
    if case is None:
        raise NotFound(portal.VERIFY_MESSAGES[portal.Outcome.unknown])
    return case


@router.get(
    "/admin/rights/{reference}/rectification",
    response_class=HTMLResponse,
    summary="A case's proposed corrections (view traced)",
)
def rectification_view(
    state: AppState, db: DbSession, request: Request, context: Handler, reference: str
) -> HTMLResponse:
    case = _admin_case(db, reference)
    audit.record(
        db,
        context.actor,
        "view.rights_rectification",
        state.clock.now(),
        target_type="rights_case",
        target_id=case.reference,
    )
    row = rectification.pending(db, case)
    return page(
        state,
        request,
        "rights_rectification.html",
        context,
        case=case,
        row=row,
        proposal=rectification.proposal_of(row) if row is not None else None,
    )


@router.post(
    "/admin/rights/{reference}/rectification",
    summary="Approve (apply through every store) or refuse, with reasons, a proposal",
)
def rectification_decide(
    state: AppState,
    db: DbSession,
    context: Handler,
    reference: str,
    csrf: Csrf,
    decision: Annotated[str, Form(max_length=10)],
    reasons: Reasons = "",
) -> Response:
    check_csrf(context, csrf)
    case = _admin_case(db, reference)
    if decision not in ("approve", "refuse"):
        raise NotFound(portal.VERIFY_MESSAGES[portal.Outcome.unknown])
    now = state.clock.now()
    done = rectification.decide(
        db,
        _desk(state),
        case,
        approve=decision == "approve",
        reasons=reasons,
        now=now,
        actor=context.actor,
    )
    row = done.rectification
    if row.status == "applied":
        details = {"fields": [f for f in row.fields.split(",") if f], "count": row.changed}
        notify.outcome(
            db,
            case,
            "rectification",
            register=state.register,
            now=now,
            actor=context.actor,
            details=details,
        )
    else:
        notify.outcome(
            db,
            case,
            "refusal",
            register=state.register,
            now=now,
            actor=context.actor,
            reasons=row.reasons,
        )
    return RedirectResponse(f"/admin/rights/{case.reference}/rectification", status_code=303)


def _directive_for(db: Session, deceased: RightsCase) -> RightsDirective | None:
    """The directive recorded in the deceased's own request (named by its reference)."""
    return db.scalars(
        select(RightsDirective)
        .where(RightsDirective.case_id == deceased.id)
        .order_by(RightsDirective.id.desc())
        .limit(1)
    ).first()


def _flash(context: AdminContext, message: str) -> None:
    """The outcome of an admin step, shown once on the page the redirect leads to."""
    if context.session is not None:
        set_flash(context.session, "ok", message)


def _requester(value: str) -> Requester:
    try:
        return Requester(value)
    except ValueError:
        raise BadRequest(N_("the requester is the designated person or an heir")) from None


@router.post(
    "/admin/rights/{reference}/death",
    summary="Record the death certificate (its hash) and freeze the deceased's data",
)
def death_record(
    state: AppState,
    db: DbSession,
    context: Handler,
    reference: str,
    csrf: Csrf,
    deceased_case: Annotated[str, Form(max_length=24)],
    requester: Annotated[str, Form(max_length=10)],
    certificate: Annotated[UploadFile, File()],
) -> Response:
    """Receive the notice, verify the certificate, freeze (legal-requirements §2.9.6): the
    deceased's identifiers stay restricted until the directive is applied (``/directive``)
    or this case is closed."""
    check_csrf(context, csrf)
    content = certificate.file.read(MAX_CERTIFICATE + 1)
    if len(content) > MAX_CERTIFICATE:
        raise BadRequest(
            N_("the document is larger than %(size)s KB"), size=MAX_CERTIFICATE // 1024
        )
    case = _admin_case(db, reference)
    deceased = _admin_case(db, deceased_case)
    directives.notice_of_death(
        db,
        _desk(state),
        _directive_for(db, deceased),
        case,
        content,
        deceased=subject_of(deceased),
        requester=_requester(requester),
        now=state.clock.now(),
        actor=context.actor,
    )
    _flash(
        context,
        N_(
            "The death is recorded: the deceased's data are frozen until the directive is "
            "applied or this case is closed."
        ),
    )
    return RedirectResponse(f"/admin/rights/{case.reference}", status_code=303)


@router.post(
    "/admin/rights/{reference}/directive",
    summary="Apply the deceased's directive (or the heirs' limited rights) once the death is "
    "recorded; lifts the freeze",
)
def directive_apply(
    state: AppState,
    db: DbSession,
    context: Handler,
    reference: str,
    csrf: Csrf,
    deceased_case: Annotated[str, Form(max_length=24)],
    requester: Annotated[str, Form(max_length=10)],
    asked: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Execute (legal-requirements §2.9.6). ``asked``: the heirs' actions, ticked one by one
    or comma-separated (anything beyond them is refused by ``postmortem.plan``)."""
    check_csrf(context, csrf)
    wanted = frozenset(a for item in asked or [] for a in item.split(",") if a)
    case = _admin_case(db, reference)
    deceased = _admin_case(db, deceased_case)
    row = _directive_for(db, deceased)
    now = state.clock.now()
    who = _requester(requester)
    done = directives.execute(
        db,
        _desk(state),
        row,
        case,
        deceased=subject_of(deceased),
        requester=who,
        asked=wanted,
        now=now,
        actor=context.actor,
    )
    if done.package is not None:
        # What the directive communicates goes to the designated person the way an access
        # package does: encrypted, behind a one-time link sent to their contact (traced).
        notify.deliver(
            db,
            _desk(state),
            case,
            done.package,
            "directive",
            data_dir=state.settings.data_dir,
            secret=state.secret,
            now=now,
            actor=context.actor,
        )
    _flash(
        context,
        N_(
            "The directive was applied and the freeze lifted; what it communicates was sent "
            "to the designated person."
        )
        if done.package is not None
        else N_("The directive was applied and the freeze lifted."),
    )
    return RedirectResponse(f"/admin/rights/{case.reference}", status_code=303)


@router.post(
    "/admin/rights/{reference}/withdraw-consent",
    summary="Withdraw every consent of the person of a verified case (a request by post or e-mail)",
)
def withdraw_consent(
    state: AppState, db: DbSession, context: Handler, reference: str, csrf: Csrf
) -> Response:
    check_csrf(context, csrf)
    case = _admin_case(db, reference)
    counts = withdrawal.withdraw(db, _desk(state), case, now=state.clock.now(), actor=context.actor)
    notify.outcome(
        db,
        case,
        "withdrawal",
        register=state.register,
        now=state.clock.now(),
        actor=context.actor,
        details={"count": sum(counts.values()), "stores": counts},
    )
    return RedirectResponse(f"/admin/rights/{case.reference}", status_code=303)
