"""What decides whether a hit is stored, and how: consent's visitor cookie, opt-outs (Gardien's,
Matomo's, GPC, Do Not Track), robots, restrictions and objections, the authenticated ``cip`` and
``cdt``, the site's anonymisation level, CORS, and a database that fails."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from gardien.analytics.blocks import block_list
from gardien.analytics.models import AnalyticsBlock, AnalyticsHit
from gardien.analytics.privacy import anonymise_ip
from gardien.analytics.store import AnalyticsProvider
from gardien.consent.service import current_revision
from gardien.deps import State
from gardien.storage.clock import FrozenClock
from gardien.storage.subjects import SubjectIdentity
from tests.security.signin import create_token, signed_in

PAGE = "https://www.cegedim-rx.ro/produse"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CONSENT_ID = "0123456789abcdef0123456789abcdef"

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def params(**extra: Any) -> dict[str, Any]:
    return {"idsite": 1, "rec": 1, "url": PAGE, "action_name": "Produse", **extra}


def hits(state: State) -> list[AnalyticsHit]:
    with state.sessions() as session:
        return list(session.scalars(select(AnalyticsHit).order_by(AnalyticsHit.id)))


def consent(client: TestClient, state: State, clock: FrozenClock, granted: bool = True) -> None:
    revision = current_revision(state).number
    decided = int(clock.now().timestamp()) - 60
    flag = "1" if granted else "0"
    client.cookies.set(
        "gardien_consent", f"1:{CONSENT_ID}:{revision}:{decided}:audience_measurement={flag}"
    )


# -- consent: the visitor cookie --------------------------------------------------------------


def test_consent_sets_the_visitor_cookie_once_for_the_declared_lifetime(
    visitor: TestClient, state: State, clock: FrozenClock
) -> None:
    consent(visitor, state, clock)
    first = visitor.get("/matomo.php", params=params())
    assert first.status_code == 200
    cookie = first.headers["set-cookie"]
    match = re.match(r"(_pk_id\.1\.[0-9a-f]{4})=([0-9a-f]{16})\.(\d+)\.;", cookie)
    assert match, cookie
    # Declared P6M in the register, and the consent (6 months) was given a minute ago.
    max_age = int(re.search(r"Max-Age=(\d+)", cookie).group(1))  # type: ignore[union-attr]
    assert 181 * 86400 - 120 <= max_age <= 184 * 86400
    assert "samesite=lax" in cookie.lower() and "httponly" not in cookie.lower()
    clock.advance(dt.timedelta(hours=1))
    again = visitor.get("/matomo.php", params=params(action_name="Second"))
    assert "set-cookie" not in again.headers  # never extended
    first_hit, second_hit = hits(state)
    assert first_hit.visitor_id == second_hit.visitor_id == match.group(2)
    assert first_hit.consented == 1


def test_without_consent_no_cookie_is_set_and_a_refusal_is_cookieless(
    visitor: TestClient, state: State, clock: FrozenClock
) -> None:
    assert "set-cookie" not in visitor.get("/matomo.php", params=params()).headers
    consent(visitor, state, clock, granted=False)
    refused = visitor.get("/matomo.php", params=params(_id="0123456789abcdef"))
    assert "set-cookie" not in refused.headers
    assert [h.consented for h in hits(state)] == [0, 0]
    assert hits(state)[1].visitor_id != "0123456789abcdef"


# -- opt-outs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cookies", "headers"),
    [
        ({"gardien_optout": "1"}, {}),
        ({"mtm_consent_removed": "1700000000000"}, {}),
        ({}, {"sec-gpc": "1"}),
        ({}, {"dnt": "1"}),
        ({}, {"x-do-not-track": "1"}),
    ],
    ids=["gardien-opt-out", "matomo-opt-out", "gpc", "dnt", "x-do-not-track"],
)
def test_an_objection_is_answered_like_a_hit_and_not_stored(
    visitor: TestClient, state: State, cookies: dict[str, str], headers: dict[str, str]
) -> None:
    for name, value in cookies.items():
        visitor.cookies.set(name, value)
    single = visitor.get("/matomo.php", params=params(), headers=headers)
    beacon = visitor.post("/matomo.php?" + urlencode(params(send_image=0)), headers=headers)
    bulk = visitor.post(
        "/matomo.php",
        content=json.dumps({"requests": ["?" + urlencode(params())]}),
        headers=headers,
    )
    assert single.status_code == 200 and single.headers["content-type"] == "image/gif"
    assert beacon.status_code == 204
    assert bulk.json() == {"status": "success", "tracked": 1, "invalid": 0}
    assert hits(state) == []
    if "dnt" in headers:
        assert single.headers["tk"] == "N"


@pytest.mark.parametrize("site_changes", [{"honour_do_not_track": False}])
def test_do_not_track_is_ignored_when_the_register_does_not_honour_it(
    visitor: TestClient, state: State
) -> None:
    response = visitor.get("/matomo.php", params=params(), headers={"dnt": "1"})
    assert response.status_code == 200 and "tk" not in response.headers
    assert len(hits(state)) == 1
    policy = visitor.get("/privacy?lang=en").text
    assert "Global Privacy Control signal is honoured" in policy
    assert "or Do Not Track signal is honoured" not in policy  # only what the register does


# -- robots -----------------------------------------------------------------------------------


def test_robots_are_left_out_unless_bots_1(visitor: TestClient, state: State) -> None:
    for agent in (GOOGLEBOT, "curl/8.5.0", "python-requests/2.32.3"):
        response = visitor.get("/matomo.php", params=params(), headers={"user-agent": agent})
        assert response.status_code == 200 and response.content.startswith(b"GIF89a")
    assert visitor.get("/matomo.php", params=params(ua=GOOGLEBOT)).status_code == 200
    assert hits(state) == []
    assert visitor.get("/matomo.php", params=params(ua=GOOGLEBOT, bots=1)).status_code == 200
    assert [h.user_agent for h in hits(state)] == [GOOGLEBOT]


# -- the parameters Matomo's other clients send ----------------------------------------------


def test_deprecated_parameters_are_accepted_and_ignored(visitor: TestClient, state: State) -> None:
    old_sdk = params(_idts="1500000000", _viewts="1500000001", _idvc="7", _ects="x", send_image=0)
    assert visitor.get("/matomo.php", params=old_sdk).status_code == 204
    assert len(hits(state)) == 1


def test_ping_custom_action_and_page_view_id(visitor: TestClient, state: State) -> None:
    assert visitor.get("/matomo.php", params=params(pv_id="a1B2c3")).status_code == 200
    assert visitor.get("/matomo.php", params=params(pv_id="a1B2c3", ping=1)).status_code == 200
    assert visitor.get("/matomo.php", params=params(ca=1, pv_id="bad id!")).status_code == 200
    assert [(h.action, h.page_view_id) for h in hits(state)] == [
        ("pageview", "a1B2c3"),
        ("ping", "a1B2c3"),
        ("other", None),
    ]


def test_an_image_without_url_reports_its_page_through_referer(
    visitor: TestClient, state: State
) -> None:
    response = visitor.get("/matomo.php?idsite=1&rec=1", headers={"referer": PAGE + "?x=1"})
    assert response.status_code == 200
    [hit] = hits(state)
    assert hit.url == PAGE  # the query string is cut without consent, as for url
    assert visitor.get("/matomo.php?idsite=1&rec=1").status_code == 400


def test_cors_for_the_registers_sites_only(visitor: TestClient) -> None:
    origin = "https://www.cegedim-rx.ro"
    beacon = visitor.post(
        "/matomo.php?" + urlencode(params(send_image=0)), headers={"origin": origin}
    )
    assert beacon.headers["access-control-allow-origin"] == origin
    assert beacon.headers["access-control-allow-credentials"] == "true"
    foreign = visitor.post(
        "/matomo.php?" + urlencode(params(send_image=0)), headers={"origin": "https://evil.test"}
    )
    assert "access-control-allow-origin" not in foreign.headers
    preflight = visitor.options(
        "/matomo.php",
        headers={"origin": origin, "access-control-request-method": "POST"},
    )
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["access-control-allow-methods"]


# -- token_auth: cip and cdt ------------------------------------------------------------------


def test_cip_and_cdt_need_an_import_token(
    visitor: TestClient, client: TestClient, state: State, clock: FrozenClock
) -> None:
    dpo = signed_in(client, state, clock, "dpo@example.org", "dpo")
    importer = create_token(dpo, "log importer", "dpo")
    reader = create_token(dpo, "reports", "auditor")
    when = clock.now() - dt.timedelta(days=3)
    backfill = params(cip="198.51.100.77", cdt=when.strftime("%Y-%m-%d %H:%M:%S"), send_image=0)

    assert visitor.get("/matomo.php", params=backfill).status_code == 400
    refused = visitor.get("/matomo.php", params={**backfill, "token_auth": reader})
    assert refused.status_code == 400 and "token_auth" in refused.text
    assert (
        visitor.get("/matomo.php", params={**backfill, "token_auth": "gdn_nope"}).status_code == 400
    )
    assert hits(state) == []

    assert (
        visitor.get("/matomo.php", params={**backfill, "token_auth": importer}).status_code == 204
    )
    [hit] = hits(state)
    assert hit.network == "198.51.0.0"
    assert hit.received_at.replace(tzinfo=dt.UTC) == when.replace(microsecond=0)

    # A backfill cannot revive what retention purged, nor come from the future.
    too_old = (clock.now() - dt.timedelta(days=200)).strftime("%Y-%m-%d %H:%M:%S")
    stale = visitor.get("/matomo.php", params={**backfill, "cdt": too_old, "token_auth": importer})
    assert stale.status_code == 400 and "retention" in stale.text
    future = str(int((clock.now() + dt.timedelta(hours=2)).timestamp()))
    ahead = visitor.get("/matomo.php", params={**backfill, "cdt": future, "token_auth": importer})
    assert ahead.status_code == 400
    malformed = visitor.get(
        "/matomo.php", params={**backfill, "cdt": "yesterday", "token_auth": importer}
    )
    assert malformed.status_code == 400
    assert len(hits(state)) == 1

    # In bulk, the body's token_auth; an authenticated sender also learns which were invalid.
    bulk = visitor.post(
        "/matomo.php",
        content=json.dumps(
            {
                "token_auth": importer,
                "requests": [
                    "?" + urlencode(backfill),
                    "?" + urlencode({**backfill, "cdt": too_old}),
                ],
            }
        ),
    )
    assert bulk.json() == {"status": "success", "tracked": 1, "invalid": 1, "invalid_indices": [1]}


# -- anonymisation level ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("site_changes", "ipv4", "ipv6"),
    [
        ({"ip_masked_bytes": 1}, "203.0.113.0", "2001:db8:85a3:8d3::"),
        ({"ip_masked_bytes": 2}, "203.0.0.0", "2001:db8:85a3::"),
        ({"ip_masked_bytes": 3}, "203.0.0.0", "2001:d00::"),
        ({"ip_masked_bytes": 4}, "0.0.0.0", "::"),
    ],
)
@sqlite_only
def test_the_sites_anonymisation_level(
    visitor: TestClient, state: State, site_changes: dict[str, int], ipv4: str, ipv6: str
) -> None:
    masked = site_changes["ip_masked_bytes"]
    assert anonymise_ip("2001:db8:85a3:8d3:1319:8a2e:370:7348", masked) == ipv6
    assert visitor.get("/matomo.php", params=params()).status_code == 200
    [hit] = hits(state)
    assert hit.network == ipv4


# -- restriction and objection ---------------------------------------------------------------


def test_restriction_and_objection_stop_further_hits(
    visitor: TestClient, state: State, clock: FrozenClock
) -> None:
    consent(visitor, state, clock)
    provider = AnalyticsProvider()
    tracked = params(uid="jeanne@example.org", send_image=0)
    assert visitor.get("/matomo.php", params=tracked).status_code == 204
    with state.sessions.begin() as session:
        assert provider.restrict(session, SubjectIdentity(visitor_id="jeanne@example.org"), True)
    assert visitor.get("/matomo.php", params=tracked).status_code == 204  # answered alike
    assert len(hits(state)) == 1
    with state.sessions() as session:
        stored = session.scalars(select(AnalyticsBlock.key)).all()
    assert "user:jeanne@example.org" in stored

    with state.sessions.begin() as session:
        provider.restrict(session, SubjectIdentity(visitor_id="jeanne@example.org"), False)
    assert visitor.get("/matomo.php", params=tracked).status_code == 204
    assert len(hits(state)) == 2

    with state.sessions.begin() as session:
        assert (
            provider.object(session, SubjectIdentity(consent_id=CONSENT_ID), "contact_forms") == 0
        )
        assert (
            provider.object(session, SubjectIdentity(consent_id=CONSENT_ID), "audience_measurement")
            == 1
        )
    assert visitor.get("/matomo.php", params=params(send_image=0)).status_code == 204
    assert len(hits(state)) == 2


def test_a_block_recorded_elsewhere_holds_once_the_copy_is_refreshed(
    visitor: TestClient, state: State, clock: FrozenClock
) -> None:
    consent(visitor, state, clock)
    assert visitor.get("/matomo.php", params=params(send_image=0)).status_code == 204
    with state.sessions.begin() as session:  # as another instance would: no local forget
        from gardien.analytics.blocks import OBJECTION, add_blocks

        add_blocks(session, [f"consent:{CONSENT_ID}"], OBJECTION, clock.now())
    block_list.forget(state.engine)  # what REFRESH seconds do on every instance
    assert visitor.get("/matomo.php", params=params(send_image=0)).status_code == 204
    assert len(hits(state)) == 1


# -- failures ---------------------------------------------------------------------------------


@sqlite_only
def test_a_failing_database_is_a_503_not_an_acknowledgement(
    visitor: TestClient, state: State
) -> None:
    assert visitor.get("/matomo.php", params=params()).status_code == 200
    with state.engine.begin() as connection:
        connection.execute(text("ALTER TABLE analytics_hit RENAME TO analytics_hit_away"))
    try:
        failed = visitor.get("/matomo.php", params=params(send_image=0))
        assert failed.status_code == 503 and failed.headers["retry-after"]
        bulk = visitor.post(
            "/matomo.php", content=json.dumps({"requests": ["?" + urlencode(params())]})
        )
        assert bulk.status_code == 503
    finally:
        with state.engine.begin() as connection:
            connection.execute(text("ALTER TABLE analytics_hit_away RENAME TO analytics_hit"))
    assert len(hits(state)) == 1


def test_a_hit_and_its_connection_log_row_share_one_commit(
    visitor: TestClient, state: State
) -> None:
    from gardien.security.connection_log import ConnectionLogEntry

    assert visitor.post("/matomo.php?" + urlencode(params(send_image=0))).status_code == 204
    before = state.writer.batches
    assert visitor.post("/matomo.php?" + urlencode(params(send_image=0))).status_code == 204
    assert state.writer.batches == before + 1  # not one for the hit and one for the log
    with state.sessions() as session:
        logged = session.scalars(
            select(ConnectionLogEntry.status).where(ConnectionLogEntry.path == "/matomo.php")
        ).all()
    assert logged == [204, 204]  # each request logged once, with the status it got
    assert len(hits(state)) == 2
    excluded = visitor.get("/matomo.php", params=params(), headers={"sec-gpc": "1"})
    assert excluded.status_code == 200
    with state.sessions() as session:
        count = session.scalar(select(func.count()).where(ConnectionLogEntry.path == "/matomo.php"))
    assert count == 3  # an excluded hit writes no row of its own but is still logged
