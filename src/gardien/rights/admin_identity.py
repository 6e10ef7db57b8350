"""The few admin endpoints of the person-facing paths: record a reasonable doubt about a
requester's identity (which asks the person for a document), look at the document (traced),
decide on it (which deletes it), and print the letters that answer a request made by post.

All require ``handle_rights``; the state-changing ones a CSRF token. Viewing the document and
printing a letter (it names the person's case and its answer) are written to the audit trail
(a view changes nothing in the case). The case page itself belongs to ``rights/admin.py``;
these endpoints send the agent back to it.
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from gardien.deps import AppState, DbSession
from gardien.errors import N_, NotFound
from gardien.rights import documents, notify
from gardien.rights.deadlines import local_day
from gardien.rights.exchange import RightsNotice
from gardien.rights.models import RightsCase
from gardien.security.audit import record
from gardien.security.auth import AdminContext, check_csrf, require
from gardien.security.permissions import Permission

router = APIRouter(prefix="/admin")
Handler = Annotated[AdminContext, Depends(require(Permission.handle_rights))]
Csrf = Annotated[str, Form(max_length=100)]
CASE_PAGE = "/admin/rights/{reference}"


def _case(db: Session, reference: str) -> RightsCase:
    case = db.scalar(select(RightsCase).where(RightsCase.reference == reference[:24]))
    if case is None:
        raise NotFound(N_("no such case (it may have been purged)"))
    return case


def _back(case: RightsCase) -> RedirectResponse:
    return RedirectResponse(CASE_PAGE.format(reference=case.reference), status_code=303)


@router.post(
    "/rights/{reference}/identity/doubt",
    summary="Record a reasonable doubt about the requester's identity: a document is asked",
)
def record_doubt(
    state: AppState,
    db: DbSession,
    context: Handler,
    reference: str,
    csrf: Csrf,
    reason: Annotated[str, Form(max_length=documents.MAX_REASON * 2)],
) -> Response:
    check_csrf(context, csrf)
    case = _case(db, reference)
    now = state.clock.now()
    token = documents.record_doubt(
        db, case, reason=reason, secret=state.secret, now=now, actor=context.actor
    )
    notify.identity(db, case, token, register=state.register, now=now, actor=context.actor)
    return _back(case)


@router.get(
    "/rights/{reference}/identity/document",
    summary="The identity document waiting to be checked (view traced)",
    responses={200: {"content": {"application/pdf": {}, "image/png": {}, "image/jpeg": {}}}},
)
def view_document(state: AppState, db: DbSession, context: Handler, reference: str) -> Response:
    case = _case(db, reference)
    content, media_type = documents.view_document(
        db, case, now=state.clock.now(), actor=context.actor
    )
    return Response(
        content,
        media_type=media_type,
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": "inline",
            # Shown, never run: no script of a crafted PDF may act in the admin's origin.
            "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post(
    "/rights/{reference}/identity/decision",
    summary="Accept or reject the identity document; it is deleted at once",
)
def decide(
    state: AppState,
    db: DbSession,
    context: Handler,
    reference: str,
    csrf: Csrf,
    decision: Annotated[str, Form(max_length=12)],
) -> Response:
    check_csrf(context, csrf)
    case = _case(db, reference)
    now = state.clock.now()
    documents.decide(db, case, decision, now=now, actor=context.actor)
    if case.verified_at is not None:
        notify.acknowledge_once(db, case, register=state.register, now=now, actor=context.actor)
    return _back(case)


LETTER_STYLE = """
body{font-family:Georgia,serif;max-width:40em;margin:2em auto;line-height:1.45;color:#000}
.sender,.recipient{white-space:pre-line}.recipient{margin:2em 0 2em 55%;min-height:6em;
border:1px dashed #888;padding:.5em}.date{text-align:right}p{white-space:pre-line}
.no-print{background:#eef;padding:.5em}
@media print{.no-print{display:none}.recipient{border:none}body{margin:0}
@page{size:A4;margin:2cm}}
"""


@router.get(
    "/rights/{reference}/letters/{notice_id}",
    response_class=HTMLResponse,
    summary="A letter answering a request made by post, ready to print (traced)",
)
def letter(
    state: AppState, db: DbSession, context: Handler, reference: str, notice_id: int
) -> HTMLResponse:
    case = _case(db, reference)
    notice = db.get(RightsNotice, notice_id)
    if notice is None or notice.case_id != case.id or notice.channel != "letter":
        raise NotFound(N_("no such letter for this case"))
    now = state.clock.now()
    facts = notify.facts_of(db, case, notice)
    register = state.register
    operator = register.operator
    address = operator.addresses[0]
    e = html.escape
    dated = local_day(notice.created_at, register.rights.time_zone)  # the controller's day
    sender = "\n".join(
        [operator.legal_name, address.street, f"{address.postcode} {address.city}", address.country]
    )
    body = "".join(
        f"<p>{e(part)}</p>" for part in notify.paragraphs(facts, register, state.settings.base_url)
    )
    page = (
        f'<!doctype html><html lang="{e(facts.language)}"><head><meta charset="utf-8">'
        f"<title>{e(notify.subject_line(facts, register))}</title>"
        f"<style>{LETTER_STYLE}</style></head><body>"
        '<p class="no-print">Print this page (Ctrl+P) and write the address the letter came '
        "from in the box.</p>"
        f'<div class="sender">{e(sender)}</div>'
        '<div class="recipient" aria-label="recipient"></div>'
        f'<p class="date">{e(dated.isoformat())}</p>'
        f"<h1>{e(notify.subject_line(facts, register))}</h1>{body}</body></html>"
    )
    record(
        db,
        context.actor,
        "rights.letter_view",
        now,
        target_type="rights_case",
        target_id=case.reference,
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})
