"""``/gardien.js``, ``/matomo.js`` and ``/piwik.js``: one script under three names, within its
size budget, cached with an ``ETag``, carrying the register's opt-out lifetime; and the server
side of ``disableCookies`` (``cookie=0``: no visitor cookie even with consent)."""

from __future__ import annotations

import gzip
import hashlib
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gardien.analytics.models import AnalyticsHit
from gardien.analytics.tracker import BUILD, SOURCE
from gardien.consent.service import current_revision
from gardien.deps import State
from gardien.register.durations import parse_period
from gardien.storage.clock import FrozenClock

BUDGET = 2_000
"""docs/analytics.md: the tracker at most 2,000 bytes gzipped (matomo.js: 21,877)."""
PATHS = ("/gardien.js", "/matomo.js", "/piwik.js")
API = (
    "setTrackerUrl setSiteId trackPageView trackEvent trackSiteSearch trackLink "
    "enableLinkTracking setCustomDimension setUserId setCustomUrl setDocumentTitle "
    "setReferrerUrl requireConsent setConsentGiven forgetConsentGiven optUserOut "
    "forgetUserOptOut isUserOptedOut disableCookies"
).split()


def gzipped(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def test_the_three_names_serve_one_script(client: TestClient) -> None:
    answers = [client.get(path, headers={"accept-encoding": "identity"}) for path in PATHS]
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.content for answer in answers}) == 1
    answer = answers[0]
    assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
    assert answer.headers["cache-control"] == "public, max-age=3600"
    assert re.fullmatch(r'"[0-9a-f]{32}"', answer.headers["etag"])
    # The committed build without its first line (the staleness header), nothing else changed
    # but the opt-out lifetime.
    build = BUILD.read_text(encoding="utf-8").split("\n", 1)[1]
    served = answer.text
    assert served.startswith("!function") and "sha256:" not in served
    assert re.sub(r"Max-Age=\d+", "", served) == re.sub(
        r"Max-Age=(__GARDIEN_OPTOUT_MAX_AGE__|\d+)", "", build
    )


def test_within_the_size_budget_gzipped(client: TestClient) -> None:
    served = client.get("/gardien.js", headers={"accept-encoding": "identity"}).content
    assert gzipped(served) <= BUDGET, f"{gzipped(served)} bytes gzipped, budget {BUDGET}"
    packed = client.get("/gardien.js", headers={"accept-encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.content == served  # httpx decoded it: the same script
    assert int(packed.headers["content-length"]) <= BUDGET


def test_revalidation_answers_304_without_a_body(client: TestClient) -> None:
    etag = client.get("/matomo.js").headers["etag"]
    again = client.get("/matomo.js", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert client.get("/piwik.js", headers={"if-none-match": f"W/{etag}"}).status_code == 304
    other = client.get("/gardien.js", headers={"if-none-match": '"0123"'})
    assert other.status_code == 200 and other.content


def test_the_opt_out_cookie_lives_as_long_as_the_register_says(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    served = client.get("/gardien.js").text
    assert "__GARDIEN_OPTOUT_MAX_AGE__" not in served
    declared = next(c.duration for c in state.register.cookies if c.name == "gardien_optout")
    now = clock.now()
    expected = int((parse_period(declared).after(now) - now).total_seconds())
    assert declared == "P13M"
    assert f'"=1;Max-Age={expected};' in served.replace('")', ";")


def test_the_script_keeps_every_name_a_page_calls_and_reaches_no_third_party() -> None:
    build = BUILD.read_text(encoding="utf-8")
    missing = [name for name in API if name not in build]
    assert missing == []
    names = ("_paq", "gardien:consent", "gardien_consent", "gardien_optout", "sendBeacon")
    for name in (*names, "rememberConsentGiven"):
        assert name in build
    assert re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", build) == []
    assert "webdriver" not in build and "localStorage" not in build
    # Every method the source defines is one of the documented ones.
    defined = set(re.findall(r"^ {4}(\w+): function", SOURCE.read_text(), flags=re.M))
    assert defined - {"push"} == set(API)


# -- disableCookies on the server: cookie=0 ---------------------------------------------------

PAGE = "https://www.cegedim-rx.ro/produse"


def consent(client: TestClient, state: State, clock: FrozenClock) -> None:
    revision = current_revision(state).number
    decided = int(clock.now().timestamp()) - 60
    client.cookies.set(
        "gardien_consent", f"1:{'0123456789abcdef' * 2}:{revision}:{decided}:audience_measurement=1"
    )


@pytest.mark.parametrize(("flag", "cookie_set"), [("0", False), ("1", True), (None, True)])
def test_cookie_zero_keeps_a_consenting_visitor_cookieless(
    visitor: TestClient, state: State, clock: FrozenClock, flag: str | None, cookie_set: bool
) -> None:
    consent(visitor, state, clock)
    params: dict[str, str | int] = {"idsite": 1, "rec": 1, "url": PAGE}
    if flag is not None:
        params["cookie"] = flag
    answer = visitor.get("/matomo.php", params=params)
    assert answer.status_code == 200
    assert ("set-cookie" in answer.headers) is cookie_set
    with state.sessions() as session:
        [hit] = session.scalars(select(AnalyticsHit))
    assert hit.consented == 1
    if not cookie_set:
        # An existing visitor cookie is not read either: the visitor stays cookieless.
        host = hashlib.sha1(b"www.cegedim-rx.ro/", usedforsecurity=False).hexdigest()[:4]
        visitor.cookies.set(f"_pk_id.1.{host}", "fedcba9876543210.1700000000.")
        visitor.get("/matomo.php", params=params)
        with state.sessions() as session:
            ids = list(session.scalars(select(AnalyticsHit.visitor_id).order_by(AnalyticsHit.id)))
        assert ids[1] != "fedcba9876543210" and ids[0] == ids[1]
