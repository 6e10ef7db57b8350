"""``/gardien.js``, also served as ``/matomo.js`` and ``/piwik.js``: the tracker a page loads.

An unchanged Matomo snippet loads ``u + 'matomo.js'`` from the server it sends hits to, so the
three names serve the same script: ``static/gardien.min.js``, which ``make assets`` builds from
``assets/gardien.js``. Its first line (the source's sha256, for the staleness test) is not
sent, and the lifetime of the opt-out cookie the script may write is the register's, filled in
when the body is built: the cookie policy states it, the script must not restate it by hand.
The body is built once a day per process and answered with an ``ETag``, gzipped when the
browser takes it.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gardien.analytics.optout import UndeclaredCookie, declared_duration
from gardien.deps import State, state_of
from gardien.register.durations import parse_period

router = APIRouter()
BUILD = Path(__file__).parent / "static" / "gardien.min.js"
SOURCE = Path(__file__).parent / "assets" / "gardien.js"
PATHS = ("/gardien.js", "/matomo.js", "/piwik.js")
OPTOUT_MAX_AGE = b"__GARDIEN_OPTOUT_MAX_AGE__"
MEDIA_TYPE = "text/javascript; charset=utf-8"
CACHE_CONTROL = "public, max-age=3600"
"""An hour: a fix reaches every visitor the same day, and revalidation is a 304."""


@dataclass(frozen=True, slots=True)
class TrackerScript:
    body: bytes
    packed: bytes
    etag: str


def script_text() -> bytes:
    """The committed build without its header line, or the source while ``make assets`` has
    not run."""
    if BUILD.exists():
        return BUILD.read_bytes().split(b"\n", 1)[1]
    return SOURCE.read_bytes()


def optout_max_age(state: State) -> int:
    """Seconds from now to the end of the register's ``gardien_optout`` lifetime; 0 (the
    script then keeps the objection for the page only) when the register declares none."""
    try:
        period = parse_period(declared_duration(state.register))
    except UndeclaredCookie:
        return 0
    now = state.clock.now()
    return int((period.after(now) - now).total_seconds())


def tracker_script(state: State) -> TrackerScript:
    """Today's body: the lifetime of a P13M cookie in seconds depends on the months ahead."""
    key = f"analytics.tracker:{state.clock.now().date().isoformat()}"
    cached = state.caches.get(key)
    if cached is None:
        body = script_text().replace(OPTOUT_MAX_AGE, str(optout_max_age(state)).encode())
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        cached = state.caches[key] = TrackerScript(body, gzip.compress(body, 9, mtime=0), etag)
    return cast(TrackerScript, cached)


def _matches(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match", "")
    return any(tag.strip().removeprefix("W/") in (etag, "*") for tag in wanted.split(","))


@router.get("/gardien.js", include_in_schema=False)
@router.get("/matomo.js", include_in_schema=False)
@router.get("/piwik.js", include_in_schema=False)
def tracker(request: Request) -> Response:
    script = tracker_script(state_of(request))
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": script.etag, "Vary": "Accept-Encoding"}
    if _matches(request, script.etag):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        return Response(script.packed, media_type=MEDIA_TYPE, headers=headers)
    return Response(script.body, media_type=MEDIA_TYPE, headers=headers)
