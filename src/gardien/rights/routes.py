"""The rights portal's routes: ``/rights`` (server-rendered, en/fr/ro), its JSON twin
``/api/rights/requests``, the one-time code's page ``/rights/verify/{reference}`` and the
person's status page ``/rights/status/{reference}?token=...``.

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
from starlette.concurrency import run_in_threadpool

from gardien.deps import AppState, State
from gardien.errors import N_, BadRequest
from gardien.forms.routes import TooLarge, UnsupportedMediaType
from gardien.forms.routes import _language as language_of
from gardien.i18n import translator
from gardien.rights import portal
from gardien.rights.models import RightsCase
from gardien.rights.service import Desk
from gardien.storage.database import unit_of_work

router = APIRouter()
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
            Desk(state.register, state.providers),
            intake,
            secret=state.secret,
            base_url=state.settings.base_url,
            now=state.clock.now(),
        )


# -- the request ----------------------------------------------------------------------------


@router.get("/rights", response_class=HTMLResponse, summary="The rights portal")
def rights_portal(state: AppState, request: Request) -> Response:
    return _portal_page(state, language_of(state, request))


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
        result = portal.verify(
            session, secret=state.secret, reference=reference, code=code, now=state.clock.now()
        )
        summary = _summary(result.case) if result.case is not None else {}
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


def _summary(case: RightsCase) -> dict[str, Any]:
    """What the status page shows: nothing personal beyond the rights the person asked."""
    return {
        "reference": case.reference,
        "received": case.received_at.date(),
        "due": case.due_at,
        "rights": list(portal.rights_of(case)),
        "status": portal.status_of(case),
    }


def _status_page(
    state: State, language: str, summary: dict[str, Any], *, just_verified: bool = False
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
        status_text=str(gettext(portal.STATUS_TEXTS[summary["status"]])),
        awaiting=summary["status"] == "awaiting",
        just_verified=just_verified,
    )


def _find(state: State, reference: str, token: str) -> dict[str, Any] | None:
    with state.sessions() as session:
        case = portal.case_for_token(session, secret=state.secret, reference=reference, token=token)
        return _summary(case) if case is not None else None


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
    return _status_page(state, language, summary)
