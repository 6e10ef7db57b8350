"""Restriction, objection, recipients and the evidence pack in the admin, and the recipients'
acknowledgement link.

``/admin/rights/{reference}/restriction`` is the page of a case's restriction (apply; tell the
person; lift), the DPO's objection decisions, and the recipients told (notify; close one that
cannot be told, with its reason). Restricting, lifting and notifying need ``handle_rights``;
deciding an objection and building an evidence pack need ``export_data`` (the DPO). Every
POST carries the session's CSRF token; building a pack is written to the audit trail.
``/rights/recipient-ack`` is public: the one-time token is the credential, and a GET only
shows the button (a link scanner fetching it acknowledges nothing).
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from gardien.deps import AppState, DbSession
from gardien.errors import N_, BadRequest, NotFound
from gardien.i18n import translator
from gardien.rights import evidence, recipients, repository
from gardien.rights import restriction as workflow
from gardien.rights.deadlines import local_day
from gardien.rights.models import RightsCase
from gardien.rights.service import Desk
from gardien.security import audit
from gardien.security.admin import language as language_of
from gardien.security.admin import page
from gardien.security.auth import AdminContext, check_csrf, require
from gardien.security.permissions import Permission
from gardien.storage import restriction as store

router = APIRouter()
Handler = Annotated[AdminContext, Depends(require(Permission.handle_rights))]
Dpo = Annotated[AdminContext, Depends(require(Permission.export_data))]
Csrf = Annotated[str, Form(max_length=100)]
Message = Annotated[str, Form(max_length=20000)]
PAGE = "/admin/rights/{reference}/restriction"
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _desk(state: AppState) -> Desk:
    return Desk(state.register, state.providers, state.settings.base_url)


def _case(db: Session, reference: str) -> RightsCase:
    case = repository.by_reference(db, reference[:24])
    if case is None:
        raise NotFound(N_("no such case (it may have been deleted)"))
    return case


def _back(case: RightsCase) -> RedirectResponse:
    return RedirectResponse(PAGE.format(reference=case.reference), status_code=303)


@router.get(
    "/admin/rights/{reference}/restriction",
    response_class=HTMLResponse,
    summary="A case's restriction, objections and recipients",
)
def restriction_page(
    state: AppState, db: DbSession, request: Request, context: Handler, reference: str
) -> HTMLResponse:
    case = _case(db, reference)
    rows = store.active(db, case.id)
    return page(
        state,
        request,
        "rights_restriction.html",
        context,
        case=case,
        restricted=any(r.reason == store.RESTRICTION for r in rows),
        objections=sorted({r.activity or "" for r in rows if r.reason == store.OBJECTION}),
        objectable=workflow.objectable(_desk(state)),
        recipients=recipients.of_case(db, case),
        operations=recipients.OPERATIONS,
    )


@router.post("/admin/rights/{reference}/restrict", summary="Restrict processing (Art. 18)")
def restrict(
    state: AppState, db: DbSession, context: Handler, reference: str, csrf: Csrf
) -> Response:
    check_csrf(context, csrf)
    case = _case(db, reference)
    workflow.restrict(db, _desk(state), case, now=state.clock.now(), actor=context.actor)
    return _back(case)


@router.post(
    "/admin/rights/{reference}/restriction/announce",
    summary="Tell the person the restriction will be lifted",
)
def announce(
    state: AppState, db: DbSession, context: Handler, reference: str, csrf: Csrf, message: Message
) -> Response:
    check_csrf(context, csrf)
    case = _case(db, reference)
    workflow.announce_lift(
        db, _desk(state), case, message, now=state.clock.now(), actor=context.actor
    )
    return _back(case)


@router.post(
    "/admin/rights/{reference}/restriction/lift", summary="Lift the restriction (once told)"
)
def lift(state: AppState, db: DbSession, context: Handler, reference: str, csrf: Csrf) -> Response:
    check_csrf(context, csrf)
    case = _case(db, reference)
    workflow.lift(db, _desk(state), case, now=state.clock.now(), actor=context.actor)
    return _back(case)


@router.post(
    "/admin/rights/{reference}/objection", summary="Record the DPO's decision on an objection"
)
def objection(
    state: AppState,
    db: DbSession,
    context: Dpo,
    reference: str,
    csrf: Csrf,
    activity: Annotated[str, Form(max_length=64)],
    outcome: Annotated[str, Form(max_length=10)],
    grounds: Annotated[str, Form(max_length=workflow.GROUNDS_LIMIT * 2)],
) -> Response:
    check_csrf(context, csrf)
    case = _case(db, reference)
    if outcome not in ("upheld", "rejected"):
        raise BadRequest(N_("the outcome must be upheld or rejected"))
    workflow.decide_objection(
        db,
        _desk(state),
        case,
        activity,
        outcome == "upheld",
        grounds,
        now=state.clock.now(),
        actor=context.actor,
    )
    return _back(case)


@router.post(
    "/admin/rights/{reference}/recipients/notify",
    summary="Notify the recipients of a rectification, erasure or restriction (Art. 19)",
)
def notify_recipients(
    state: AppState,
    db: DbSession,
    context: Handler,
    reference: str,
    csrf: Csrf,
    operation: Annotated[str, Form(max_length=16)],
) -> Response:
    check_csrf(context, csrf)
    case = _case(db, reference)
    recipients.notify(
        db,
        _desk(state),
        case,
        operation,
        base_url=state.settings.base_url,
        now=state.clock.now(),
        actor=context.actor,
    )
    return _back(case)


@router.post(
    "/admin/rights/{reference}/recipients/{notice_id}/close",
    summary="Close a recipient notification that cannot be sent, with its reason",
)
def close_recipient(
    state: AppState,
    db: DbSession,
    context: Handler,
    reference: str,
    notice_id: int,
    csrf: Csrf,
    reason: Annotated[str, Form(max_length=recipients.REASON_LIMIT * 2)],
) -> Response:
    check_csrf(context, csrf)
    case = _case(db, reference)
    recipients.close(db, case, notice_id, reason, now=state.clock.now(), actor=context.actor)
    return _back(case)


def _download(text: str, name: str) -> Response:
    return Response(
        text,
        media_type="text/html; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', **NO_STORE},
    )


@router.get("/admin/rights/{reference}/evidence", summary="A case's evidence pack (traced)")
def case_evidence(
    state: AppState, db: DbSession, request: Request, context: Dpo, reference: str
) -> Response:
    case = _case(db, reference)
    now = state.clock.now()
    text = evidence.case_pack(
        db,
        case,
        now=now,
        language=language_of(state, request),
        time_zone=state.register.rights.time_zone,
    )
    audit.record(
        db,
        context.actor,
        "rights.evidence_exported",
        now,
        target_type="rights_case",
        target_id=case.reference,
    )
    return _download(text, f"evidence-{case.reference}.html")


@router.get("/admin/evidence", summary="The system's evidence pack on a date (traced)")
def system_evidence(
    state: AppState,
    db: DbSession,
    request: Request,
    context: Dpo,
    on: Annotated[dt.date | None, Query(alias="date")] = None,
) -> Response:
    """The system's pack at the end of ``date`` (default: today), on the controller's clock."""
    now = state.clock.now()
    time_zone = state.register.rights.time_zone
    on = on or local_day(now, time_zone)
    text = evidence.system_pack(
        db, on, now=now, language=language_of(state, request), time_zone=time_zone
    )
    audit.record(
        db,
        context.actor,
        "rights.evidence_exported",
        now,
        target_type="system",
        target_id=on.isoformat(),
    )
    return _download(text, f"evidence-{on.isoformat()}.html")


def _ack_page(language: str, body: str, status: int = 200) -> HTMLResponse:
    _ = translator(language).gettext
    title = html.escape(_("Acknowledgement of a data-subject request"))
    return HTMLResponse(
        f'<!doctype html><html lang="{html.escape(language)}"><head><meta charset="utf-8">'
        f"<title>{title}</title></head><body><main><h1>{title}</h1>{body}</main></body></html>",
        status_code=status,
        headers=NO_STORE,
    )


Token = Annotated[str, Query(min_length=20, max_length=100)]


@router.get("/rights/recipient-ack", response_class=HTMLResponse, summary="Recipient: confirm")
def ack_form(state: AppState, token: Token) -> HTMLResponse:
    language = state.register.languages.default
    _ = translator(language).gettext
    button = html.escape(_("I confirm we applied it"))
    return _ack_page(
        language,
        f'<form method="post" action="{recipients.ACK_PATH}">'
        f'<input type="hidden" name="token" value="{html.escape(token)}">'
        f'<button type="submit">{button}</button></form>',
    )


@router.post("/rights/recipient-ack", response_class=HTMLResponse, summary="Recipient: ack")
def ack(
    state: AppState, db: DbSession, token: Annotated[str, Form(min_length=20, max_length=100)]
) -> HTMLResponse:
    language = state.register.languages.default
    _ = translator(language).gettext
    recipients.acknowledge(db, token, state.clock.now())
    thanks = html.escape(_("Thank you: your acknowledgement is recorded."))
    return _ack_page(language, f"<p>{thanks}</p>")
