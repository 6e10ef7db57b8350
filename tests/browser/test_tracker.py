"""``gardien.js`` in real Chromium against a real ``gardien serve``: a site's pages (served to the
browser by Playwright on the server's own origin, as the operator's website would be) load it
through Matomo's unchanged snippet, and every test reads what ``/matomo.php`` stored in the
``analytics_hit`` table: page views, events, site searches, outlinks and downloads, page views of
a single-page application, custom URL and title, consent (``requireConsent``, the banner), the
opt-out, and no cookie at all while measuring without consent."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, Route

from tests.browser.consent import Site, running

pytestmark = pytest.mark.browser

# Headless Chromium announces itself as "HeadlessChrome", which the robot filter leaves out:
# the visitor presents a desktop Chrome (as tests/browser/test_tracking_shapes.py does).
DESKTOP_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
)
COLUMNS = (
    "id, action, url, action_name, referrer, resolution, page_view_id, event_category, "
    "event_action, event_name, event_value, search_keyword, search_category, search_count, "
    "consented, visitor_id, user_id, dimensions, consent_id"
)
LOADED = "window._paq && !Array.isArray(window._paq)"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running(tmp_path_factory.mktemp("tracker")) as running_site:
        yield running_site


class Visitor:
    """A browser profile visiting the operator's pages; ``pages`` maps a path to its HTML."""

    def __init__(self, context: BrowserContext, site: Site) -> None:
        self.context = context
        self.site = site
        self.pages: dict[str, str] = {}
        self.sent: list[dict[str, str]] = []
        context.route(f"{site.url}/site/**", self._serve)
        # Links that leave the site land on a page of nobody: no test reaches the internet.
        context.route("https://www.example.org/**", lambda route: route.fulfill(body="elsewhere"))
        context.on("request", self._record)

    def _serve(self, route: Route) -> None:
        path = urlparse(route.request.url).path
        body = self.pages.get(path)
        if body is None:
            route.fulfill(status=404, body="not found")
        else:
            route.fulfill(body=body, content_type="text/html; charset=utf-8")

    def _record(self, request: Request) -> None:
        parts = urlparse(request.url)
        if parts.path in ("/matomo.php", "/piwik.php"):
            self.sent.append({k: v[0] for k, v in parse_qs(parts.query).items()})

    def open(self, path: str, html: str, *, tracked: bool = True) -> Page:
        self.pages[path] = html
        page = self.context.new_page()
        page.goto(f"{self.site.url}{path}")
        if tracked:
            page.wait_for_function(LOADED)
        return page


@pytest.fixture
def visitor(browser: Browser, site: Site) -> Iterator[Visitor]:
    context = browser.new_context(locale="en-GB", user_agent=DESKTOP_CHROME)
    yield Visitor(context, site)
    context.close()


def snippet(site: Site, calls: str = "", script: str = "matomo") -> str:
    """Matomo's standard tracking code as its admin hands it out, with the page's own calls
    before it (as sites add them)."""
    host = urlparse(site.url).netloc
    return f"""<script>
  var _paq = window._paq = window._paq || [];
  /* tracker methods like "setCustomDimension" should be called before "trackPageView" */
  {calls}
  _paq.push(['trackPageView']);
  _paq.push(['enableLinkTracking']);
  (function() {{
    var u="//{host}/";
    _paq.push(['setTrackerUrl', u+'{script}.php']);
    _paq.push(['setSiteId', '1']);
    var d=document, g=d.createElement('script'), s=d.getElementsByTagName('script')[0];
    g.async=true; g.src=u+'{script}.js'; s.parentNode.insertBefore(g,s);
  }})();
</script>"""


def html(title: str, head: str, body: str = "") -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"{head}</head><body><main>{body}</main></body></html>"
    )


def hits(site: Site, after: int = 0) -> list[dict[str, Any]]:
    with sqlite3.connect(site.database) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute(
            f"SELECT {COLUMNS} FROM analytics_hit WHERE id > ? ORDER BY id", (after,)
        ).fetchall()
    return [dict(row) for row in rows]


def last_id(site: Site) -> int:
    with sqlite3.connect(site.database) as connection:
        (found,) = connection.execute("SELECT coalesce(max(id), 0) FROM analytics_hit").fetchone()
    return int(found)


def wait_for(
    site: Site, after: int, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """Beacons are fire-and-forget: poll the database (bounded) until ``done`` holds."""
    deadline = time.monotonic() + 10
    rows = hits(site, after)
    while not done(rows) and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = hits(site, after)
    return rows


def count_of(action: str, number: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda rows: sum(row["action"] == action for row in rows) >= number


def cookie_names(context: BrowserContext) -> set[str]:
    return {cookie["name"] for cookie in context.cookies()}


def test_unchanged_matomo_snippet_loads_matomo_js_and_measures_without_cookies(
    visitor: Visitor, site: Site
) -> None:
    start = last_id(site)
    scripts: list[str] = []
    visitor.context.on("request", lambda r: scripts.append(urlparse(r.url).path))
    page = visitor.open("/site/welcome", html("Welcome", snippet(site)))
    rows = wait_for(site, start, count_of("pageview", 1))
    assert "/matomo.js" in scripts and "/gardien.js" not in scripts
    [view] = rows
    assert view["url"] == f"{site.url}/site/welcome"
    assert view["action_name"] == "Welcome"
    size = page.evaluate("screen.width + 'x' + screen.height")
    assert view["resolution"] == size
    assert len(view["page_view_id"]) == 6 and len(view["visitor_id"]) == 16
    # Cookieless: nothing in the browser's jar, nothing tying the row to a consent.
    assert visitor.context.cookies() == []
    assert (view["consented"], view["consent_id"], view["user_id"]) == (0, None, None)
    # Matomo's parameters, sent as matomo.js does (idsite, rec, url, title, pv_id...).
    [sent] = visitor.sent
    assert {"idsite", "rec", "url", "action_name", "res", "pv_id", "r", "send_image"} <= set(sent)
    assert (sent["idsite"], sent["rec"], sent["send_image"]) == ("1", "1", "0")
    assert "_id" not in sent


def test_events_and_site_search_carry_the_page_view_id(visitor: Visitor, site: Site) -> None:
    start = last_id(site)
    page = visitor.open(
        "/site/videos",
        html("Videos", snippet(site, "_paq.push(['setCustomDimension', 1, 'doctor']);")),
    )
    page.evaluate(
        """() => {
        _paq.push(['trackEvent', 'Video', 'Play', 'Intro', 12.5]);
        _paq.push(['trackEvent', 'Video', 'Pause']);
        _paq.push(['trackEvent', 'Video']);  // no action: Matomo sends nothing either
        _paq.push(['trackSiteSearch', 'privacy notice', 'Documents', 3]);
        _paq.push(['trackSiteSearch', 'cookies', false, false]);
        _paq.push(['aMethodMatomoHasAndGardienNot', 1]);  // ignored, nothing breaks
        _paq.push({}, 42, ['setCustomUrl', 'http://[bad']);  // refused, the queue goes on
        _paq.push(['trackEvent', 'Video', 'End']);
        }"""
    )
    rows = wait_for(site, start, lambda r: count_of("event", 3)(r) and count_of("search", 2)(r))
    view = next(row for row in rows if row["action"] == "pageview")
    events = [row for row in rows if row["action"] == "event"]
    # Beacons travel in parallel: they may land in any order.
    assert sorted(
        (e["event_category"], e["event_action"], e["event_name"] or "", e["event_value"] or 0)
        for e in events
    ) == [("Video", "End", "", 0), ("Video", "Pause", "", 0), ("Video", "Play", "Intro", 12.5)]
    searches = [
        (r["search_keyword"], r["search_category"] or "", r["search_count"] or 0)
        for r in rows
        if r["action"] == "search"
    ]
    assert sorted(searches) == [("cookies", "", 0), ("privacy notice", "Documents", 3)]
    assert [r["search_count"] for r in rows if r["search_keyword"] == "cookies"] == [None]
    assert {row["page_view_id"] for row in rows} == {view["page_view_id"]}
    assert all(row["url"] == f"{site.url}/site/videos" for row in rows)
    # The dimension is sent; without consent the server keeps none of it.
    assert all(sent.get("dimension1") == "doctor" for sent in visitor.sent)
    assert all(json.loads(row["dimensions"] or "null") is None for row in rows)
    assert len(rows) == 6


def test_outlinks_and_downloads(visitor: Visitor, site: Site) -> None:
    start = last_id(site)
    links = (
        '<a id="out" href="https://www.example.org/partners?ref=1">Partners</a>'
        '<a id="pdf" href="/site/files/report.pdf">Report</a>'
        '<a id="zip" href="/site/files/data.zip?v=2">Data</a>'
        '<a id="attr" href="/site/export" download>Export</a>'
        '<a id="classed" class="button matomo_download" href="/site/get?id=7">Get</a>'
        '<a id="inside" href="/site/about">About</a>'
        '<a id="ignored" class="piwik_ignore" href="https://www.example.org/secret">Ignored</a>'
        '<a id="mail" href="mailto:someone@example.org">Mail</a>'
        # The page stays put, so the test can click every link in turn.
        "<script>document.addEventListener('click', e => e.preventDefault());</script>"
    )
    page = visitor.open("/site/links", html("Links", snippet(site), links))
    for name in ("inside", "ignored", "mail", "out", "pdf", "zip", "attr", "classed"):
        page.click(f"#{name}")
    rows = wait_for(site, start, lambda r: count_of("outlink", 1)(r) and count_of("download", 4)(r))
    clicks = sorted((row["action"], row["url"]) for row in rows if row["action"] != "pageview")
    assert clicks == sorted(
        [
            ("outlink", "https://www.example.org/partners"),  # query cut: no consent
            ("download", f"{site.url}/site/files/report.pdf"),
            ("download", f"{site.url}/site/files/data.zip"),
            ("download", f"{site.url}/site/export"),
            ("download", f"{site.url}/site/get"),
        ]
    )
    # The page a link was clicked on is still known: the request's url, as in matomo.js.
    assert all(sent["url"] == f"{site.url}/site/links" for sent in visitor.sent)


def test_a_single_page_application_counts_each_route_once(visitor: Visitor, site: Site) -> None:
    start = last_id(site)
    page = visitor.open("/site/app/one", html("One", snippet(site)))
    wait_for(site, start, count_of("pageview", 1))
    # A route change the application does not report: tracked from the history change.
    page.evaluate("() => { history.pushState({}, '', '/site/app/two'); document.title = 'Two'; }")
    wait_for(site, start, count_of("pageview", 2))
    # One it also reports, as Matomo's guide for single-page applications says: counted once.
    page.evaluate(
        """() => {
        history.pushState({}, '', '/site/app/three');
        document.title = 'Three';
        _paq.push(['setCustomUrl', location.href]);
        _paq.push(['setDocumentTitle', 'Three']);
        _paq.push(['trackPageView']);
        }"""
    )
    wait_for(site, start, count_of("pageview", 3))
    # Replacing the state with the same address is no navigation.
    page.evaluate("() => history.replaceState({step: 3}, '', location.href)")
    # Reported later than the history change (after a fetch, say): still once.
    page.evaluate("() => history.pushState({}, '', '/site/app/four')")
    page.wait_for_timeout(400)
    page.evaluate("() => _paq.push(['setCustomUrl', location.href], ['trackPageView', 'Four'])")
    page.go_back()  # popstate: back on /site/app/three
    rows = wait_for(site, start, count_of("pageview", 5))
    page.wait_for_timeout(500)  # a duplicate would have landed by now
    views = [
        (row["url"].removeprefix(site.url), (row["referrer"] or "").removeprefix(site.url))
        for row in hits(site, start)
        if row["action"] == "pageview"
    ]
    assert views == [
        ("/site/app/one", ""),
        ("/site/app/two", "/site/app/one"),
        ("/site/app/three", "/site/app/two"),
        ("/site/app/four", "/site/app/three"),
        ("/site/app/three", "/site/app/four"),
    ]
    assert len({row["page_view_id"] for row in rows if row["action"] == "pageview"}) == 5


def test_custom_url_and_title(visitor: Visitor, site: Site) -> None:
    start = last_id(site)
    calls = (
        "_paq.push(['setCustomUrl', '/site/virtual/checkout?step=2&email=a%40b.example']);"
        "_paq.push(['setDocumentTitle', 'Checkout / Step 2']);"
    )
    page = visitor.open("/site/cart", html("Cart", snippet(site, calls)))
    page.evaluate("() => _paq.push(['trackEvent', 'Checkout', 'Next'])")
    rows = wait_for(site, start, lambda r: count_of("pageview", 1)(r) and count_of("event", 1)(r))
    view, event = sorted(rows, key=lambda row: row["action"] != "pageview")
    assert view["url"] == f"{site.url}/site/virtual/checkout"  # relative, resolved; query cut
    assert view["action_name"] == "Checkout / Step 2"
    assert event["url"] == view["url"]


def test_require_consent_holds_hits_until_consent_is_given(visitor: Visitor, site: Site) -> None:
    start = last_id(site)
    page = visitor.open(
        "/site/consent", html("Consent", snippet(site, "_paq.push(['requireConsent']);"))
    )
    page.evaluate("() => _paq.push(['trackEvent', 'Form', 'Open'])")
    page.wait_for_timeout(500)
    assert visitor.sent == [] and hits(site, start) == []
    page.evaluate("() => _paq.push(['rememberConsentGiven'])")  # Matomo's other name
    rows = wait_for(site, start, lambda r: len(r) >= 2)
    assert sorted(row["action"] for row in rows) == ["event", "pageview"]
    assert all(sent.get("consent") == "1" for sent in visitor.sent)
    # The page's consent is not the banner's recorded one: still measured without cookies.
    assert [row["consented"] for row in rows] == [0, 0]
    assert visitor.context.cookies() == []


def test_the_banners_consent_releases_hits_and_lets_the_server_set_its_cookie(
    visitor: Visitor, site: Site
) -> None:
    start = last_id(site)
    accept = site.config("en")["texts"]["accept"]
    banner = '<script src="/consent/gardien-consent.js" data-lang="en"></script>'
    calls = "_paq.push(['requireConsent']); _paq.push(['setCustomDimension', 2, 'nurse']);"
    page = visitor.open("/site/banner", html("Banner", banner + snippet(site, calls)))
    page.wait_for_selector(".gc-banner:not([hidden])")
    page.wait_for_timeout(300)
    assert hits(site, start) == [] and visitor.sent == []
    page.get_by_role("button", name=accept, exact=True).click()
    [view] = wait_for(site, start, count_of("pageview", 1))
    assert view["consented"] == 1 and view["consent_id"] is not None
    assert json.loads(view["dimensions"]) == {"dimension2": "nurse"}
    # With consent the server, not the script, set Matomo's visitor cookie: the page's own
    # later hits send the id it holds.
    jar = {c["name"]: c["value"] for c in visitor.context.cookies()}
    [visitor_cookie] = [name for name in jar if name.startswith("_pk_")]
    assert visitor_cookie.startswith("_pk_id.1.")
    assert view["visitor_id"] == jar[visitor_cookie][:16]
    page.evaluate("() => _paq.push(['trackEvent', 'After', 'Consent'])")
    page.evaluate("() => _paq.push(['setUserId', 'jeanne'], ['trackEvent', 'Signed', 'In'])")
    rows = wait_for(site, start, count_of("event", 2))
    assert all(sent["_id"] == jar[visitor_cookie][:16] for sent in visitor.sent[1:])
    after, signed = (next(r for r in rows if r["event_category"] == c) for c in ("After", "Signed"))
    assert after["visitor_id"] == jar[visitor_cookie][:16]
    # A user id wins, as in Matomo (sha1's first 16 hex), and is stored encrypted.
    assert signed["visitor_id"] == hashlib.sha1(b"jeanne").hexdigest()[:16]
    assert signed["user_id"] is not None and b"jeanne" not in signed["user_id"]


def test_banner_decision_already_made_is_read_from_its_cookie(visitor: Visitor, site: Site) -> None:
    """A later page: no banner script on it, only the decision's cookie, read by the tracker."""
    start = last_id(site)
    banner = '<script src="/consent/gardien-consent.js" data-lang="en"></script>'
    page = visitor.open("/site/first", html("First", banner), tracked=False)
    page.wait_for_selector(".gc-banner:not([hidden])")
    page.get_by_role("button", name=site.config("en")["texts"]["accept"], exact=True).click()
    page.wait_for_function("document.cookie.indexOf('gardien_consent=') >= 0")
    visitor.open("/site/second", html("Second", snippet(site, "_paq.push(['requireConsent']);")))
    [view] = wait_for(site, start, count_of("pageview", 1))
    assert view["url"] == f"{site.url}/site/second" and view["consented"] == 1


def test_opt_out_stops_the_tracker_and_the_server(visitor: Visitor, site: Site) -> None:
    start = last_id(site)
    page = visitor.open("/site/optout", html("Opt-out", snippet(site)))
    wait_for(site, start, count_of("pageview", 1))
    state = page.evaluate(
        """() => {
        const seen = [];
        _paq.push([function () { seen.push(this.isUserOptedOut()); }]);
        _paq.push(['optUserOut']);
        _paq.push([function () { seen.push(this.isUserOptedOut()); }]);
        _paq.push(['trackEvent', 'Opted', 'Out']);
        return seen;
        }"""
    )
    assert state == [False, True]
    [objection] = [c for c in visitor.context.cookies() if c["name"] == "gardien_optout"]
    assert objection["value"] == "1" and objection["path"] == "/"
    lifetime_days = (objection["expires"] - time.time()) / 86400
    assert 360 < lifetime_days < 400  # the register's P13M
    # Whatever sends the hit, the server refuses it: here a beacon the page sends by hand.
    sent_by_hand = page.evaluate(
        """url => navigator.sendBeacon(url + '/matomo.php?idsite=1&rec=1&send_image=0&url='
                + encodeURIComponent(location.href) + '&action_name=by%20hand')""",
        site.url,
    )
    assert sent_by_hand is True
    # On the next page, the objection is still known to the script.
    page = visitor.open("/site/optout-2", html("Still out", snippet(site)))
    assert page.evaluate("() => new Promise(done => _paq.push([function () {"
                         " done(this.isUserOptedOut()); }]))") is True  # fmt: skip
    # Back in: measured again.
    page.evaluate("() => _paq.push(['forgetUserOptOut'], ['trackEvent', 'Back', 'In'])")
    rows = wait_for(site, start, count_of("event", 1))
    page.wait_for_timeout(300)
    rows = hits(site, start)
    assert [(r["action"], r["event_category"]) for r in rows] == [
        ("pageview", None),
        ("event", "Back"),
    ]
    assert "gardien_optout" not in cookie_names(visitor.context)


def test_the_opt_out_page_silences_the_tracker_too(visitor: Visitor, site: Site) -> None:
    page = visitor.context.new_page()
    page.goto(f"{site.url}/analytics/opt-out?lang=en")
    page.locator("form button[type=submit]").click()
    page.wait_for_load_state()
    assert "gardien_optout" in cookie_names(visitor.context)  # http-only, set by the server
    start = last_id(site)
    page = visitor.open("/site/after-page-optout", html("After", snippet(site)))
    page.evaluate("() => _paq.push(['trackEvent', 'Still', 'Here'])")
    page.wait_for_timeout(800)
    assert len(visitor.sent) == 2  # the script cannot read the http-only cookie: it sends...
    assert hits(site, start) == []  # ...and the server refuses


def test_the_demo_page_is_measured_without_any_cookie(visitor: Visitor, site: Site) -> None:
    start = last_id(site)
    page = visitor.context.new_page()
    page.goto(f"{site.url}/?lang=en")
    page.wait_for_function(LOADED)
    [view] = wait_for(site, start, count_of("pageview", 1))
    assert view["url"] == f"{site.url}/" and view["action_name"] == page.title()
    assert view["consented"] == 0
    assert visitor.context.cookies() == []
    # The privacy policy link is inside the site: no outlink.
    page.evaluate("document.getElementById('demo-link').click()")
    page.wait_for_load_state()
    page.wait_for_timeout(300)
    assert [row["action"] for row in hits(site, start)] == ["pageview"]


def test_loaded_twice_counts_once(visitor: Visitor, site: Site) -> None:
    start = last_id(site)
    head = snippet(site) + f'<script src="{site.url}/gardien.js"></script>'
    page = visitor.open("/site/twice", html("Twice", head))
    page.wait_for_timeout(500)
    rows = wait_for(site, start, count_of("pageview", 1))
    assert len(rows) == 1
    page.evaluate("() => _paq.push(['trackEvent', 'Once', 'Only'])")
    rows = wait_for(site, start, count_of("event", 1))
    page.wait_for_timeout(300)
    assert [row["action"] for row in hits(site, start)] == ["pageview", "event"]


def test_gardien_js_alone_sends_to_the_endpoint_next_to_it(visitor: Visitor, site: Site) -> None:
    """Without setTrackerUrl: the script's own directory, as a site new to Matomo would use."""
    start = last_id(site)
    head = (
        "<script>window._paq = [['setSiteId', 1], ['trackPageView']];</script>"
        f'<script src="{site.url}/gardien.js"></script>'
    )
    visitor.open("/site/plain", html("Plain", head))
    [view] = wait_for(site, start, count_of("pageview", 1))
    assert view["url"] == f"{site.url}/site/plain"
    assert visitor.sent[0]["idsite"] == "1"


def test_disable_cookies_keeps_a_consenting_visitor_without_cookie(
    visitor: Visitor, site: Site
) -> None:
    """``disableCookies`` sends matomo.js's ``cookie=0``: the server sets no visitor cookie even
    though the banner recorded the visitor's consent."""
    start = last_id(site)
    banner = '<script src="/consent/gardien-consent.js" data-lang="en"></script>'
    calls = "_paq.push(['requireConsent']); _paq.push(['disableCookies']);"
    page = visitor.open("/site/no-cookies", html("No cookies", banner + snippet(site, calls)))
    page.wait_for_selector(".gc-banner:not([hidden])")
    page.get_by_role("button", name=site.config("en")["texts"]["accept"], exact=True).click()
    [view] = wait_for(site, start, count_of("pageview", 1))
    assert view["consented"] == 1 and visitor.sent[0]["cookie"] == "0"
    assert cookie_names(visitor.context) == {"gardien_consent"}


def test_without_send_beacon_an_image_request_carries_the_hit(visitor: Visitor, site: Site) -> None:
    visitor.context.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'sendBeacon', {value: undefined})"
    )
    methods: list[str] = []
    visitor.context.on(
        "request",
        lambda r: methods.append(r.method) if urlparse(r.url).path == "/matomo.php" else None,
    )
    start = last_id(site)
    page = visitor.open("/site/old-browser", html("Old browser", snippet(site)))
    assert page.evaluate("navigator.sendBeacon === undefined")
    [view] = wait_for(site, start, count_of("pageview", 1))
    assert view["url"] == f"{site.url}/site/old-browser" and methods == ["GET"]


def test_the_older_piwik_snippet_works_too(visitor: Visitor, site: Site) -> None:
    """Sites set up before Matomo 3.7 load piwik.js and send to piwik.php."""
    start = last_id(site)
    visitor.open("/site/piwik", html("Piwik", snippet(site, script="piwik")))
    [view] = wait_for(site, start, count_of("pageview", 1))
    assert view["url"] == f"{site.url}/site/piwik" and view["action_name"] == "Piwik"
    assert len(visitor.sent) == 1
