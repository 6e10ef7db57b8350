"""``/matomo.php`` and ``/piwik.php``: the tracking endpoint an unchanged Matomo snippet calls.

Every shape the Matomo trackers send is accepted: GET (the image), form POST, sendBeacon POST
with the parameters in the URL and an empty body, and bulk JSON ``{"requests": [...]}``
recognised from the body whatever its content type. Hits go through the group-commit writer
and are answered only once committed. Answers are Matomo's: the 43-byte GIF (or 204 with
``send_image=0``), ``{"status": "success", "tracked": N, "invalid": M}`` for bulk, 400 with a
short reason for a single request that cannot be tracked. No cookie is set.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from gardien.analytics.models import analytics_hit
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
from gardien.security.connection_log import client_ip
from gardien.security.crypto import blind_index

router = APIRouter()

CATEGORY = "audience_measurement"
TRACKING_PATHS = ("/matomo.php", "/piwik.php")
"""Exempt from the public write budgets (docs/security.md): every page view is a write."""
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAAAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
NO_STORE = {"Cache-Control": "no-store"}
BARE_ANSWER = (
    "This resource is part of Gardien's audience measurement (Matomo-compatible tracking "
    "API). It records visits; it shows nothing."
)


def _consent(request: Request) -> tuple[bool, str | None]:
    """Whether the visitor granted audience measurement, and their consent id if so."""
    if not consent_cookie.granted(request, CATEGORY):
        return False, None
    decision = consent_cookie.parse(request.cookies.get(consent_cookie.NAME))
    return True, decision.consent_id if decision else None


def _row(
    hit: TrackedHit,
    received_at: dt.datetime,
    visitor: str,
    network: str | None,
    consent_id: str | None,
) -> dict[str, Any]:
    return {
        "site_id": hit.site_id,
        "received_at": received_at,
        "visitor_id": hit.tracker_visitor_id or visitor,
        "network": network,
        "user_agent": hit.user_agent,
        "action": hit.action,
        "url": hit.url,
        "action_name": hit.action_name,
        "referrer": hit.referrer,
        "resolution": hit.resolution,
        "language": hit.language,
        "event_category": hit.event_category,
        "event_action": hit.event_action,
        "event_name": hit.event_name,
        "event_value": hit.event_value,
        "search_keyword": hit.search_keyword,
        "search_category": hit.search_category,
        "search_count": hit.search_count,
        "new_visit": int(hit.new_visit),
        "consented": 0,
        "dimensions": hit.dimensions or None,
        "user_id": hit.user_id,
        "user_id_index": (
            blind_index(hit.user_id, "analytics_hit.user_id_index") if hit.user_id else None
        ),
        "consent_id": consent_id,
        "consent_id_index": (
            blind_index(consent_id, "analytics_hit.consent_id_index") if consent_id else None
        ),
    }


class _Tracker:
    """What one HTTP request's hits share: the visitor's address, agent, consent, the time."""

    def __init__(self, request: Request, state: State) -> None:
        self.request = request
        self.state = state
        self.received_at = state.clock.now()
        self.consented, self.consent_id = _consent(request)
        # Global Privacy Control objects to the measurement a visitor did not agree to: such
        # hits are answered like any other and not stored (the answer reveals nothing).
        self.objected = request.headers.get("sec-gpc", "").strip() == "1" and not self.consented
        self.ip = client_ip(request.scope) or ""
        self.network = anonymise_ip(self.ip) if self.ip else None
        self.header_agent = request.headers.get("user-agent", "")[:300]
        self.header_language = request.headers.get("accept-language", "")[:64] or None

    def read(self, params: Mapping[str, str]) -> TrackedHit:
        return read_hit(
            params, self.state.register.sites, consented=self.consented, authenticated=False
        )

    async def row(self, hit: TrackedHit) -> dict[str, Any]:
        day = self.received_at.date()
        salt = daily_salts.cached(self.state.engine, day)
        if salt is None:
            salt = await run_in_threadpool(daily_salts.get, self.state.engine, day)
        agent = hit.user_agent or self.header_agent
        visitor = visitor_id(salt, self.ip, agent, hit.site_id)
        row = _row(hit, self.received_at, visitor, self.network, self.consent_id)
        row["user_agent"] = agent or None
        row["language"] = hit.language or self.header_language
        row["consented"] = int(self.consented)
        return row


def _answer(send_image: bool) -> Response:
    if not send_image:
        return Response(status_code=204, headers=NO_STORE)
    return Response(GIF, media_type="image/gif", headers=NO_STORE)


def _invalid(reason: str) -> Response:
    return PlainTextResponse(reason, status_code=400, headers=NO_STORE)


async def _bulk(tracker: _Tracker, body: bytes) -> Response:
    try:
        requests, document = bulk_requests(body)
    except InvalidRequest as exc:
        return JSONResponse(
            {"status": "error", "tracked": 0, "invalid": 0, "message": str(exc)},
            status_code=400,
            headers=NO_STORE,
        )
    hits: list[TrackedHit] = []
    invalid = 0
    for params in requests:
        if params is None:
            invalid += 1
            continue
        try:
            hits.append(tracker.read(params))
        except InvalidRequest:
            invalid += 1
    rows = [] if tracker.objected else [await tracker.row(hit) for hit in hits]
    await asyncio.gather(*(tracker.state.writer.write(analytics_hit, row) for row in rows))
    if str(document.get("send_image", "1")).lower() in ("0", "false"):
        return Response(status_code=204, headers=NO_STORE)
    return JSONResponse(
        {"status": "success", "tracked": len(hits), "invalid": invalid}, headers=NO_STORE
    )


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
            params = {**params, **parse_params(body)}
    except InvalidRequest as exc:
        return _invalid(str(exc))
    if not params:
        if request.method == "GET":
            return PlainTextResponse(BARE_ANSWER, headers=NO_STORE)
        return _invalid("no tracking parameters")
    try:
        hit = tracker.read(params)
    except InvalidRequest as exc:
        return _invalid(str(exc))
    if not tracker.objected:
        await state.writer.write(analytics_hit, await tracker.row(hit))
    return _answer(hit.send_image)
