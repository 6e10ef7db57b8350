"""The visitor's objection to audience measurement: ``/analytics/opt-out`` and ``opted_out``.

Measurement without consent rests on legitimate interest, so the visitor may object at any
time (GDPR Art. 21). The objection is a first-party cookie the server reads on every hit, not
a promise made by a script: ``opted_out`` is what ``/matomo.php`` asks before storing anything.
Matomo's own client-side opt-out (``_paq.push(['optUserOut'])`` writes ``mtm_consent_removed``)
is honoured too, so a site keeping Matomo's JavaScript API keeps its opt-out working.

The page works without JavaScript (a plain form POST answered 303 back to the page), and with
``?embed=1`` it drops the site layout so the operator's pages (and ``/privacy``, ``/cookies``)
can show it in an iframe: its ``frame-ancestors`` lists the register's site hostnames.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gardien.consent import cookie as consent_cookie
from gardien.deps import AppState, State
from gardien.errors import N_, BadRequest, GardienError
from gardien.i18n import negotiate, translator
from gardien.policy.document import duration_words
from gardien.register.durations import parse_period
from gardien.register.schema import Register

OPTOUT_COOKIE = "gardien_optout"
OPTED_OUT = "1"
"""The cookie's value while the visitor objects; any other value is no objection."""
MATOMO_REMOVED = "mtm_consent_removed"
"""Matomo's client-side opt-out cookie; it wins over ``mtm_consent`` when both exist."""
CATEGORY = "audience_measurement"
PATH = "/analytics/opt-out"
MAX_FORM_BYTES = 4 * 1024

router = APIRouter()


def opted_out(cookies: Mapping[str, str]) -> bool:
    """Whether the request's cookies say the visitor objected to audience measurement."""
    return cookies.get(OPTOUT_COOKIE) == OPTED_OUT or MATOMO_REMOVED in cookies


class CrossSiteRequest(GardienError):
    code = "cross_site_request"
    status = 403


class UndeclaredCookie(GardienError):
    """Setting a cookie the register does not declare would make the cookie policy lie."""

    code = "undeclared_cookie"
    status = 500


def declared_duration(register: Register) -> str:
    """The register's ISO 8601 duration of the opt-out cookie (seed: ``P13M``)."""
    for cookie in register.cookies:
        if cookie.name == OPTOUT_COOKIE and not cookie.pattern and cookie.duration != "session":
            return cookie.duration
    raise UndeclaredCookie(
        N_("the register declares no %(cookie)s cookie with a duration"), cookie=OPTOUT_COOKIE
    )


def frame_ancestors(register: Register) -> list[str]:
    """The origins allowed to embed the page: every site hostname, over http and https. On
    any port, as a hit's ``url`` is checked by host alone: the register names hosts."""
    hosts = dict.fromkeys(host for site in register.sites for host in site.hostnames)
    return [f"{scheme}://{host}:*" for host in hosts for scheme in ("https", "http")]


# -- the page ------------------------------------------------------------------------------


def _language(state: State, request: Request, chosen: str | None = None) -> str:
    languages = state.register.languages
    return negotiate(
        chosen or request.query_params.get("lang"),
        request.headers.get("accept-language"),
        languages.available,
        languages.default,
    )


def honours_do_not_track(register: Register) -> bool:
    return any(site.honour_do_not_track for site in register.sites)


def _measurement_state(request: Request, register: Register) -> str:
    """``opted_out``, ``gpc`` or ``dnt`` (the browser objects and there is no consent),
    ``consented`` (measured with cookies) or ``cookieless`` (measured without cookies): what
    the tracking endpoint does with this visitor's hits."""
    if opted_out(request.cookies):
        return "opted_out"
    if consent_cookie.granted(request, CATEGORY):
        return "consented"
    if request.headers.get("sec-gpc", "").strip() == "1":
        return "gpc"
    headers = request.headers
    dnt = headers.get("dnt", "").startswith("1") or headers.get("x-do-not-track") == "1"
    if dnt and honours_do_not_track(register):
        return "dnt"
    return "cookieless"


def _page_url(language: str, embed: bool) -> str:
    query = {"lang": language, **({"embed": "1"} if embed else {})}
    return f"{PATH}?{urlencode(query)}"


@router.get(PATH, response_class=HTMLResponse, summary="Opt out of audience measurement")
def optout_page(state: AppState, request: Request) -> Response:
    language = _language(state, request)
    embed = request.query_params.get("embed") == "1"
    declared = declared_duration(state.register)
    html = (
        state.env(language)
        .get_template("analytics/optout.html")
        .render(
            measurement=_measurement_state(request, state.register),
            do_not_track=honours_do_not_track(state.register),
            retention=duration_words(declared, translator(language)),
            cookie=OPTOUT_COOKIE,
            embed=embed,
            languages=[] if embed else state.register.languages.available,
            path=PATH,
            action=_page_url(language, embed),
            policy_url=f"/privacy?lang={language}#audience-measurement",
        )
    )
    response = HTMLResponse(
        html,
        headers={
            "Cache-Control": "no-store",
            "Content-Language": language,
            "Vary": "Accept-Language, Cookie, Sec-GPC, DNT",
        },
    )
    # Read by the security-headers middleware: this page may be framed by the sites whose
    # audience is measured (and not forbidden by X-Frame-Options).
    request.state.frame_ancestors = frame_ancestors(state.register)
    return response


def _same_site(request: Request, register: Register) -> bool:
    """Whether the form was posted from this host or one of the register's sites. Browsers
    send ``Origin`` on every form POST; a request with neither header is not a browser's and
    cannot carry a visitor's cookies against their will."""
    origin = request.headers.get("origin")
    source = origin if origin is not None else request.headers.get("referer")
    if source is None:
        return True
    host = urlsplit(source).hostname if source != "null" else None
    if host is None:
        return False
    allowed = {request.url.hostname, *(h for site in register.sites for h in site.hostnames)}
    return host in allowed


@router.post(PATH, response_class=RedirectResponse, status_code=303, include_in_schema=False)
async def optout_choose(state: AppState, request: Request) -> Response:
    if not _same_site(request, state.register):
        raise CrossSiteRequest(
            N_("this form can only be sent from the site's own pages (Origin or Referer)")
        )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise BadRequest(N_("send the form as application/x-www-form-urlencoded"))
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadRequest(N_("the form is larger than %(size)s KB"), size=MAX_FORM_BYTES // 1024)
    try:
        fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise BadRequest(N_("the form is not valid UTF-8")) from None
    choice = fields.get("choice")
    if choice not in ("out", "in"):
        raise BadRequest(N_("choice must be out or in"))
    language = _language(state, request, fields.get("lang") or None)
    embed = fields.get("embed") == "1" or request.query_params.get("embed") == "1"
    response = RedirectResponse(_page_url(language, embed), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    secure = state.settings.secure_cookies or state.settings.https or request.url.scheme == "https"
    if choice == "out":
        now = state.clock.now()
        period = parse_period(declared_duration(state.register))
        response.set_cookie(
            OPTOUT_COOKIE,
            OPTED_OUT,
            max_age=int((period.after(now) - now).total_seconds()),
            path="/",
            samesite="lax",
            secure=secure,
            httponly=True,
        )
    else:
        response.delete_cookie(
            OPTOUT_COOKIE, path="/", samesite="lax", secure=secure, httponly=True
        )
        if MATOMO_REMOVED in request.cookies:
            # Matomo's script wrote it on the site's pages (path /); opting back in here must
            # not leave a stale objection the visitor cannot see.
            response.delete_cookie(MATOMO_REMOVED, path="/", samesite="lax", secure=secure)
    return response
