"""``/matomo.php`` and ``/piwik.php``: the tracking endpoint an unchanged Matomo snippet calls.

Every shape the Matomo trackers send is accepted: GET (the image), form POST, sendBeacon POST
with the parameters in the URL and an empty body, and bulk JSON ``{"requests": [...]}``
recognised from the body whatever its content type. Hits go through the group-commit writer
and are answered only once committed. Answers are Matomo's: the 43-byte GIF (or 204 with
``send_image=0``), ``{"status": "success", "tracked": N, "invalid": M}`` for bulk, 400 with a
short reason for a single request that cannot be tracked.

A hit is excluded (answered exactly like a stored one, and not stored) when the visitor opted
out (``gardien_optout`` or Matomo's ``mtm_consent_removed`` cookie), sent Global Privacy Control
or, on a site whose register entry says so, Do Not Track without having consented, is a robot
(unless ``bots=1``), or is restricted or objected through the rights workflow. Without consent
no cookie is set; with the audience-measurement category granted, a first-party visitor cookie
(``_pk_id.<idsite>.<hash>``, Matomo's name) is set once, for the register's declared lifetime
and never beyond the consent, and never extended.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any

from crawlerdetect import CrawlerDetect
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from ua_parser import parse as parse_agent

from gardien.analytics.blocks import Blocks, block_list, blocked, hit_keys
from gardien.analytics.models import analytics_hit
from gardien.analytics.optout import opted_out
from gardien.analytics.privacy import anonymise_ip, daily_salts, visitor_id
from gardien.analytics.tracking import (
    InvalidRequest,
    TrackedHit,
    bulk_requests,
    parse_params,
    read_hit,
)
from gardien.consent import cookie as consent_cookie
from gardien.deps import State, state_of
from gardien.register.durations import parse_period
from gardien.register.schema import Register, Site
from gardien.security import service as security_service
from gardien.security.connection_log import client_ip, commit_with_log
from gardien.security.crypto import blind_index
from gardien.security.permissions import Permission, allowed, can_grant
from gardien.storage.groupcommit import GroupCommitError, WriterStopped
from gardien.storage.restriction import processing_point

router = APIRouter()
log = logging.getLogger(__name__)
STORAGE_FAILURES = (SQLAlchemyError, OSError, GroupCommitError, WriterStopped)
"""A database that fails or a writer shutting down: nothing stored, answered 503."""

CATEGORY = "audience_measurement"
TRACKING_PATHS = ("/matomo.php", "/piwik.php")
"""Exempt from the public write budgets (docs/security.md): every page view is a write."""
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAAAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
NO_STORE = {"Cache-Control": "no-store"}
BARE_ANSWER = (
    "This resource is part of Gardien's audience measurement (Matomo-compatible tracking "
    "API). It records visits; it shows nothing."
)
VISITOR_COOKIE = "_pk_id"
"""Matomo's visitor cookie name; the register declares it as the pattern ``_pk_id.*``."""
_VISITOR_VALUE = re.compile(r"^([0-9a-f]{16})\.[0-9]{1,12}\.?$")
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
"""How far ahead of the server's clock a ``cdt`` may be (clock skew of the sender)."""

_crawlers = CrawlerDetect()


@functools.lru_cache(maxsize=8192)
def is_robot(user_agent: str) -> bool:
    """Whether a user agent is a crawler, a spider or a script: CrawlerDetect's list, then
    ua-parser's ``Spider`` device class. Cached: a site's visitors share few agents."""
    if not user_agent:
        return False
    if _crawlers.isCrawler(user_agent):
        return True
    device = parse_agent(user_agent).device
    return device is not None and device.family == "Spider"


def _consent(request: Request) -> tuple[bool, consent_cookie.Decision | None]:
    """Whether the visitor granted audience measurement, and their decision if so."""
    if not consent_cookie.granted(request, CATEGORY):
        return False, None
    return True, consent_cookie.parse(request.cookies.get(consent_cookie.NAME))


def _do_not_track(request: Request) -> bool:
    return request.headers.get("dnt", "").startswith("1") or (
        request.headers.get("x-do-not-track", "") == "1"
    )


def _visitor_cookie_name(site_id: int, host: str) -> str:
    """Matomo's ``_pk_id.<idsite>.<first 4 hex of sha1(host + "/")>``, so the JS tracker of the
    page finds the id this server minted."""
    digest = hashlib.sha1(f"{host}/".encode(), usedforsecurity=False).hexdigest()[:4]
    return f"{VISITOR_COOKIE}.{site_id}.{digest}"


def _declared_lifetime(register: Register) -> str | None:
    for declared in register.cookies:
        if declared.name.startswith(f"{VISITOR_COOKIE}.") and declared.duration != "session":
            return declared.duration
    return None


def _retention_cutoff(register: Register, site: Site, now: dt.datetime) -> dt.datetime | None:
    activity = next((a for a in register.activities if a.id == site.activity), None)
    if activity is None:
        return None
    return parse_period(activity.retention.period).before(now)


def _token_allows(state: State, secret: str) -> bool:
    """Whether ``secret`` is a live API token whose role may import hits (``cip``/``cdt``)."""
    with Session(state.engine) as session, session.begin():
        token = security_service.authenticate_token(session, secret, state.clock.now())
        if token is None:
            return False
        owner = security_service.get_user(session, token.user_id)
        return can_grant(owner.role, token.role) and allowed(
            token.role, Permission.import_analytics
        )


class _Tracker:
    """What one HTTP request's hits share: the visitor's address, agent, consent, the time."""

    def __init__(self, request: Request, state: State) -> None:
        self.request = request
        self.state = state
        self.received_at = state.clock.now()
        self.consented, self.decision = _consent(request)
        self.consent_id = self.decision.consent_id if self.decision else None
        self._consent_index = (
            blind_index(self.consent_id, "analytics_hit.consent_id_index")
            if self.consent_id
            else None
        )
        # An objection (the opt-out cookie, Matomo's own opt-out cookie, Global Privacy
        # Control) is honoured like Matomo's ignore cookie: the hit is answered like any other
        # and not stored, so the answer reveals nothing. An explicit consent given in the banner
        # is more specific than a browser-wide signal; the opt-out cookie always wins.
        self.opted_out = opted_out(request.cookies)
        self.gpc = request.headers.get("sec-gpc", "").strip() == "1" and not self.consented
        self.dnt = _do_not_track(request) and not self.consented
        self.ip = client_ip(request.scope) or ""
        self.header_agent = request.headers.get("user-agent", "")[:300]
        self.header_language = request.headers.get("accept-language", "")[:64] or None
        self.authenticated = False
        self.blocks = Blocks()
        self.new_cookie: tuple[str, str, int] | None = None
        self._networks: dict[tuple[str, int], str | None] = {}

    async def prepare(self, token: str | None) -> None:
        """The database reads a request may need, off the event loop: the token, and the
        block list when this process's copy is stale."""
        if token:
            self.authenticated = await run_in_threadpool(_token_allows, self.state, token)
        engine = self.state.engine
        blocks = block_list.fresh(engine)
        if blocks is None:
            blocks = await run_in_threadpool(block_list.load, engine)
        self.blocks = blocks

    def read(self, params: Mapping[str, str]) -> TrackedHit:
        if not params.get("url") and not params.get("urlref"):
            # Matomo's "simple image tracker": an <img> without url reports its page as Referer.
            referer = self.request.headers.get("referer")
            if referer:
                params = {**params, "url": referer}
        hit = read_hit(
            params,
            self.state.register.sites,
            consented=self.consented,
            authenticated=self.authenticated,
        )
        if hit.custom_time is not None:
            site = self._site(hit)
            cutoff = _retention_cutoff(self.state.register, site, self.received_at)
            if cutoff is not None and hit.custom_time < cutoff:
                # A backfill must not revive data the retention already purged.
                raise InvalidRequest("cdt is older than the raw-data retention period")
            if hit.custom_time > self.received_at + FUTURE_TOLERANCE:
                raise InvalidRequest("cdt is in the future")
        return hit

    def _site(self, hit: TrackedHit) -> Site:
        return next(s for s in self.state.register.sites if s.id == hit.site_id)

    def excluded(self, hit: TrackedHit) -> bool:
        """Whether the hit is answered as tracked but not stored."""
        if self.opted_out or self.gpc:
            return True
        if self.dnt and self._site(hit).honour_do_not_track:
            return True
        agent = hit.user_agent or self.header_agent
        return not hit.include_bots and is_robot(agent)

    def visitor_from_cookie(self, hit: TrackedHit) -> str | None:
        """With consent and no id from the tracker: the visitor cookie's id, minted and set
        (once, for the declared lifetime, never beyond the consent) when there is none."""
        if not self.consented or not hit.cookies or hit.tracker_visitor_id or hit.url is None:
            return None
        host = (hit.url.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0]).lower()
        name = _visitor_cookie_name(hit.site_id, host)
        found = _VISITOR_VALUE.match(self.request.cookies.get(name, ""))
        if found:
            return found.group(1)
        lifetime = _declared_lifetime(self.state.register)
        if lifetime is None:  # the register declares no visitor cookie: stay cookieless
            return None
        now = self.received_at
        expires = parse_period(lifetime).after(now)
        current = self.state.register.consent
        if self.decision is not None and current is not None and current.lifetime:
            expires = min(expires, parse_period(current.lifetime).after(self.decision.decided_at))
        max_age = int((expires - now).total_seconds())
        if max_age <= 0:
            return None
        minted = secrets.token_hex(8)
        self.new_cookie = (name, f"{minted}.{int(now.timestamp())}.", max_age)
        return minted

    @processing_point("analytics.tracking")
    async def row(self, hit: TrackedHit) -> dict[str, Any] | None:
        """The row to store, or ``None`` when a restriction or objection blocks the visitor
        (``blocks``: the analytics provider records them when the rights workflow restricts)."""
        received_at = hit.custom_time or self.received_at
        day = received_at.date()
        salt = daily_salts.cached(self.state.engine, day)
        if salt is None:
            salt = await run_in_threadpool(daily_salts.get, self.state.engine, day)
        ip = hit.custom_ip or self.ip
        agent = hit.user_agent or self.header_agent
        visitor = hit.tracker_visitor_id or self.visitor_from_cookie(hit)
        if visitor is None:
            visitor = visitor_id(salt, ip, agent, hit.site_id)
        decided_at = self.decision.decided_at if self.decision else None
        if blocked(self.blocks, hit_keys(visitor, hit.user_id, self.consent_id), decided_at):
            return None
        masked = self._site(hit).ip_masked_bytes
        network = self._networks.get((ip, masked), "")
        if network == "":  # computed once per address and level, not once per bulk hit
            network = self._networks[(ip, masked)] = anonymise_ip(ip, masked) if ip else None
        return {
            "site_id": hit.site_id,
            "received_at": received_at,
            "visitor_id": visitor,
            "network": network,
            "user_agent": agent or None,
            "action": hit.action,
            "page_view_id": hit.page_view_id,
            "url": hit.url,
            "action_name": hit.action_name,
            "referrer": hit.referrer,
            "resolution": hit.resolution,
            "language": hit.language or self.header_language,
            "event_category": hit.event_category,
            "event_action": hit.event_action,
            "event_name": hit.event_name,
            "event_value": hit.event_value,
            "search_keyword": hit.search_keyword,
            "search_category": hit.search_category,
            "search_count": hit.search_count,
            "new_visit": int(hit.new_visit),
            "consented": int(self.consented),
            "dimensions": hit.dimensions or None,
            "user_id": hit.user_id,
            "user_id_index": (
                blind_index(hit.user_id, "analytics_hit.user_id_index") if hit.user_id else None
            ),
            "consent_id": self.consent_id,
            "consent_id_index": self._consent_index,
        }

    def headers(self) -> dict[str, str]:
        """``no-store``, CORS for the register's sites (Matomo answers the page's origin with
        credentials), and ``Tk: N`` when Do Not Track was honoured."""
        headers = dict(NO_STORE)
        origin = self.request.headers.get("origin")
        if origin and _allowed_origin(self.state.register, origin):
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Allow-Credentials"] = "true"
            headers["Vary"] = "Origin"
        if self.dnt and any(s.honour_do_not_track for s in self.state.register.sites):
            headers["Tk"] = "N"
        return headers

    def finish(self, response: Response) -> Response:
        for name, value in self.headers().items():
            response.headers[name] = value
        if self.new_cookie is not None:
            name, value, max_age = self.new_cookie
            response.set_cookie(
                name,
                value,
                max_age=max_age,
                path="/",
                samesite="lax",
                secure=self.state.settings.secure_cookies or self.request.url.scheme == "https",
                httponly=False,  # the page's tracker reads it, as Matomo's does
            )
        return response


def _allowed_origin(register: Register, origin: str) -> bool:
    host = origin.split("//", 1)[-1].split(":", 1)[0].lower()
    return any(host in site.hostnames for site in register.sites)


async def _store(request: Request, rows: list[dict[str, Any]], status: int) -> None:
    """The hits and the request's connection-log row, in one commit."""
    items = [(analytics_hit, row) for row in rows]
    await commit_with_log(request.scope, state_of(request).writer, items, status)


def _unavailable() -> Response:
    return PlainTextResponse(
        "tracking is temporarily unavailable; retry later",
        status_code=503,
        headers={**NO_STORE, "Retry-After": "30"},
    )


def _answer(send_image: bool) -> Response:
    if not send_image:
        return Response(status_code=204)
    return Response(GIF, media_type="image/gif")


def _invalid(reason: str) -> Response:
    return PlainTextResponse(reason, status_code=400)


async def _bulk(tracker: _Tracker, body: bytes) -> Response:
    try:
        requests, document = bulk_requests(body)
    except InvalidRequest as exc:
        return tracker.finish(
            JSONResponse(
                {"status": "error", "tracked": 0, "invalid": 0, "message": str(exc)},
                status_code=400,
            )
        )
    token = document.get("token_auth")
    try:
        await tracker.prepare(token if isinstance(token, str) else None)
    except STORAGE_FAILURES as exc:
        log.error("analytics: bulk hits not read (%s)", type(exc).__name__)
        return tracker.finish(_unavailable())
    hits: list[TrackedHit] = []
    invalid: list[int] = []
    for index, params in enumerate(requests):
        if params is None:
            invalid.append(index)
            continue
        try:
            hits.append(tracker.read(params))
        except InvalidRequest:
            invalid.append(index)
    try:
        rows = [
            row
            for hit in hits
            if not tracker.excluded(hit) and (row := await tracker.row(hit)) is not None
        ]
        if rows:
            status = 204 if str(document.get("send_image", "1")).lower() in ("0", "false") else 200
            await _store(tracker.request, rows, status)
    except STORAGE_FAILURES as exc:
        log.error("analytics: bulk hits not stored (%s)", type(exc).__name__)
        return tracker.finish(_unavailable())
    if str(document.get("send_image", "1")).lower() in ("0", "false"):
        return tracker.finish(Response(status_code=204))
    answer: dict[str, Any] = {"status": "success", "tracked": len(hits), "invalid": len(invalid)}
    if tracker.authenticated:
        answer["invalid_indices"] = invalid  # as Matomo: only to an authenticated sender
    return tracker.finish(JSONResponse(answer))


@router.options("/matomo.php", include_in_schema=False)
@router.options("/piwik.php", include_in_schema=False)
async def preflight(request: Request) -> Response:
    """CORS preflight of a tracker on one of the register's sites."""
    tracker = _Tracker(request, state_of(request))
    response = Response(status_code=204)
    if "Access-Control-Allow-Origin" in tracker.headers():
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "86400"
    return tracker.finish(response)


@router.get("/matomo.php", include_in_schema=False)
@router.get("/piwik.php", include_in_schema=False)
@router.post("/matomo.php", include_in_schema=False)
@router.post("/piwik.php", include_in_schema=False)
async def track(request: Request) -> Response:
    """One tracking request in any of the shapes Matomo's trackers send."""
    state = state_of(request)
    tracker = _Tracker(request, state)
    body = await request.body() if request.method == "POST" else b""
    if b'"requests"' in body:
        return await _bulk(tracker, body)
    try:
        params = parse_params(request.scope.get("query_string", b""))
        if body and "multipart/" not in request.headers.get("content-type", ""):
            # On a name clash the URL's value wins, as in Matomo ($_GET + $_POST).
            params = {**parse_params(body), **params}
    except InvalidRequest as exc:
        return tracker.finish(_invalid(str(exc)))
    if not params:
        if request.method == "GET":
            return tracker.finish(PlainTextResponse(BARE_ANSWER))
        return tracker.finish(_invalid("no tracking parameters"))
    try:
        await tracker.prepare(params.get("token_auth"))
        hit = tracker.read(params)
        if not tracker.excluded(hit):
            row = await tracker.row(hit)
            if row is not None:
                await _store(request, [row], 204 if not hit.send_image else 200)
    except InvalidRequest as exc:
        return tracker.finish(_invalid(str(exc)))
    except STORAGE_FAILURES as exc:
        # Nothing was stored, so nothing is acknowledged: the sender may retry.
        log.error("analytics: hit not stored (%s)", type(exc).__name__)
        tracker.new_cookie = None
        return tracker.finish(_unavailable())
    return tracker.finish(_answer(hit.send_image))
