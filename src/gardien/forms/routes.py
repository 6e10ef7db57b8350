"""Public form routes: ``/contact`` (server-rendered, en/fr/ro) and the JSON API
``/api/forms/{form_id}`` for sites that render their own form."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

import pycountry
from babel import Locale
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gardien.deps import AppState, State
from gardien.errors import N_, BadRequest, GardienError
from gardien.forms import service, validation
from gardien.forms.writer import SubmissionWriter
from gardien.i18n import negotiate
from gardien.register.schema import FormSpec
from gardien.security.connection_log import mark_logged, pending_log_row

router = APIRouter()
MAX_FORM_BYTES = 64 * 1024
CONTACT = "contact"


class UnsupportedMediaType(GardienError):
    code = "unsupported_media_type"
    status = 415


class TooLarge(GardienError):
    code = "too_large"
    status = 413


def _language(state: State, request: Request, chosen: str | None = None) -> str:
    languages = state.register.languages
    return negotiate(
        chosen or request.query_params.get("lang"),
        request.headers.get("accept-language"),
        languages.available,
        languages.default,
    )


@cache
def countries(language: str) -> list[tuple[str, str]]:
    """ISO 3166-1 countries as (code, name in ``language``), sorted by name."""
    names = Locale.parse(language).territories
    return sorted(
        ((c.alpha_2, names.get(c.alpha_2, c.name)) for c in pycountry.countries),
        key=lambda pair: pair[1],
    )


def _tr(text: dict[str, str] | None, language: str, default: str) -> str:
    if not text:
        return ""
    return text.get(language) or text.get(default) or next(iter(text.values()))


def definition(state: State, form: FormSpec, language: str) -> dict[str, Any]:
    """The form as a site that renders its own needs it: fields, labels, notice, stamp."""
    default = state.register.languages.default
    return {
        "id": form.id,
        "language": language,
        "title": _tr(form.title, language, default),
        "fields": [
            {
                "name": f.name,
                "type": f.type.value,
                "label": _tr(f.label, language, default),
                "required": f.required,
                "max_length": f.max_length,
                "help": _tr(f.help, language, default) or None,
                "options": [
                    {"value": o.value, "label": _tr(o.label, language, default)} for o in f.options
                ],
            }
            for f in form.fields
        ],
        "consent_text": _tr(form.consent_text, language, default) or None,
        "notice": service.notice(state.register, form, language),
        "shown_at": service.stamp(state.secret, form.id, state.clock.now()),
        "honeypot": validation.HONEYPOT,
    }


# -- receiving a submission ----------------------------------------------------------------

WRITER = "forms.writer"
_WRITER_CREATED = threading.Lock()


async def receive(
    state: State,
    form: FormSpec,
    raw: Mapping[str, object],
    language: str,
    request: Request | None = None,
    status: int = 201,
) -> service.Accepted:
    """Check a submission, then store it with its outbox rows and commit: once this returns,
    the submission and its e-mails are durable.

    The checks are CPU work only and run on the event loop. The writer runs in a worker
    thread, never waiting on the loop: on SQLite it may wait for the write lock, which another
    request can only release once the loop moves on (waiting on the loop, it once froze the
    whole server until the busy timeout). Only a lone submission on SQLite, when the lock is
    free this instant, is written on the loop (``SubmissionWriter.store_now``)."""
    now = state.clock.now()
    accepted = service.accept(
        register=state.register,
        form=form,
        raw=raw,
        language=language,
        secret=state.secret,
        now=now,
    )
    # The request's connection-log row goes into the submission's transaction (answered
    # ``status`` once stored), rather than a second commit by another writer.
    log_row = pending_log_row(request.scope, status) if request is not None else None
    submissions = writer(state)
    if not submissions.store_now(accepted, now, log_row):
        await run_in_threadpool(submissions.store, accepted, now, log_row)
    if request is not None and log_row is not None:
        mark_logged(request.scope, status)
    return accepted


def writer(state: State) -> SubmissionWriter:
    """The process's submission writer (one per state, made at the first submission)."""
    found = state.caches.get(WRITER)
    if isinstance(found, SubmissionWriter):
        return found
    with _WRITER_CREATED:
        found = state.caches.get(WRITER)
        if not isinstance(found, SubmissionWriter):
            found = state.caches[WRITER] = SubmissionWriter(state.engine, state.settings.base_url)
    return found


# -- the HTML form ------------------------------------------------------------------------


def _render(
    state: State,
    request: Request,
    form: FormSpec,
    language: str,
    *,
    values: dict[str, str] | None = None,
    errors: list[validation.FieldError] | None = None,
    status: int = 200,
    problem: str | None = None,
) -> HTMLResponse:
    spec = definition(state, form, language)
    error_texts = {e.field: e.text(language) for e in errors or []}
    html = (
        state.env(language)
        .get_template("forms/contact.html")
        .render(
            form=spec,
            values=values or {},
            errors=error_texts,
            countries=countries(language),
            problem=problem,
            languages=state.register.languages.available,
            path=request.url.path,
        )
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


@router.get("/contact", response_class=HTMLResponse, summary="The contact form")
def contact_form(state: AppState, request: Request) -> Response:
    form = service.find_form(state.register, CONTACT)
    return _render(state, request, form, _language(state, request))


@router.get("/contact/sent", response_class=HTMLResponse, include_in_schema=False)
def contact_sent(state: AppState, request: Request) -> Response:
    language = _language(state, request)
    form = service.find_form(state.register, CONTACT)
    html = (
        state.env(language)
        .get_template("forms/sent.html")
        .render(
            form=definition(state, form, language),
            languages=state.register.languages.available,
            path="/contact/sent",
        )
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


async def _read_body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise TooLarge(N_("the form is larger than %(size)s KB"), size=MAX_FORM_BYTES // 1024)
    return body


@router.post("/contact", response_class=HTMLResponse, summary="Send the contact form")
async def contact_submit(state: AppState, request: Request) -> Response:
    form = service.find_form(state.register, CONTACT)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType(N_("send the form as application/x-www-form-urlencoded"))
    body = await _read_body(request)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise BadRequest(N_("the form is not valid UTF-8")) from None
    raw: dict[str, object] = dict(pairs)
    language = _language(state, request, str(raw.get("lang") or "") or None)
    try:
        await receive(state, form, raw, language, request, 303)
    except service.Invalid as invalid:
        kept = {k: v for k, v in raw.items() if isinstance(v, str) and k != validation.SHOWN_AT}
        return _render(
            state, request, form, language, values=kept, errors=invalid.errors, status=422
        )
    except GardienError as refused:
        kept = {k: v for k, v in raw.items() if isinstance(v, str) and k != validation.SHOWN_AT}
        return _render(
            state,
            request,
            form,
            language,
            values=kept,
            status=refused.status,
            problem=refused.text(language),
        )
    return RedirectResponse(f"/contact/sent?lang={language}", status_code=303)


# -- the JSON API -------------------------------------------------------------------------


@router.get("/api/forms/{form_id}", summary="A form's definition, notice and fill-time stamp")
def form_definition(form_id: str, state: AppState, request: Request) -> JSONResponse:
    form = service.find_form(state.register, form_id)
    return JSONResponse(
        definition(state, form, _language(state, request)), headers={"Cache-Control": "no-store"}
    )


@router.post(
    "/api/forms/{form_id}",
    status_code=201,
    summary="Submit a form (JSON); answered once stored with its e-mails queued",
)
async def form_submit(form_id: str, state: AppState, request: Request) -> JSONResponse:
    form = service.find_form(state.register, form_id)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaType(N_("send the form as application/json"))
    body = await _read_body(request)
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(N_("the body is not valid JSON")) from None
    if not isinstance(raw, dict):
        raise BadRequest(N_("the body must be a JSON object"))
    language = _language(
        state, request, raw.get("lang") if isinstance(raw.get("lang"), str) else None
    )
    try:
        accepted = await receive(state, form, raw, language, request, 201)
    except service.Invalid as invalid:
        return JSONResponse(
            {
                "error": "invalid_submission",
                "problems": [
                    {"field": e.field, "code": e.code, "reason": e.text(language)}
                    for e in invalid.errors
                ],
            },
            status_code=422,
        )
    return JSONResponse(
        {
            "id": accepted.public_id,
            "delete_after": accepted.delete_after.isoformat(),
        },
        status_code=201,
    )
