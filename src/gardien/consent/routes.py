"""Public consent routes: the banner's script, stylesheet and configuration, the records
endpoint, the visitor's own history, and the demo page that shows it all at ``/``."""

from __future__ import annotations

import gzip
import json
import secrets
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError

from gardien.consent import records as consent_records
from gardien.consent.models import consent_record
from gardien.consent.service import config, current_revision, history
from gardien.deps import AppState, ReadSession
from gardien.errors import N_, BadRequest, NotFound
from gardien.i18n import negotiate
from gardien.web.middleware import content_security_policy

router = APIRouter()
STATIC = Path(__file__).parent / "static"
ASSETS = Path(__file__).parent / "assets"
ASSET_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}


@cache
def _asset(kind: str) -> bytes:
    """The minified file ``make assets`` committed, or the source while it has not run."""
    minified = STATIC / f"gardien-consent.min.{kind}"
    source = ASSETS / f"gardien-consent.{kind}"
    return (minified if minified.exists() else source).read_bytes()


@cache
def _asset_gzip(kind: str) -> bytes:
    return gzip.compress(_asset(kind), compresslevel=9, mtime=0)


def _accepts_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "").lower()


def _compressible(
    request: Request, body: bytes, packed: bytes | None, media_type: str, headers: dict[str, str]
) -> Response:
    """``body`` gzipped when the browser takes it (these files are what every visitor downloads
    before the banner shows); only public, secret-free files go this way."""
    headers = {**headers, "Vary": ", ".join(filter(None, [headers.get("Vary"), "Accept-Encoding"]))}
    if _accepts_gzip(request):
        return Response(
            packed if packed is not None else gzip.compress(body, 9, mtime=0),
            media_type=media_type,
            headers={**headers, "Content-Encoding": "gzip"},
        )
    return Response(body, media_type=media_type, headers=headers)


def _asset_response(request: Request, kind: str) -> Response:
    return _compressible(
        request,
        _asset(kind),
        _asset_gzip(kind),
        ASSET_TYPES[kind],
        {"Cache-Control": "public, max-age=300"},
    )


@router.get("/consent/gardien-consent.js", include_in_schema=False)
def banner_script(request: Request) -> Response:
    return _asset_response(request, "js")


@router.get("/consent/gardien-consent.css", include_in_schema=False)
def banner_style(request: Request) -> Response:
    return _asset_response(request, "css")


def _language(state: AppState, request: Request) -> str:
    languages = state.register.languages
    return negotiate(
        request.query_params.get("lang"),
        request.headers.get("accept-language"),
        languages.available,
        languages.default,
    )


@router.get("/consent/config.json", summary="The banner's configuration in one language")
def banner_config(state: AppState, request: Request) -> Response:
    gpc = request.headers.get("sec-gpc", "").strip() == "1"
    language = _language(state, request)
    key = f"consent.config:{current_revision(state).number}:{language}:{int(gpc)}"
    cached = state.caches.get(key)
    if cached is None:
        body = json.dumps(
            config(state, language, gpc), ensure_ascii=False, separators=(",", ":")
        ).encode()
        cached = state.caches[key] = (body, gzip.compress(body, 9, mtime=0))
    return _compressible(
        request,
        cached[0],
        cached[1],
        "application/json",
        {"Cache-Control": "no-cache", "Vary": "Sec-GPC, Accept-Language"},
    )


@router.post(
    "/api/consent/records",
    status_code=201,
    summary="Record one consent decision (answered once it is durable)",
)
async def record_decision(state: AppState, request: Request) -> JSONResponse:
    body = await request.body()
    if len(body) > consent_records.MAX_BODY:
        raise BadRequest(
            N_("a consent record has at most %(size)s bytes"), size=consent_records.MAX_BODY
        )
    try:
        record = consent_records.RecordIn.model_validate_json(body)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in error["loc"]) or "body", "reason": error["msg"]}
            for error in exc.errors(include_input=False)
        ]
        return JSONResponse({"error": "invalid_record", "problems": problems}, status_code=400)
    current = current_revision(state)
    consent_records.check(record, current, state.register.languages.available)
    row = consent_records.build_row(
        record, current, state.clock.now(), request.headers.get("user-agent")
    )
    await state.writer.write(consent_record, row)
    expires = row["expires_at"]
    return JSONResponse(
        {
            "consent_id": record.consent_id,
            "event_id": row["event_id"],
            "revision": current.number,
            "expires_at": expires.isoformat() if expires else None,
        },
        status_code=201,
    )


@router.get(
    "/api/consent/history/{consent_id}",
    summary="A visitor's own consent records (by the consent id their browser holds)",
)
def consent_history(consent_id: str, db: ReadSession) -> JSONResponse:
    if not consent_records.CONSENT_ID.match(consent_id):
        raise NotFound(N_("no consent records for this id"))
    found = history(db, consent_id)
    if not found:
        raise NotFound(N_("no consent records for this id"))
    return JSONResponse(
        {"consent_id": consent_id, "records": found},
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="consent-{consent_id[:8]}.json"',
        },
    )


# -- the demo site --------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def demo_page(state: AppState, request: Request) -> Response:
    language = _language(state, request)
    nonce = secrets.token_urlsafe(16)
    html = (
        state.env(language)
        .get_template("consent/demo.html")
        .render(nonce=nonce, request=request, languages=[], path="/")
    )
    csp = content_security_policy([]).replace(
        "script-src 'self'", f"script-src 'self' 'nonce-{nonce}'"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": csp, "Cache-Control": "no-store"})


DEMO_MEASURE = """\
// Stands for a measurement tag that needs consent: it sets Matomo's two cookies.
(function () {
  var expires = new Date(Date.now() + 30 * 60 * 1000).toUTCString();
  document.cookie = "_pk_id.1.abcd=demo; path=/; SameSite=Lax; max-age=" + 15552000;
  document.cookie = "_pk_ses.1.abcd=1; path=/; SameSite=Lax; expires=" + expires;
  window.gardienDemoMeasured = true;
  document.documentElement.setAttribute("data-demo-measured", "yes");
})();
"""


@router.get("/demo/measure.js", include_in_schema=False)
def demo_measure() -> Response:
    return Response(DEMO_MEASURE, media_type="text/javascript; charset=utf-8")


@router.get("/demo/embed", response_class=HTMLResponse, include_in_schema=False)
def demo_embed(state: AppState, request: Request) -> Response:
    language = _language(state, request)
    html = state.env(language).get_template("consent/embed.html").render(languages=[], path="/")
    return HTMLResponse(html)
