"""The rights portal's routes: ``/rights`` (server-rendered, en/fr/ro), its JSON twin
``/api/rights/requests``, the one-time code's page ``/rights/verify/{reference}``, the
person's status page ``/rights/status/{reference}?token=...``, the one-time download of an
access package ``/rights/download/{reference}`` and the upload of an identity document asked
on a recorded doubt ``/rights/document/{reference}``.

A download link opens a page with a button, and only the button's POST hands the package
over: a mail scanner that follows links cannot use up the single download.

Database work runs in a worker thread, never on the event loop (on SQLite a writer may wait
for the lock). Public writes are already counted by the public-write budgets middleware.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from babel.dates import format_date
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from gardien.consent import cookie as consent_cookie
from gardien.deps import AppState, State
from gardien.errors import N_, BadRequest, GardienError
from gardien.forms.routes import TooLarge, UnsupportedMediaType
from gardien.forms.routes import _language as language_of
from gardien.i18n import translator
from gardien.rights import documents, notify, portal, recipients, withdrawal
from gardien.rights.admin_identity import router as identity_router
from gardien.rights.admin_restriction import router as restriction_router
from gardien.rights.deadlines import local_day
from gardien.rights.exchange import RightsDocument
from gardien.rights.models import RightsCase
from gardien.rights.possession import possession_of
from gardien.rights.service import Desk
from gardien.storage.database import unit_of_work

router = APIRouter()
router.include_router(identity_router)  # its admin endpoints, mounted with the portal's
router.include_router(restriction_router)  # restriction, objection, recipients, evidence
MAX_BODY_BYTES = 16 * 1024
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _page(
    state: State,
    template: str,
    language: str,
    path: str,
    *,
    status: int = 200,
    switcher: bool = True,
    **context: Any,
) -> HTMLResponse:
    html = (
        state.env(language)
        .get_template(f"rights/{template}")
        .render(
            languages=state.register.languages.available if switcher else [],
            path=path,
            **context,
        )
    )
    return HTMLResponse(html, status_code=status, headers=NO_STORE)


def _choices(state: State, language: str) -> list[dict[str, str]]:
    gettext = translator(language).gettext
    return [
        {"value": right, "label": str(gettext(portal.RIGHT_LABELS[right]))}
        for right in portal.offered(state.register)
    ]


def _portal_page(
    state: State,
    language: str,
    *,
    values: Mapping[str, object] | None = None,
    problems: list[portal.Problem] | None = None,
    status: int = 200,
) -> HTMLResponse:
    values = values or {}
    chosen = values.get("rights")
    ticked = [chosen] if isinstance(chosen, str) else chosen if isinstance(chosen, list) else []
    return _page(
        state,
        "portal.html",
        language,
        portal.PORTAL,
        status=status,
        choices=_choices(state, language),
        chosen=[c for c in ticked if isinstance(c, str)],
        values={k: v for k, v in values.items() if isinstance(v, str)},
        errors={p.field: p.text(language) for p in problems or []},
        identity_check=_tr(state, state.register.rights.identity_check, language),
    )


def _tr(state: State, text: Mapping[str, str], language: str) -> str:
    return text.get(language) or text.get(state.register.languages.default) or ""


async def _body(request: Request, expected: str) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != expected:
        raise UnsupportedMediaType(N_("send the form as %(type)s"), type=expected)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise TooLarge(N_("the form is larger than %(size)s KB"), size=MAX_BODY_BYTES // 1024)
    return body


def _form(body: bytes) -> dict[str, object]:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise BadRequest(N_("the form is not valid UTF-8")) from None
    raw: dict[str, object] = {}
    rights: list[str] = []
    for key, value in pairs:
        if key == "rights":
            rights.append(value)
        else:
            raw[key] = value
    if rights:
        raw["rights"] = rights
    return raw


def _submit(state: State, intake: portal.Intake) -> portal.Submitted:
    with unit_of_work(state.sessions) as session:
        return portal.submit(
            session,
            Desk(state.register, state.providers, state.settings.base_url),
            intake,
            secret=state.secret,
            base_url=state.settings.base_url,
            now=state.clock.now(),
        )


# -- the request ----------------------------------------------------------------------------


@router.get("/rights", response_class=HTMLResponse, summary="The rights portal")
def rights_portal(state: AppState, request: Request) -> Response:
    # The consent id and measurement visitor id of this browser's cookies, filled in
    # (withdrawing is as easy as giving; measured visits are found by the visitor id).
    decision = consent_cookie.parse(request.cookies.get(consent_cookie.NAME))
    held = possession_of(request.cookies)
    values = {
        "consent_id": decision.consent_id if decision is not None else "",
        "visitor_id": (held.visitor_id or "") if held is not None else "",
    }
    return _portal_page(state, language_of(state, request), values=values)


@router.post("/rights", response_class=HTMLResponse, summary="Send a rights request (form)")
async def rights_submit(state: AppState, request: Request) -> Response:
    raw = _form(await _body(request, "application/x-www-form-urlencoded"))
    chosen = raw.pop("lang", None)
    language = language_of(state, request, chosen if isinstance(chosen, str) else None)
    try:
        intake = portal.check(state.register, raw, language)
    except portal.Invalid as invalid:
        return _portal_page(state, language, values=raw, problems=invalid.problems, status=422)
    sent = await run_in_threadpool(_submit, state, intake)
    return _page(
        state,
        "sent.html",
        language,
        portal.PORTAL,
        reference=sent.reference,
        minutes=int(portal.CODE_TTL.total_seconds() // 60),
        by_sms=intake.by_sms,
        verify_path=f"{portal.PORTAL}/verify/{sent.reference}?lang={language}",
        status_path=portal.status_url("", sent.reference, sent.token, language),
    )


@router.post(
    "/api/rights/requests",
    status_code=202,
    summary="Send a rights request (JSON); a one-time code is e-mailed to the address",
)
async def rights_submit_json(state: AppState, request: Request) -> JSONResponse:
    body = await _body(request, "application/json")
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(N_("the body is not valid JSON")) from None
    if not isinstance(raw, dict):
        raise BadRequest(N_("the body must be a JSON object"))
    chosen = raw.get("lang")
    language = language_of(state, request, chosen if isinstance(chosen, str) else None)
    try:
        intake = portal.check(state.register, raw, language)
    except portal.Invalid as invalid:
        return JSONResponse(
            {
                "error": "invalid_request",
                "problems": [
                    {"field": p.field, "code": p.code, "reason": p.text(language)}
                    for p in invalid.problems
                ],
            },
            status_code=422,
            headers=NO_STORE,
        )
    sent = await run_in_threadpool(_submit, state, intake)
    base = state.settings.base_url
    return JSONResponse(
        {
            "reference": sent.reference,
            "status": "awaiting_verification",
            "verify_url": portal.verify_url(base, sent.reference, language),
            "status_url": portal.status_url(base, sent.reference, sent.token, language),
            "code_expires_in": int(portal.CODE_TTL.total_seconds()),
            "code_sent_by": "sms" if intake.by_sms else "email",
        },
        status_code=202,
        headers=NO_STORE,
    )


# -- verification ---------------------------------------------------------------------------


@router.get(
    "/rights/verify/{reference}", response_class=HTMLResponse, summary="Enter the one-time code"
)
def rights_verify_form(reference: str, state: AppState, request: Request) -> Response:
    language = language_of(state, request)
    code = request.query_params.get("code", "")
    return _verify_page(state, language, reference[:24], code=code[:32])


def _verify_page(
    state: State,
    language: str,
    reference: str,
    *,
    code: str = "",
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    return _page(
        state,
        "verify.html",
        language,
        f"{portal.PORTAL}/verify/{reference}",
        status=status,
        reference=reference,
        code=code if code.isdigit() else "",
        error=error,
    )


def _verify(state: State, reference: str, code: str) -> tuple[portal.Verification, dict[str, Any]]:
    with unit_of_work(state.sessions) as session:
        now = state.clock.now()
        result = portal.verify(
            session, secret=state.secret, reference=reference, code=code, now=now
        )
        if result.outcome is portal.Outcome.verified and result.case is not None:
            notify.acknowledge_once(session, result.case, register=state.register, now=now)
        if result.outcome is portal.Outcome.verified and result.case is not None:
            withdrawal.on_verified(
                session,
                Desk(state.register, state.providers, state.settings.base_url),
                result.case,
                now=now,
            )
        summary = (
            _summary(session, result.case, state.register.rights.time_zone)
            if result.case is not None
            else {}
        )
    return result, summary


@router.post(
    "/rights/verify/{reference}", response_class=HTMLResponse, summary="Check the one-time code"
)
async def rights_verify(reference: str, state: AppState, request: Request) -> Response:
    raw = _form(await _body(request, "application/x-www-form-urlencoded"))
    chosen = raw.get("lang")
    language = language_of(state, request, chosen if isinstance(chosen, str) else None)
    code = raw.get("code")
    reference = reference[:24]
    if not isinstance(code, str) or not portal.normalised_code(code):
        return _verify_page(
            state, language, reference, error=_required(state, language), status=422
        )
    result, summary = await run_in_threadpool(_verify, state, reference, code)
    if result.outcome is not portal.Outcome.verified:
        return _verify_page(
            state,
            language,
            reference,
            error=result.text(language),
            status=portal.VERIFY_STATUS[result.outcome],
        )
    return _status_page(state, language, summary, just_verified=True)


def _required(state: State, language: str) -> str:
    return portal.Problem("code", "required").text(language)


# -- status -----------------------------------------------------------------------------------


def _summary(session: Session, case: RightsCase, time_zone: str) -> dict[str, Any]:
    """What the status page shows: nothing personal beyond the rights the person asked."""
    document = documents.pending_document(session, case)
    return {
        "reference": case.reference,
        "received": local_day(case.received_at, time_zone),
        "due": case.due_at,
        "rights": list(portal.rights_of(case)),
        "status": "identity" if document is not None else portal.status_of(case),
        "document": (None if document is None else "received" if document.uploaded_at else "asked"),
        "told": [
            (n.recipient, n.activity, n.operation, n.status)
            for n in recipients.of_case(session, case)
            if n.status in ("sent", "acknowledged")
        ],
    }


def _status_page(
    state: State,
    language: str,
    summary: dict[str, Any],
    *,
    just_verified: bool = False,
    token: str = "",
) -> HTMLResponse:
    gettext = translator(language).gettext

    def day(value: dt.date) -> str:
        return format_date(value, format="long", locale=language)

    return _page(
        state,
        "status.html",
        language,
        f"{portal.PORTAL}/status/{summary['reference']}",
        switcher=False,
        reference=summary["reference"],
        received=day(summary["received"]),
        due=day(summary["due"]),
        rights=[str(gettext(portal.RIGHT_LABELS[r])) for r in summary["rights"]],
        right_ids=summary["rights"],
        status_text=str(gettext(portal.STATUS_TEXTS[summary["status"]])),
        awaiting=summary["status"] == "awaiting",
        just_verified=just_verified,
        document=summary.get("document"),
        token=token,
        told=recipients.named(state.register, summary.get("told", []), language),
    )


def _find(state: State, reference: str, token: str) -> dict[str, Any] | None:
    with state.sessions() as session:
        case = portal.case_for_token(session, secret=state.secret, reference=reference, token=token)
        return (
            _summary(session, case, state.register.rights.time_zone) if case is not None else None
        )


@router.get("/rights/status/{reference}", response_class=HTMLResponse, summary="A request's status")
async def rights_status(reference: str, state: AppState, request: Request) -> Response:
    language = language_of(state, request)
    token = request.query_params.get("token", "")
    summary = await run_in_threadpool(_find, state, reference[:24], token)
    if summary is None:
        return _page(
            state,
            "status_unknown.html",
            language,
            f"{portal.PORTAL}/status/{reference[:24]}",
            status=404,
            switcher=False,
        )
    return _status_page(state, language, summary, token=token)


# -- the one-time download --------------------------------------------------------------------


def _download_refused(
    state: State, language: str, reference: str, outcome: documents.Download
) -> HTMLResponse:
    gettext = translator(language).gettext
    return _page(
        state,
        "download.html",
        language,
        f"{portal.PORTAL}/download/{reference}",
        status=documents.DOWNLOAD_STATUS[outcome],
        switcher=False,
        reference=reference,
        token="",
        refused=str(gettext(documents.DOWNLOAD_MESSAGES[outcome])),
    )


@router.get(
    "/rights/download/{reference}",
    response_class=HTMLResponse,
    summary="The page of a one-time download link (the download itself is its button's POST)",
)
def rights_download_page(reference: str, state: AppState, request: Request) -> Response:
    language = language_of(state, request)
    token = request.query_params.get("token", "")[:64]
    return _page(
        state,
        "download.html",
        language,
        f"{portal.PORTAL}/download/{reference[:24]}",
        switcher=False,
        reference=reference[:24],
        token=token,
        refused=None,
    )


def _download(state: State, reference: str, token: str) -> documents.Fetched:
    with unit_of_work(state.sessions) as session:
        return documents.download(
            session, secret=state.secret, reference=reference, token=token, now=state.clock.now()
        )


@router.post(
    "/rights/download/{reference}",
    summary="Download an access package, once (the link then stops working)",
    responses={200: {"content": {"application/zip": {}}}},
)
async def rights_download(reference: str, state: AppState, request: Request) -> Response:
    raw = _form(await _body(request, "application/x-www-form-urlencoded"))
    chosen = raw.get("lang")
    language = language_of(state, request, chosen if isinstance(chosen, str) else None)
    token = raw.get("token")
    reference = reference[:24]
    fetched = await run_in_threadpool(
        _download, state, reference, token if isinstance(token, str) else ""
    )
    if fetched.outcome is not documents.Download.ok or fetched.content is None:
        return _download_refused(state, language, reference, fetched.outcome)
    return Response(
        fetched.content,
        media_type="application/zip",
        headers={
            **NO_STORE,
            "Content-Disposition": f'attachment; filename="{fetched.reference}.zip"',
        },
    )


# -- the identity document --------------------------------------------------------------------

UPLOAD_FIELDS = frozenset({"token", "lang", "document"})


DOCUMENT_PATH = f"{portal.PORTAL}/document/"
"""Where documents are uploaded: its body-size limit is the document's plus the form's."""
DOCUMENT_BODY_BYTES = documents.MAX_DOCUMENT_BYTES + 64 * 1024


def _upload_limit(state: State) -> int:
    """The largest document accepted (the body limit of ``DOCUMENT_PATH`` leaves room)."""
    return documents.MAX_DOCUMENT_BYTES


def _document_case(
    session: Session, state: State, reference: str, token: str
) -> tuple[RightsCase, RightsDocument] | None:
    """The case and its pending document request that ``token`` opens: the upload link's
    own token, or the status page's."""
    asked = documents.document_for_upload(
        session, secret=state.secret, reference=reference, token=token
    )
    if asked is not None:
        return session.get_one(RightsCase, asked.case_id), asked
    case = portal.case_for_token(session, secret=state.secret, reference=reference, token=token)
    if case is None:
        return None
    pending = documents.pending_document(session, case)
    return (case, pending) if pending is not None else None


def _upload_page(
    state: State,
    language: str,
    reference: str,
    token: str,
    *,
    error: str | None = None,
    done: bool = False,
    status: int = 200,
) -> HTMLResponse:
    limit = _upload_limit(state)
    return _page(
        state,
        "document.html",
        language,
        f"{portal.PORTAL}/document/{reference}",
        status=status,
        switcher=False,
        reference=reference,
        token=token,
        error=error,
        done=done,
        limit_kb=limit // 1024,
        days=state.register.rights.identity_document_max_days,
    )


def _can_upload(state: State, reference: str, token: str) -> bool:
    with state.sessions() as session:
        return _document_case(session, state, reference, token) is not None


@router.get(
    "/rights/document/{reference}",
    response_class=HTMLResponse,
    summary="Send a proof of identity we asked for (reasonable doubt recorded)",
)
async def rights_document_page(reference: str, state: AppState, request: Request) -> Response:
    language = language_of(state, request)
    token = request.query_params.get("token", "")[:64]
    if not await run_in_threadpool(_can_upload, state, reference[:24], token):
        return _page(
            state,
            "status_unknown.html",
            language,
            f"{portal.PORTAL}/document/{reference[:24]}",
            status=404,
            switcher=False,
        )
    return _upload_page(state, language, reference[:24], token)


def _receive(state: State, reference: str, token: str, content: bytes) -> bool:
    with unit_of_work(state.sessions) as session:
        found = _document_case(session, state, reference, token)
        if found is None:
            return False
        case, asked = found
        documents.receive_document(
            session,
            case,
            asked,
            content,
            register=state.register,
            data_dir=state.settings.data_dir,
            now=state.clock.now(),
            max_bytes=_upload_limit(state),
        )
        return True


@router.post(
    "/rights/document/{reference}",
    response_class=HTMLResponse,
    summary="Upload the proof of identity (PDF, PNG or JPEG, judged by content)",
)
async def rights_document_upload(reference: str, state: AppState, request: Request) -> Response:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        raise UnsupportedMediaType(N_("send the form as %(type)s"), type="multipart/form-data")
    async with request.form(max_files=1, max_fields=len(UPLOAD_FIELDS)) as form:
        chosen = form.get("lang")
        language = language_of(state, request, chosen if isinstance(chosen, str) else None)
        token = form.get("token")
        token = token[:64] if isinstance(token, str) else ""
        upload = form.get("document")
        content = await upload.read() if upload is not None and not isinstance(upload, str) else b""
    reference = reference[:24]
    try:
        stored = await run_in_threadpool(_receive, state, reference, token, content)
    except GardienError as refused:
        return _upload_page(
            state,
            language,
            reference,
            token,
            error=refused.text(language),
            status=refused.status,
        )
    if not stored:
        return _page(
            state,
            "status_unknown.html",
            language,
            f"{portal.PORTAL}/document/{reference}",
            status=404,
            switcher=False,
        )
    return _upload_page(state, language, reference, token, done=True)
