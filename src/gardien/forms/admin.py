"""The forms inbox of the admin: list with filters, view (traced), mark answered, internal
notes, export (traced), deletion before the deadline, days left before automatic deletion."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Select, select

from gardien.deps import AppState, DbSession, ReadSession
from gardien.errors import N_, BadRequest, NotFound
from gardien.forms.jobs import retry_dead, withheld
from gardien.forms.models import FormSubmission, OutboxMessage
from gardien.forms.provider import remove_submissions
from gardien.security import audit, service
from gardien.security.admin import language, page
from gardien.security.auth import AdminContext, check_csrf, require
from gardien.security.permissions import Permission
from gardien.storage.restriction import processing_point

router = APIRouter(prefix="/admin")
Handler = Annotated[AdminContext, Depends(require(Permission.handle_forms))]
Exporter = Annotated[AdminContext, Depends(require(Permission.export_data))]
Csrf = Annotated[str, Form(max_length=100)]
STATUSES = ("new", "answered")


def days_left(submission: FormSubmission, now: dt.datetime) -> int:
    """Whole days before the automatic deletion, a started day counting as one."""
    return max(0, math.ceil((submission.delete_after - now).total_seconds() / 86400))


def _filtered(
    status: str | None, form: str | None, start: dt.date | None, end: dt.date | None
) -> Select[tuple[FormSubmission]]:
    query = select(FormSubmission)
    if status:
        if status not in STATUSES:
            raise BadRequest(N_("unknown status: %(status)s"), status=status[:20])
        query = query.where(FormSubmission.status == status)
    if form:
        query = query.where(FormSubmission.form_id == form)
    if start:
        query = query.where(
            FormSubmission.received_at >= dt.datetime.combine(start, dt.time(), dt.UTC)
        )
    if end:
        query = query.where(
            FormSubmission.received_at
            < dt.datetime.combine(end, dt.time(), dt.UTC) + dt.timedelta(days=1)
        )
    return query.order_by(FormSubmission.received_at.desc())


StatusQuery = Annotated[str | None, Query(max_length=20)]
FormQuery = Annotated[str | None, Query(max_length=64)]
FromQuery = Annotated[dt.date | None, Query(alias="from")]
ToQuery = Annotated[dt.date | None, Query(alias="to")]


@router.get("/inbox", response_class=HTMLResponse, summary="Form submissions")
def inbox(
    state: AppState,
    db: ReadSession,
    request: Request,
    context: Handler,
    status: StatusQuery = None,
    form: FormQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
) -> HTMLResponse:
    now = state.clock.now()
    rows = list(db.scalars(_filtered(status or None, form or None, start, end).limit(500)))
    return page(
        state,
        request,
        "inbox.html",
        context,
        rows=[(row, days_left(row, now)) for row in rows],
        chosen_status=status or "",
        form=form or "",
        start=start.isoformat() if start else "",
        end=end.isoformat() if end else "",
        forms=[f.id for f in state.register.forms],
        statuses=STATUSES,
    )


def _get(db: Any, public_id: str) -> FormSubmission:
    found = db.scalar(select(FormSubmission).where(FormSubmission.public_id == public_id[:32]))
    if found is None:
        raise NotFound(N_("no such submission (it may have been deleted)"))
    return found  # type: ignore[no-any-return]


def _labels(state: AppState, form_id: str, language: str) -> dict[str, str]:
    default = state.register.languages.default
    for form in state.register.forms:
        if form.id == form_id:
            return {
                f.name: f.label.get(language) or f.label.get(default) or f.name for f in form.fields
            }
    return {}


@router.get(
    "/inbox/{public_id}", response_class=HTMLResponse, summary="One submission (access traced)"
)
def submission_view(
    state: AppState, db: DbSession, request: Request, context: Handler, public_id: str
) -> HTMLResponse:
    submission = _get(db, public_id)
    now = state.clock.now()
    audit.record(
        db,
        context.actor,
        "view.form_submission",
        now,
        target_type="form_submission",
        target_id=submission.public_id,
    )
    lang = language(state, request)
    outbox = list(
        db.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.submission_id == submission.id)
            .order_by(OutboxMessage.id)
        )
    )
    return page(
        state,
        request,
        "submission.html",
        context,
        submission=submission,
        values=json.loads(submission.fields),
        labels=_labels(state, submission.form_id, lang),
        notes=json.loads(submission.notes) if submission.notes else [],
        outbox=outbox,
        days_left=days_left(submission, now),
    )


@router.post("/inbox/{public_id}/answered", summary="Mark a submission answered")
def mark_answered(
    state: AppState, db: DbSession, context: Handler, public_id: str, csrf: Csrf
) -> Response:
    check_csrf(context, csrf)
    submission = _get(db, public_id)
    now = state.clock.now()
    submission.status = "answered"
    submission.answered_at = now
    audit.record(
        db,
        context.actor,
        "form_submission.answered",
        now,
        target_type="form_submission",
        target_id=submission.public_id,
    )
    return RedirectResponse(f"/admin/inbox/{submission.public_id}", status_code=303)


@router.post("/inbox/{public_id}/note", summary="Add an internal note to a submission")
def add_note(
    state: AppState,
    db: DbSession,
    context: Handler,
    public_id: str,
    csrf: Csrf,
    note: Annotated[str, Form(min_length=1, max_length=2000)],
) -> Response:
    check_csrf(context, csrf)
    submission = _get(db, public_id)
    now = state.clock.now()
    text = service.plain_text(note.replace("\n", " "), "note", 2000)
    notes = json.loads(submission.notes) if submission.notes else []
    notes.append({"at": now.isoformat(), "by": context.actor.id, "text": text})
    submission.notes = json.dumps(notes, ensure_ascii=False)
    audit.record(
        db,
        context.actor,
        "form_submission.noted",
        now,
        target_type="form_submission",
        target_id=submission.public_id,
    )
    return RedirectResponse(f"/admin/inbox/{submission.public_id}", status_code=303)


@router.post(
    "/inbox/{public_id}/outbox/{outbox_id}/retry",
    summary="Send a given-up e-mail again (same Message-ID)",
)
def retry_message(
    state: AppState,
    db: DbSession,
    context: Handler,
    public_id: str,
    outbox_id: int,
    csrf: Csrf,
) -> Response:
    check_csrf(context, csrf)
    submission = _get(db, public_id)
    message = db.get(OutboxMessage, outbox_id)
    if message is None or message.submission_id != submission.id:
        raise NotFound(N_("no such e-mail for this submission"))
    now = state.clock.now()
    if not retry_dead(db, outbox_id, now):
        raise BadRequest(N_("only an e-mail that was given up on can be retried"))
    audit.record(
        db,
        context.actor,
        "outbox.retried",
        now,
        target_type="outbox_message",
        target_id=str(outbox_id),
    )
    return RedirectResponse(f"/admin/inbox/{submission.public_id}", status_code=303)


@router.post("/inbox/{public_id}/delete", summary="Delete a submission before its deadline")
def delete_submission(
    state: AppState, db: DbSession, context: Handler, public_id: str, csrf: Csrf
) -> Response:
    check_csrf(context, csrf)
    submission = _get(db, public_id)
    remove_submissions(db, [submission.id])
    audit.record(
        db,
        context.actor,
        "form_submission.deleted",
        state.clock.now(),
        target_type="form_submission",
        target_id=public_id[:32],
        reason="before its retention deadline",
    )
    if context.session is not None:
        service.set_flash(context.session, "ok", N_("The submission was deleted."))
    return RedirectResponse("/admin/inbox", status_code=303)


EXPORT_FIXED = ["id", "form", "received_at", "delete_after", "status", "language", "legal_basis"]


@router.get("/inbox-export", summary="Export submissions as CSV (traced)")
@processing_point("forms.inbox_export")
def inbox_export(
    state: AppState,
    db: DbSession,
    context: Exporter,
    status: StatusQuery = None,
    form: FormQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
) -> Response:
    # A restricted person's submissions are only stored (Art. 18(2)): not exported.
    rows = [
        row
        for row in db.scalars(_filtered(status or None, form or None, start, end))
        if not withheld(db, state.register, row)
    ]
    names: list[str] = []
    for spec in state.register.forms:
        names += [f.name for f in spec.fields if f.name not in names]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, EXPORT_FIXED + names, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                "id": row.public_id,
                "form": row.form_id,
                "received_at": row.received_at.isoformat(),
                "delete_after": row.delete_after.isoformat(),
                "status": row.status,
                "language": row.language,
                "legal_basis": row.legal_basis,
                **{k: _csv_safe(str(v)) for k, v in json.loads(row.fields).items()},
            }
        )
    audit.record(
        db,
        context.actor,
        "form_submission.exported",
        state.clock.now(),
        target_type="form_submission",
        reason=f"{len(rows)} submissions, csv",
    )
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="submissions.csv"',
            "Cache-Control": "no-store",
        },
    )


def _csv_safe(value: str) -> str:
    """A value a spreadsheet would run as a formula (=, +, -, @) is quoted as text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
