"""The rights cases in the admin: the queue (filters, days left, due soon or late, on-time
rate), a case's page (identifiers and documents shown decrypted, each view traced; the
timeline; assignment, notes, answer drafts, verification, export, erasure, closing), and the
form an agent records a letter or an e-mail with (the scanned letter as an encrypted
attachment).

The queue shows references, dates and statuses, never an identifier. Every POST carries the
session's CSRF token; the rules live in ``casework`` and ``service``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Annotated
from zoneinfo import ZoneInfo

from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from gardien.deps import AppState, DbSession, ReadSession
from gardien.errors import N_, BadRequest, Conflict, NotFound, localise
from gardien.rights import casework, documents, notify, repository
from gardien.rights.amend_routes import MAX_CERTIFICATE
from gardien.rights.answers import KINDS
from gardien.rights.directives import APPLIED_EVENT, DEATH_EVENT
from gardien.rights.models import RightsAttachment, RightsCase
from gardien.rights.phones import e164
from gardien.rights.portal import offered, rights_of
from gardien.rights.postmortem import HeirAction
from gardien.rights.service import (
    CHANNELS,
    Desk,
    add_event,
    close_case,
    erase,
    export_package,
    subject_of,
    timeline,
)
from gardien.security import audit, service
from gardien.security.admin import language as language_of
from gardien.security.admin import page
from gardien.security.auth import AdminContext, check_csrf, require
from gardien.security.models import AuditEntry
from gardien.security.permissions import Permission
from gardien.security.uploads import MAX_UPLOAD_BYTES, check_upload

router = APIRouter(prefix="/admin")
Handler = Annotated[AdminContext, Depends(require(Permission.handle_rights))]
Csrf = Annotated[str, Form(max_length=100)]
Text = Annotated[str, Form(max_length=casework.MESSAGE_LIMIT * 2)]
Short = Annotated[str, Query(max_length=20)]
INTAKE_PATH = "/admin/rights/new"
UPLOAD_FORM_OVERHEAD = 64 * 1024
"""Room for the intake form's other fields and the multipart framing around the scan: the
body-size limit of ``INTAKE_PATH`` is the largest upload plus this."""
FIGURES_DAYS = 90
"""The default period of the on-time rate: the last 90 days."""
STATUSES = ("open", "closed")
DUE = ("soon", "late")
ASSIGNEES = ("me", "none")


def _desk(state: AppState) -> Desk:
    return Desk(state.register, state.providers, state.settings.base_url)


def _choice(value: str | None, allowed: tuple[str, ...] | frozenset[str], name: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise BadRequest(N_("unknown %(name)s: %(value)s"), name=name, value=value[:20])
    return value


@router.get("/rights", response_class=HTMLResponse, summary="Rights requests: the queue")
def queue(
    state: AppState,
    db: ReadSession,
    request: Request,
    context: Handler,
    status: Short = "",
    right: Short = "",
    channel: Short = "",
    due: Short = "",
    assignee: Short = "",
    start: Annotated[dt.date | None, Query(alias="from")] = None,
    end: Annotated[dt.date | None, Query(alias="to")] = None,
) -> HTMLResponse:
    today = casework.today(state.register, state.clock.now())
    chosen = repository.QueueFilter(
        status=_choice(status, STATUSES, "status"),
        right=_choice(right, tuple(offered(state.register)), "right"),
        channel=_choice(channel, CHANNELS, "channel"),
        due=_choice(due, DUE, "due"),
        assignee=_choice(assignee, ASSIGNEES, "assignee"),
        received_from=start,
        received_to=end,
    )
    cases = repository.queue(db, chosen, today, context.user.id, state.register.rights.time_zone)
    period_end = end or today
    period_start = start or period_end - dt.timedelta(days=FIGURES_DAYS)
    staff = repository.staff_names(db, {c.assignee_id for c in cases if c.assignee_id})
    return page(
        state,
        request,
        "rights_queue.html",
        context,
        rows=[
            (c, rights_of(c), casework.days_left(c, today), staff.get(c.assignee_id or 0))
            for c in cases
        ],
        figures=repository.figures(
            db, today, period_start, period_end, state.register.rights.time_zone
        ),
        chart=_chart(casework.by_days_left(repository.open_due_dates(db), today)),
        period=(period_start.isoformat(), period_end.isoformat()),
        chosen=chosen,
        start=start.isoformat() if start else "",
        end=end.isoformat() if end else "",
        statuses=STATUSES,
        rights=offered(state.register),
        channels=sorted(CHANNELS),
        me=context.user.id,
        soon=repository.DUE_SOON_DAYS,
    )


CHART_WIDTH = 480
BAR_HEIGHT = 22


def _chart(buckets: list[tuple[str, int]]) -> dict[str, object]:
    """Horizontal bars, one per bucket of days left, drawn on the server (no script)."""
    peak = max((count for _, count in buckets), default=0) or 1
    label_width = 60
    bars = [
        {
            "label": label,
            "count": count,
            "y": index * (BAR_HEIGHT + 6),
            "width": round((CHART_WIDTH - label_width - 40) * count / peak),
            "x": label_width,
            "late": label == "late",
        }
        for index, (label, count) in enumerate(buckets)
    ]
    return {"bars": bars, "width": CHART_WIDTH, "height": len(bars) * (BAR_HEIGHT + 6)}


# -- intake -----------------------------------------------------------------------------------


@router.get(
    INTAKE_PATH.removeprefix("/admin"),
    response_class=HTMLResponse,
    summary="Record a request by letter",
)
def intake_form(state: AppState, request: Request, context: Handler) -> HTMLResponse:
    return _intake_page(state, request, context)


def _intake_page(
    state: AppState,
    request: Request,
    context: AdminContext,
    *,
    error: str | None = None,
    values: dict[str, object] | None = None,
) -> HTMLResponse:
    """The intake form; after a refusal, with its reason and what was typed (not the file)."""
    today = casework.today(state.register, state.clock.now()).isoformat()
    return page(
        state,
        request,
        "rights_new.html",
        context,
        status=400 if error else 200,
        error=error,
        values=values
        or {
            "channel": "",
            "received": today,
            "language": state.register.languages.default,
            "rights": [],
            "email": "",
            "phone": "",
            "ip": "",
            "ip_from": "",
            "ip_to": "",
        },
        channels=casework.INTAKE_CHANNELS,
        rights=offered(state.register),
        person_languages=state.register.languages.available,
        today=today,
        max_mb=MAX_UPLOAD_BYTES // (1024 * 1024),
    )


def _email(value: str) -> str | None:
    if not value.strip():
        return None
    try:
        return str(validate_email(value.strip(), check_deliverability=False).normalized)
    except EmailNotValidError:
        raise BadRequest(N_("the e-mail address is not valid")) from None


def _phone(state: AppState, value: str) -> str | None:
    if not value.strip():
        return None
    number = e164(value, state.register.operator.addresses[0].country)
    if number is None:
        raise BadRequest(N_("the phone number is not valid (give its country code)"))
    return number


MAX_IP_PERIOD_DAYS = 366
"""The longest period an IP address is searched in the connection log for (its retention is
shorter): an address is shared over time, the period keeps the search to the person."""


def _ip(
    state: AppState, value: str, start: str, end: str
) -> tuple[str | None, tuple[dt.datetime, dt.datetime] | None]:
    """An IP address and the days it was used (both required together), on the register's
    clock: from the start of ``start`` to the end of ``end``."""
    if not value.strip():
        if start or end:
            raise BadRequest(N_("give the IP address the period is for"))
        return None, None
    try:
        address = str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise BadRequest(N_("the IP address is not valid")) from None
    try:
        first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except ValueError:
        raise BadRequest(
            N_("give the period the IP address was used in (two dates, YYYY-MM-DD)")
        ) from None
    if last < first or (last - first).days > MAX_IP_PERIOD_DAYS:
        raise BadRequest(
            N_("the period must end after it starts and last at most %(days)s days"),
            days=MAX_IP_PERIOD_DAYS,
        )
    office = ZoneInfo(state.register.rights.time_zone)
    period = (
        dt.datetime.combine(first, dt.time(), office).astimezone(dt.UTC),
        dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), office).astimezone(dt.UTC),
    )
    return address, period


def _scan(upload: UploadFile | None) -> bytes | None:
    if upload is None or (not upload.filename and not upload.size):
        return None
    content = upload.file.read(MAX_UPLOAD_BYTES + 1)
    return content if content or upload.filename else None


def _letter(
    state: AppState,
    channel: str,
    received: str,
    language: str,
    rights: list[str],
    email: str,
    phone: str,
    ip: tuple[str, str, str] = ("", "", ""),
) -> casework.Letter:
    """The intake form's fields, checked (``BadRequest`` with the reason otherwise)."""
    try:
        received_on = dt.date.fromisoformat(received)
    except ValueError:
        raise BadRequest(N_("the date of receipt must be a date (YYYY-MM-DD)")) from None
    choices = offered(state.register)
    if not rights or any(r not in choices for r in rights):
        raise BadRequest(N_("choose at least one of the rights offered"))
    if language not in state.register.languages.available:
        raise BadRequest(N_("choose the person's language"))
    address, period = _ip(state, *ip)
    return casework.Letter(
        channel=channel,
        received=received_on,
        rights=tuple(sorted(set(rights))),
        email=_email(email),
        phone=_phone(state, phone),
        language=language,
        ip_address=address,
        period=period,
    )


@router.post(
    INTAKE_PATH.removeprefix("/admin"),
    summary="Record a request that came by e-mail, post or otherwise",
)
def intake(
    state: AppState,
    db: DbSession,
    request: Request,
    context: Handler,
    csrf: Csrf,
    channel: Annotated[str, Form(max_length=10)],
    received: Annotated[str, Form(max_length=10)],
    language: Annotated[str, Form(max_length=8)],
    rights: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI reads a fresh list
    email: Annotated[str, Form(max_length=254)] = "",
    phone: Annotated[str, Form(max_length=40)] = "",
    ip: Annotated[str, Form(max_length=45)] = "",
    ip_from: Annotated[str, Form(max_length=10)] = "",
    ip_to: Annotated[str, Form(max_length=10)] = "",
    scan: Annotated[UploadFile | None, File()] = None,
) -> Response:
    check_csrf(context, csrf)
    try:
        letter = _letter(
            state, channel, received, language, rights, email, phone, (ip, ip_from, ip_to)
        )
        content = _scan(scan)
        checked = check_upload(content) if content is not None else None
        recorded = casework.record_letter(
            db, _desk(state), letter, checked, now=state.clock.now(), actor=context.actor
        )
    except BadRequest as refused:
        values: dict[str, object] = {"channel": channel, "received": received}
        values |= {"language": language}
        values |= {"rights": rights, "email": email, "phone": phone}
        values |= {"ip": ip, "ip_from": ip_from, "ip_to": ip_to}
        message = localise(refused.template, dict(refused.params), language_of(state, request))
        return _intake_page(state, request, context, error=message, values=values)
    if context.session is not None:
        service.set_flash(
            context.session,
            "ok",
            N_("The same request was already open: the letter was added to its case.")
            if recorded.linked
            else N_("The request was recorded."),
        )
    return RedirectResponse(f"/admin/rights/{recorded.case.reference}", status_code=303)


# -- a case -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A line of the case page's timeline: a case event, or a view of the case's documents
    or letters read from the audit trail (a view writes only there, never in the case)."""

    at: dt.datetime
    actor: str
    kind: str
    detail: str | None


VIEWS_SHOWN = {
    "rights.identity_view": "identity_document_viewed",
    "view.rights_attachment": "document_viewed",
    "rights.letter_view": "letter_viewed",
}
"""The audit actions that open a document of the case, as the timeline names them."""


def _steps(db: Session, case: RightsCase) -> list[Step]:
    """The case's events and the traced views of its documents, in time order."""
    steps = [Step(e.at, e.actor, e.kind, e.detail) for e in timeline(db, case)]
    views = db.execute(
        select(AuditEntry.at, AuditEntry.actor, AuditEntry.action, AuditEntry.reason).where(
            AuditEntry.target_type == "rights_case",
            AuditEntry.target_id == case.reference,
            AuditEntry.action.in_(list(VIEWS_SHOWN)),
        )
    ).all()
    steps += [
        Step(
            at,
            actor or "",
            VIEWS_SHOWN[action or ""],
            f"{reason} (audit trail)" if reason else "(audit trail)",
        )
        for at, actor, action, reason in views
    ]
    return sorted(steps, key=lambda step: step.at)


def _case(db: Session, reference: str) -> RightsCase:
    case = repository.by_reference(db, reference)
    if case is None:
        raise NotFound(N_("no such case (it may have been deleted)"))
    return case


@router.get(
    "/rights/{reference}", response_class=HTMLResponse, summary="One rights case (view traced)"
)
def case_view(
    state: AppState, db: DbSession, request: Request, context: Handler, reference: str
) -> HTMLResponse:
    case = _case(db, reference)
    now = state.clock.now()
    audit.record(
        db,
        context.actor,
        "view.rights_case",
        now,
        target_type="rights_case",
        target_id=case.reference,
    )
    register = state.register
    assignees = repository.assignable(db)
    steps = _steps(db, case)
    kinds = {step.kind for step in steps}
    return page(
        state,
        request,
        "rights_case.html",
        context,
        case=case,
        rights=rights_of(case),
        subject=subject_of(case),
        verified=casework.is_verified(case),
        days_left=casework.days_left(case, casework.today(register, now)),
        one_month_due=casework.one_month_due(register, case),
        may_extend=case.status == "open"
        and case.extended_on is None
        and casework.today(register, now) <= casework.one_month_due(register, case),
        events=steps,
        post_mortem={"death": DEATH_EVENT in kinds, "applied": APPLIED_EVENT in kinds},
        heir_actions=[action.value for action in HeirAction],
        certificate_mb=MAX_CERTIFICATE // (1024 * 1024),
        acknowledged=notify.acknowledged(db, case),
        document=documents.pending_document(db, case),
        doubt_limits=(documents.MIN_REASON, documents.MAX_REASON),
        letters=notify.letters(db, case),
        notes=casework.notes_of(case),
        answers=repository.answers(db, case),
        attachments=repository.attachments(db, case),
        assignees=[(u.id, u.email, u.role) for u in assignees],
        drafts={kind: casework.draft(register, case, kind) for kind in KINDS},
        outcomes=casework.OUTCOMES,
        extended_dates={n: casework.extended_due(register, case, n) for n in (1, 2)},
        receipt=case.receipt,
    )


def _acting(db: Session, context: AdminContext, csrf: str, reference: str) -> RightsCase:
    """The case a state-changing form acts on, once its CSRF token is checked."""
    check_csrf(context, csrf)
    return _case(db, reference)


def _back(case: RightsCase) -> RedirectResponse:
    return RedirectResponse(f"/admin/rights/{case.reference}", status_code=303)


@router.get(
    "/rights/{reference}/attachments/{attachment_id}",
    summary="A document of a case (view traced)",
)
def attachment_view(
    state: AppState, db: DbSession, context: Handler, reference: str, attachment_id: int
) -> Response:
    case = _case(db, reference)
    attachment = db.get(RightsAttachment, attachment_id)
    if attachment is None or attachment.case_id != case.id:
        raise NotFound(N_("no such document for this case"))
    now = state.clock.now()
    audit.record(
        db,
        context.actor,
        "view.rights_attachment",
        now,
        target_type="rights_case",
        target_id=case.reference,
        reason=f"document {attachment.id}",
    )
    extension = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg"}
    name = f"{case.reference}-{attachment.id}.{extension.get(attachment.media_type, 'bin')}"
    return Response(
        casework.content_of(attachment),
        media_type=attachment.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
        },
    )


@router.post("/rights/{reference}/assign", summary="Assign a case to an agent or a DPO")
def assign(
    state: AppState,
    db: DbSession,
    context: Handler,
    reference: str,
    csrf: Csrf,
    assignee: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    case = _acting(db, context, csrf, reference)
    user = None
    if assignee:
        if not assignee.isdigit():
            raise BadRequest(N_("choose an account"))
        user = service.get_user(db, int(assignee))
    casework.assign(db, case, user, now=state.clock.now(), actor=context.actor)
    return _back(case)


@router.post("/rights/{reference}/note", summary="Add an internal note to a case")
def note(
    state: AppState,
    db: DbSession,
    context: Handler,
    reference: str,
    csrf: Csrf,
    note: Annotated[str, Form(max_length=casework.NOTE_LIMIT * 2)],
) -> Response:
    case = _acting(db, context, csrf, reference)
    casework.add_note(db, case, note, now=state.clock.now(), actor=context.actor)
    return _back(case)


@router.post("/rights/{reference}/verify", summary="Record the identity check of a case")
def verify(
    state: AppState,
    db: DbSession,
    context: Handler,
    reference: str,
    csrf: Csrf,
    basis: Annotated[str, Form(max_length=casework.BASIS_LIMIT * 2)],
) -> Response:
    case = _acting(db, context, csrf, reference)
    casework.verify_by_agent(
        db, state.register, case, basis, now=state.clock.now(), actor=context.actor
    )
    return _back(case)


@router.post("/rights/{reference}/acknowledge", summary="Record the acknowledgement sent")
def acknowledge(
    state: AppState, db: DbSession, context: Handler, reference: str, csrf: Csrf, message: Text
) -> Response:
    case = _acting(db, context, csrf, reference)
    casework.acknowledge(
        db, state.register, case, message, now=state.clock.now(), actor=context.actor
    )
    return _back(case)


@router.post("/rights/{reference}/extend", summary="Extend the deadline, with reasons")
def extend(
    state: AppState,
    db: DbSession,
    context: Handler,
    reference: str,
    csrf: Csrf,
    reasons: Text,
    message: Text,
    months: Annotated[int, Form(ge=1, le=2)] = 2,
) -> Response:
    case = _acting(db, context, csrf, reference)
    casework.extend(
        db,
        state.register,
        case,
        reasons,
        message,
        now=state.clock.now(),
        actor=context.actor,
        further=months,
    )
    return _back(case)


@router.post("/rights/{reference}/close", summary="Close a case with its outcome")
def close(
    state: AppState,
    db: DbSession,
    context: Handler,
    reference: str,
    csrf: Csrf,
    outcome: Annotated[str, Form(max_length=20)],
    reasons: Text = "",
    message: Text = "",
) -> Response:
    case = _acting(db, context, csrf, reference)
    casework.close(
        db,
        state.register,
        case,
        outcome,
        reasons,
        message,
        now=state.clock.now(),
        actor=context.actor,
    )
    return _back(case)


def _verified_open(case: RightsCase, right: str) -> None:
    if case.status != "open":
        raise Conflict(N_("this case is closed"))
    if not casework.is_verified(case):
        raise Conflict(N_("verify the person's identity before acting on the request"))
    if right not in rights_of(case) and not (right == "access" and "portability" in case.rights):
        raise Conflict(N_("this right was not requested in this case"))


@router.post("/rights/{reference}/export", summary="Build the access/portability package")
def export(
    state: AppState, db: DbSession, context: Handler, reference: str, csrf: Csrf
) -> Response:
    case = _acting(db, context, csrf, reference)
    _verified_open(case, "access")
    now = state.clock.now()
    package = export_package(db, _desk(state), case, subject_of(case), now=now, actor=context.actor)
    add_event(
        db, case, now, context.actor, "package_downloaded", f"by the agent, sha256 {package.sha256}"
    )
    return Response(
        package.content,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{case.reference}.zip"',
            "Cache-Control": "no-store",
        },
    )


@router.post(
    "/rights/{reference}/send-package",
    summary="Send the access/portability package to the person (one-time link)",
)
def send_package(
    state: AppState, db: DbSession, context: Handler, reference: str, csrf: Csrf
) -> Response:
    case = _acting(db, context, csrf, reference)
    _verified_open(case, "access")
    now = state.clock.now()
    package = notify.send_package(
        db,
        _desk(state),
        case,
        data_dir=state.settings.data_dir,
        secret=state.secret,
        now=now,
        actor=context.actor,
    )
    if package.failures:
        if context.session is not None:
            service.set_flash(
                context.session,
                "error",
                N_("The package is incomplete (see the timeline): nothing was sent."),
            )
        return _back(case)
    close_case(db, case, now, context.actor, "fulfilled")
    audit.record(
        db, context.actor, "rights.closed", now, target_type="rights_case", target_id=case.reference
    )
    return _back(case)


@router.post("/rights/{reference}/erase", summary="Erase the person's data (receipt kept)")
def erasure(
    state: AppState,
    db: DbSession,
    context: Handler,
    reference: str,
    csrf: Csrf,
    confirm: Annotated[str, Form(max_length=24)] = "",
) -> Response:
    case = _acting(db, context, csrf, reference)
    _verified_open(case, "erasure")
    if confirm != case.reference:
        raise BadRequest(N_("type the case reference to confirm the erasure"))
    erase(db, _desk(state), case, subject_of(case), now=state.clock.now(), actor=context.actor)
    return _back(case)
