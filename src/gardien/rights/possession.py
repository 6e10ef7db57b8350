"""Self-service rights for data bound only to a browser, verified by possession.

A consent id and an analytics visitor id name a browser, not a person: Gardien knows no
e-mail or name to send a code to. Whoever holds the cookie that carries the id holds the
proof (issue 8, point 2; EDPB 01/2022 on proportionate verification), so the cookie panel
offers "download my data" and "erase my data" for it. ``POST /api/rights/possession/export``
answers an access package, ``POST /api/rights/possession/erase`` an erasure receipt; each
opens a rights case (channel ``browser``, verified by possession) the staff see in the queue.

Only cookies identify the person; nothing in the body is read. Cross-site forgery is refused
three ways: the cookies are ``SameSite=Lax`` (a cross-site POST does not carry them), the
request must carry the ``X-Gardien-Self-Service`` header (which a form cannot send and a
cross-origin script cannot send without a CORS preflight that Gardien never grants), and a
browser's ``Origin`` / ``Sec-Fetch-Site`` must name this very origin. Public writes are
counted by the public-write budgets like every other.

A well-formed consent id Gardien never saw is answered like a known one (an empty package, a
receipt with nothing matched): the answer does not tell which ids exist. The daily visitor id
of cookieless measurement is a hash of the address, browser and a salt forgotten the next day:
no browser holds it, so it cannot be proven by possession (Art. 11(2)); the panel says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from gardien.deps import AppState, State
from gardien.errors import N_, GardienError
from gardien.forms.routes import _language as language_of
from gardien.rights.models import RightsCase
from gardien.rights.service import (
    AccessPackage,
    Desk,
    add_event,
    close_case,
    erase,
    export_package,
    open_case,
    subject_of,
)
from gardien.security.audit import Actor
from gardien.storage.database import unit_of_work
from gardien.storage.subjects import SubjectIdentity

router = APIRouter()
BROWSER = Actor("browser", "subject")
CHANNEL = "browser"
HEADER = "x-gardien-self-service"
CONSENT_COOKIE = "gardien_consent"
_CONSENT_VALUE = re.compile(r"^1:([0-9a-f]{32}):")
"""The consent cookie's version and id (docs/consent.md); the rest of it may be stale."""
VISITOR_COOKIE_PREFIX = "_pk_id."
VISITOR_COOKIES = ("_pk_id.", "_pk_ses.")
"""The measurement cookies an erasure clears (Matomo's names, as the register declares)."""
_VISITOR_VALUE = re.compile(r"^([0-9a-f]{16})\.")
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


class NoPossession(GardienError):
    code = "no_browser_identifier"
    status = 400


class CrossSite(GardienError):
    code = "cross_site_request"
    status = 403


class Incomplete(GardienError):
    code = "incomplete"
    status = 503


@dataclass(frozen=True, slots=True)
class Possession:
    """The identifiers the browser's own cookies carry."""

    consent_id: str | None
    visitor_id: str | None

    @property
    def subject(self) -> SubjectIdentity:
        return SubjectIdentity(consent_id=self.consent_id, visitor_id=self.visitor_id)

    @property
    def proof(self) -> str:
        held = [
            name
            for name, value in (
                ("the consent cookie", self.consent_id),
                ("the analytics visitor cookie", self.visitor_id),
            )
            if value
        ]
        return "possession of " + " and ".join(held) + " (self-service in the cookie panel)"


def possession_of(cookies: Mapping[str, str]) -> Possession | None:
    """The consent id and visitor id the cookies prove, or ``None`` when there is neither.

    With several visitor cookies (one per measured site), the first by name is taken."""
    found = _CONSENT_VALUE.match(cookies.get(CONSENT_COOKIE, ""))
    consent_id = found.group(1) if found else None
    visitor_id = None
    for name in sorted(cookies):
        if name.startswith(VISITOR_COOKIE_PREFIX):
            value = _VISITOR_VALUE.match(cookies[name])
            if value:
                visitor_id = value.group(1)
                break
    if consent_id is None and visitor_id is None:
        return None
    return Possession(consent_id, visitor_id)


def _open(state: State, held: Possession, rights: list[str], language: str) -> RightsCase:
    """The case, opened and verified in a transaction of its own: it stays visible to the
    staff whatever happens next."""
    with unit_of_work(state.sessions) as session:
        now = state.clock.now()
        case = open_case(
            session,
            Desk(state.register, state.providers, state.settings.base_url),
            held.subject,
            rights,
            channel=CHANNEL,
            now=now,
            actor=BROWSER,
            language=language,
        )
        case.verified_at = now
        case.verification_basis = held.proof
        add_event(session, case, now, BROWSER, "verified", "by possession of the browser's cookies")
        return case


def self_service_export(state: State, held: Possession, language: str) -> tuple[str, AccessPackage]:
    """Open a case, build the access package (portability included) and close the case as
    answered when every store answered."""
    opened = _open(state, held, ["access", "portability"], language)
    with unit_of_work(state.sessions) as session:
        case = session.get_one(RightsCase, opened.id)
        now = state.clock.now()
        desk = Desk(state.register, state.providers, state.settings.base_url)
        package = export_package(session, desk, case, subject_of(case), now=now, actor=BROWSER)
        if not package.failures:
            add_event(session, case, now, BROWSER, "package_delivered", "downloaded at once")
            close_case(session, case, now, BROWSER, "answered")
        return case.reference, package


def self_service_erase(state: State, held: Possession, language: str) -> dict[str, Any]:
    """Open a case and erase through every provider; the receipt is the browser's answer
    (there is no address to send it to)."""
    opened = _open(state, held, ["erasure"], language)
    with unit_of_work(state.sessions) as session:
        case = session.get_one(RightsCase, opened.id)
        desk = Desk(state.register, state.providers, state.settings.base_url)
        return erase(
            session,
            desk,
            case,
            subject_of(case),
            now=state.clock.now(),
            actor=BROWSER,
            notify_person=False,
        )


def _same_origin(request: Request, site_hosts: set[str]) -> None:
    """Refuse what a page of another origin could make the browser send. ``site_hosts``: the
    register's site hostnames, the origin a browser names when a reverse proxy hands Gardien
    another ``Host``."""
    if request.headers.get(HEADER) != "1":
        raise CrossSite(
            N_("this request must come from the cookie panel (%(header)s header)"),
            header="X-Gardien-Self-Service",
        )
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        raise CrossSite(N_("this request must come from the site's own pages"))
    origin = request.headers.get("origin")
    if origin is not None and (
        origin == "null"
        or urlsplit(origin).netloc != request.url.netloc
        and urlsplit(origin).hostname not in site_hosts
    ):
        raise CrossSite(N_("this request must come from the site's own pages"))


def _held(state: State, request: Request) -> Possession:
    _same_origin(request, {host for site in state.register.sites for host in site.hostnames})
    held = possession_of(request.cookies)
    if held is None:
        raise NoPossession(
            N_(
                "this browser holds no consent cookie nor analytics visitor cookie: there is "
                "no data bound to it that it could prove"
            )
        )
    return held


@router.post(
    "/api/rights/possession/export",
    summary="Download the data bound to this browser's consent and visitor cookies",
    responses={200: {"content": {"application/zip": {}}}},
)
async def possession_export(state: AppState, request: Request) -> Response:
    held = _held(state, request)
    language = language_of(state, request)
    reference, package = await run_in_threadpool(self_service_export, state, held, language)
    if package.failures:
        raise Incomplete(N_("some stores could not be read; the case stays open for the staff"))
    return Response(
        package.content,
        media_type="application/zip",
        headers={
            **NO_STORE,
            "Content-Disposition": f'attachment; filename="{reference}.zip"',
            "X-Gardien-Case": reference,
        },
    )


@router.post(
    "/api/rights/possession/erase",
    summary="Erase the data bound to this browser's consent and visitor cookies",
)
async def possession_erase(state: AppState, request: Request) -> JSONResponse:
    held = _held(state, request)
    language = language_of(state, request)
    receipt = await run_in_threadpool(self_service_erase, state, held, language)
    response = JSONResponse(receipt, status_code=200 if receipt["complete"] else 503)
    response.headers.update(NO_STORE)
    if receipt["complete"]:
        # The ids are gone from the stores; the cookies that carried them go too.
        secure = state.settings.secure_cookies or request.url.scheme == "https"
        for name in request.cookies:
            if name == CONSENT_COOKIE or name.startswith(VISITOR_COOKIES):
                response.delete_cookie(name, path="/", secure=secure, samesite="lax")
    return response
