"""Reading Matomo tracking requests: parameters in, a storable hit (or a refusal) out.

Pure functions, no I/O: ``parse_params`` decodes a query string or form body strictly (invalid
UTF-8 is a refusal, not a guess), ``read_hit`` checks one request's parameters against the
register's sites and returns what may be stored. Without the visitor's consent to audience
measurement nothing that identifies them across days is kept: ``uid``, ``cid``, ``_id`` and
custom dimensions are dropped and query strings are cut to the campaign and site-search
parameters (the CNIL exemption's conditions).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes, urlencode, urlsplit, urlunsplit

from gardien.analytics.models import TEXT_LIMIT, URL_LIMIT
from gardien.register.schema import Site

MAX_PARAMS = 200
MAX_VALUE = 8192
"""Longest parameter value read at all; a longer one makes the request invalid."""
MAX_BULK_REQUESTS = 500
SEARCH_PARAMETERS = frozenset({"q", "query", "s", "search", "searchword", "k", "keyword"})
"""Matomo's default site-search URL parameters, kept in stored URLs."""
KEPT_PREFIXES = ("mtm_", "utm_")
MAX_DIMENSIONS = 50
_HEX16 = re.compile(r"^[0-9a-fA-F]{16}$")
_RESOLUTION = re.compile(r"^[0-9]{1,5}x[0-9]{1,5}$")
_DIMENSION = re.compile(r"^dimension([0-9]{1,3})$")
_PAGE_VIEW_ID = re.compile(r"^[0-9A-Za-z]{6}$")
_DATETIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}$")
DEPRECATED = frozenset({"_idts", "_viewts", "_idvc", "_ects"})
"""No longer read since Matomo 4 but still sent by old SDKs: accepted and ignored."""


class InvalidRequest(ValueError):
    """A tracking request Matomo would answer with 400; the message never quotes a value."""


def _decode(text: str) -> str:
    """One form-encoded name or value: ``+`` is a space, ``%XX`` a byte, bytes strict UTF-8."""
    if "%" not in text and "+" not in text:
        return text
    return unquote_to_bytes(text.replace("+", " ")).decode("utf-8")


def parse_params(raw: bytes | str) -> dict[str, str]:
    """Decode a query string or form body; the first value of a repeated name wins.

    What ``parse_qsl`` does, without its generality: every page view goes through here, and
    matomo.js sends some thirty parameters, most of which need no unquoting at all."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        pieces = text.lstrip("?").split("&")
        if len(pieces) > MAX_PARAMS:
            raise InvalidRequest("too many parameters")
        params: dict[str, str] = {}
        for piece in pieces:
            if not piece:
                continue
            raw_name, _, raw_value = piece.partition("=")
            name = _decode(raw_name)
            if len(raw_value) > 3 * MAX_VALUE:  # even fully %-encoded, too long
                raise InvalidRequest("parameter too long")
            value = _decode(raw_value)
            if len(value) > MAX_VALUE or len(name) > 64:
                raise InvalidRequest("parameter too long")
            if "\x00" in value or "\x00" in name:
                raise InvalidRequest("malformed parameters")
            params.setdefault(name, value)
    except UnicodeDecodeError:
        raise InvalidRequest("malformed parameters") from None
    return params


def bulk_requests(body: bytes) -> tuple[list[dict[str, str] | None], Mapping[str, Any]]:
    """The requests of a bulk body (``None`` for each one that cannot be read), and the
    body's other keys. Raises ``InvalidRequest`` when the body is not a bulk request."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # deep nesting: not a bulk body
        raise InvalidRequest("malformed bulk request") from None
    if not isinstance(document, dict) or not isinstance(document.get("requests"), list):
        raise InvalidRequest("malformed bulk request")
    items = document["requests"]
    if len(items) > MAX_BULK_REQUESTS:
        raise InvalidRequest("too many requests in one bulk request")
    requests: list[dict[str, str] | None] = []
    for item in items:
        try:
            if isinstance(item, str):
                requests.append(parse_params(item.partition("?")[2] if "?" in item else item))
            elif isinstance(item, dict) and all(isinstance(k, str) for k in item):
                values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in item.items()}
                requests.append(parse_params(urlencode(values)))
            else:
                requests.append(None)
        except InvalidRequest:
            requests.append(None)
    return requests, document


@dataclass(frozen=True, slots=True)
class TrackedHit:
    """What may be stored of one request, before the visitor id and network are added."""

    site_id: int
    action: str
    url: str | None
    action_name: str | None = None
    referrer: str | None = None
    resolution: str | None = None
    language: str | None = None
    user_agent: str | None = None
    event_category: str | None = None
    event_action: str | None = None
    event_name: str | None = None
    event_value: float | None = None
    search_keyword: str | None = None
    search_category: str | None = None
    search_count: int | None = None
    new_visit: bool = False
    tracker_visitor_id: str | None = None
    """From ``cid``, ``_id`` or ``uid``: only with consent."""
    user_id: str | None = None
    dimensions: dict[str, str] = field(default_factory=dict)
    send_image: bool = True
    page_view_id: str | None = None
    include_bots: bool = False
    """``bots=1``: the sender asks for hits of robots to be kept too."""
    custom_ip: str | None = None
    """``cip``, from an authenticated sender only."""
    custom_time: dt.datetime | None = None
    """``cdt``, from an authenticated sender only (UTC)."""
    cookies: bool = True
    """False with ``cookie=0``: the page's tracker uses no cookie (``disableCookies``, or a
    consent to cookies still pending), so the server neither reads nor sets its visitor cookie."""


def strip_query(url: str, consented: bool) -> str:
    """``url`` without its fragment and, unless ``consented``, without query parameters other
    than campaign (``mtm_*``, ``utm_*``) and site-search ones (kept as they were written)."""
    parts = urlsplit(url)
    query = parts.query
    if not consented and query:
        kept = []
        for piece in query.split("&"):
            try:
                name = _decode(piece.partition("=")[0]).lower()
            except UnicodeDecodeError:
                continue  # a name that is not text is no campaign or search parameter
            if name.startswith(KEPT_PREFIXES) or name in SEARCH_PARAMETERS:
                kept.append(piece)
        query = "&".join(kept)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _text(params: Mapping[str, str], name: str, limit: int = TEXT_LIMIT) -> str | None:
    value = params.get(name, "").strip()
    return value[:limit] or None


def _int(params: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    value = params.get(name, "")
    if value == "":
        return None
    # The length first: int() of a few thousand digits raises (and would be slow anyway).
    if len(value) > 12 or not value.isascii() or not value.isdigit():
        raise InvalidRequest(f"{name} is not a number between {low} and {high}")
    if not low <= int(value) <= high:
        raise InvalidRequest(f"{name} is not a number between {low} and {high}")
    return int(value)


def custom_time(value: str) -> dt.datetime:
    """``cdt``: a Unix timestamp or ``YYYY-MM-DD HH:MM:SS``, in UTC."""
    value = value.strip()
    try:
        if value.isascii() and value.isdigit() and len(value) <= 12:
            return dt.datetime.fromtimestamp(int(value), dt.UTC)
        if _DATETIME.fullmatch(value):
            return dt.datetime.fromisoformat(value.replace(" ", "T")).replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise InvalidRequest("cdt is not a Unix timestamp or a UTC date and time")


def _url(value: str, name: str) -> tuple[str, str]:
    """The URL and its host; refuses anything that is not an http(s) URL of bounded length."""
    if len(value) > MAX_VALUE:
        raise InvalidRequest(f"{name} is too long")
    try:
        parts = urlsplit(value)
        host = (parts.hostname or "").lower()
    except ValueError:
        raise InvalidRequest(f"{name} is not a URL") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise InvalidRequest(f"{name} is not an http(s) URL")
    return value, host


def read_hit(
    params: Mapping[str, str], sites: Sequence[Site], *, consented: bool, authenticated: bool
) -> TrackedHit:
    """The storable hit one request's parameters describe; ``InvalidRequest`` otherwise."""
    if params.get("rec") != "1":
        raise InvalidRequest("rec=1 is required")
    site_id = _int(params, "idsite", 1, 2_147_483_647)
    site = next((s for s in sites if s.id == site_id), None)
    if site_id is None or site is None:
        raise InvalidRequest("unknown site")
    if not authenticated and ("cip" in params or "cdt" in params):
        raise InvalidRequest("cip and cdt need token_auth")
    custom_ip: str | None = None
    if params.get("cip"):
        try:
            custom_ip = str(ipaddress.ip_address(params["cip"].strip()))
        except ValueError:
            raise InvalidRequest("cip is not an IP address") from None
    when = custom_time(params["cdt"]) if params.get("cdt") else None
    page, host = _url(params.get("url", ""), "url")
    if host not in site.hostnames:
        raise InvalidRequest("url is not on one of the site's hostnames")
    cid = params.get("cid", "")
    if cid and not _HEX16.fullmatch(cid):
        raise InvalidRequest("cid must be 16 hexadecimal characters")
    for name in ("h", "m", "s"):
        _int(params, name, 0, 23 if name == "h" else 59)
    _int(params, "new_visit", 0, 1)
    resolution = params.get("res", "") or None
    if resolution is not None and not _RESOLUTION.fullmatch(resolution):
        raise InvalidRequest("res must be WIDTHxHEIGHT")
    event_value: float | None = None
    if params.get("e_v", "") != "":
        try:
            event_value = float(params["e_v"])
        except ValueError:
            raise InvalidRequest("e_v is not a number") from None
        if not math.isfinite(event_value):
            raise InvalidRequest("e_v is not a number")
    search_count = _int(params, "search_count", 0, 2_147_483_647)

    target = params.get("link") or params.get("download")
    if params.get("ping") == "1":
        action = "ping"
    elif "search" in params:
        action = "search"
    elif params.get("e_c") and params.get("e_a"):
        action = "event"
    elif params.get("download"):
        action = "download"
    elif params.get("link"):
        action = "outlink"
    elif params.get("ca") == "1":
        action = "other"
    else:
        action = "pageview"
    url = page
    if action in ("outlink", "download") and target:
        url, _ = _url(target, "link")
    url = strip_query(url, consented)
    if len(url) > URL_LIMIT:
        raise InvalidRequest("url is too long")
    referrer: str | None = None
    if params.get("urlref"):
        try:
            referrer = strip_query(_url(params["urlref"], "urlref")[0], consented)[:URL_LIMIT]
        except InvalidRequest:
            referrer = None  # a referrer that is not a web page is simply not kept

    pv_id = params.get("pv_id", "")
    tracker_visitor_id: str | None = None
    user_id: str | None = None
    dimensions: dict[str, str] = {}
    if consented:
        user_id = _text(params, "uid", 200)
        visitor = params.get("_id", "")
        if cid:
            tracker_visitor_id = cid.lower()
        elif user_id:
            tracker_visitor_id = hashlib.sha1(user_id.encode(), usedforsecurity=False).hexdigest()[
                :16
            ]
        elif _HEX16.fullmatch(visitor):
            tracker_visitor_id = visitor.lower()
        for name, value in params.items():
            match = _DIMENSION.fullmatch(name)
            if match and len(dimensions) < MAX_DIMENSIONS:
                dimensions[name] = value[:255]

    return TrackedHit(
        site_id=site.id,
        action=action,
        url=url,
        action_name=_text(params, "action_name"),
        referrer=referrer,
        resolution=resolution,
        language=_text(params, "lang", 64),
        user_agent=_text(params, "ua"),
        event_category=_text(params, "e_c") if action == "event" else None,
        event_action=_text(params, "e_a") if action == "event" else None,
        event_name=_text(params, "e_n") if action == "event" else None,
        event_value=event_value if action == "event" else None,
        search_keyword=_text(params, "search") if action == "search" else None,
        search_category=_text(params, "search_cat") if action == "search" else None,
        search_count=search_count if action == "search" else None,
        new_visit=params.get("new_visit") == "1",
        tracker_visitor_id=tracker_visitor_id,
        user_id=user_id,
        dimensions=dimensions,
        send_image=params.get("send_image") != "0",
        page_view_id=pv_id if _PAGE_VIEW_ID.fullmatch(pv_id) else None,
        include_bots=params.get("bots") == "1",
        custom_ip=custom_ip,
        custom_time=when,
        cookies=params.get("cookie") != "0",
    )
