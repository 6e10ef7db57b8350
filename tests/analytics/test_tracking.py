"""``/matomo.php`` and ``/piwik.php`` with each request shape the Matomo trackers send."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gardien.analytics.models import AnalyticsHit
from gardien.analytics.tracking import parse_params
from gardien.config import Settings
from gardien.deps import State
from gardien.storage.clock import FrozenClock
from tests.analytics.conftest import IP, UA

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAAAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
PAGE = "https://www.cegedim-rx.ro/produse?utm_source=news&email=jeanne%40example.org&q=pharma"

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def params(**extra: Any) -> dict[str, Any]:
    base = {"idsite": 1, "rec": 1, "url": PAGE, "action_name": "Produse", "res": "1920x1080"}
    return {**base, **extra}


def hits(state: State) -> list[AnalyticsHit]:
    with state.sessions() as session:
        return list(session.scalars(select(AnalyticsHit).order_by(AnalyticsHit.id)))


def test_get_answers_the_gif_and_stores_a_cookieless_pageview(
    visitor: TestClient, state: State, clock: FrozenClock
) -> None:
    response = visitor.get("/matomo.php", params=params(_id="0123456789abcdef", uid="jeanne"))
    assert response.status_code == 200
    assert response.content == GIF and len(GIF) == 43
    assert response.headers["content-type"] == "image/gif"
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers
    [hit] = hits(state)
    assert (hit.site_id, hit.action, hit.action_name) == (1, "pageview", "Produse")
    assert hit.url == "https://www.cegedim-rx.ro/produse?utm_source=news&q=pharma"
    assert hit.network == "203.0.0.0"
    assert hit.received_at == clock.now()
    assert hit.resolution == "1920x1080" and hit.user_agent == UA
    assert len(hit.visitor_id) == 16 and hit.visitor_id != "0123456789abcdef"
    assert (hit.user_id, hit.consent_id, hit.dimensions, hit.consented) == (None, None, None, 0)


def test_post_shapes_piwik_path_and_send_image_0(visitor: TestClient, state: State) -> None:
    form = visitor.post(
        "/piwik.php",
        content=urlencode(params(e_c="video", e_a="play", e_n="intro", e_v="1.5")),
        headers={"content-type": "application/x-www-form-urlencoded; charset=UTF-8"},
    )
    assert form.status_code == 200 and form.content == GIF
    beacon = visitor.post(
        "/matomo.php?" + urlencode(params(search="ordonnance", search_count=3, send_image=0)),
        content=b"",
    )
    assert beacon.status_code == 204 and beacon.content == b""
    link = visitor.get(
        "/matomo.php", params=params(link="https://example.net/out?x=1", send_image=0)
    )
    download = visitor.get(
        "/matomo.php", params=params(download="https://www.cegedim-rx.ro/a.pdf", send_image=0)
    )
    assert link.status_code == download.status_code == 204
    event, search, outlink, pdf = hits(state)
    assert (event.action, event.event_category, event.event_action) == ("event", "video", "play")
    assert (event.event_name, event.event_value) == ("intro", 1.5)
    assert (search.action, search.search_keyword, search.search_count) == (
        "search",
        "ordonnance",
        3,
    )
    assert (outlink.action, outlink.url) == ("outlink", "https://example.net/out")
    assert (pdf.action, pdf.url) == ("download", "https://www.cegedim-rx.ro/a.pdf")


def test_bulk_counts_tracked_and_invalid_whatever_the_content_type(
    visitor: TestClient, state: State
) -> None:
    body = {
        "requests": [
            "?" + urlencode(params()),
            "?" + urlencode(params(idsite=99)),
            "?" + urlencode(params(url="https://evil.example/")),
            {"idsite": "1", "rec": "1", "url": "http://localhost/x"},
            "?idsite=1&rec=1&url=%ff",
            42,
        ]
    }
    response = visitor.post(
        "/matomo.php",
        content=json.dumps(body),
        headers={"content-type": "application/x-www-form-urlencoded; charset=UTF-8"},
    )
    assert response.status_code == 200
    assert response.json() == {"status": "success", "tracked": 2, "invalid": 4}
    assert [h.url for h in hits(state)] == [
        "https://www.cegedim-rx.ro/produse?utm_source=news&q=pharma",
        "http://localhost/x",
    ]
    quiet = visitor.post("/matomo.php", content=json.dumps({**body, "send_image": 0}))
    assert quiet.status_code == 204
    broken = visitor.post("/matomo.php", content=b'{"requests": [')
    assert broken.status_code == 400 and broken.json()["status"] == "error"


@pytest.mark.parametrize(
    "query",
    [
        {"rec": 1, "url": PAGE},
        {"idsite": 1, "url": PAGE},
        {"idsite": 7, "rec": 1, "url": PAGE},
        {"idsite": "x", "rec": 1, "url": PAGE},
        {"idsite": 1, "rec": 1, "url": "https://evil.example/"},
        {"idsite": 1, "rec": 1, "url": "javascript:alert(1)"},
        {"idsite": 1, "rec": 1, "url": "https://www.cegedim-rx.ro/" + "a" * 3000},
        {"idsite": 1, "rec": 1, "url": PAGE, "res": "big"},
        {"idsite": 1, "rec": 1, "url": PAGE, "e_c": "a", "e_a": "b", "e_v": "nan"},
        {"idsite": 1, "rec": 1, "url": PAGE, "h": "25"},
        {"idsite": 1, "rec": 1, "url": PAGE, "cid": "zz"},
        {"idsite": 1, "rec": 1, "url": PAGE, "cip": "198.51.100.1"},
        {"idsite": 1, "rec": 1, "url": PAGE, "cdt": "2020-01-01 00:00:00"},
    ],
)
def test_invalid_requests_get_400_and_store_nothing(
    visitor: TestClient, state: State, query: dict[str, Any]
) -> None:
    response = visitor.get("/matomo.php", params=query)
    assert response.status_code == 400
    assert hits(state) == []


def test_invalid_utf8_and_bare_requests(visitor: TestClient, state: State) -> None:
    assert (
        visitor.get("/matomo.php?idsite=1&rec=1&url=http%3A%2F%2Flocalhost%2F%ff").status_code
        == 400
    )
    bare = visitor.get("/matomo.php")
    assert bare.status_code == 200 and "Gardien" in bare.text
    assert visitor.post("/matomo.php", content=b"").status_code == 400
    assert hits(state) == []


def test_the_cookieless_id_is_stable_within_a_day_and_changes_the_next(
    visitor: TestClient, state: State, clock: FrozenClock
) -> None:
    for _ in range(2):
        assert visitor.get("/matomo.php", params=params(send_image=0)).status_code == 204
    clock.advance(dt.timedelta(days=1))
    assert visitor.get("/matomo.php", params=params(send_image=0)).status_code == 204
    assert visitor.get("/matomo.php", params=params(send_image=0, ua="Other")).status_code == 204
    first, second, next_day, other_agent = [h.visitor_id for h in hits(state)]
    assert first == second
    assert next_day != first
    assert other_agent != next_day


def test_consent_keeps_the_tracker_ids_and_dimensions(
    visitor: TestClient, state: State, clock: FrozenClock
) -> None:
    from gardien.consent.service import current_revision

    revision = current_revision(state).number
    consent_id = "0123456789abcdef0123456789abcdef"
    decided = int(clock.now().timestamp()) - 60
    visitor.cookies.set(
        "gardien_consent", f"1:{consent_id}:{revision}:{decided}:audience_measurement=1"
    )
    response = visitor.get(
        "/matomo.php",
        params=params(_id="0123456789ABCDEF", uid="jeanne", dimension1="pro", send_image=0),
    )
    assert response.status_code == 204
    [hit] = hits(state)
    assert hit.consented == 1
    assert hit.url == PAGE
    assert (hit.user_id, hit.consent_id, hit.dimensions) == (
        "jeanne",
        consent_id,
        {"dimension1": "pro"},
    )
    assert hit.visitor_id != "0123456789abcdef"  # uid wins over _id, as in Matomo


@sqlite_only
def test_no_raw_ip_reaches_the_database_file(
    visitor: TestClient, state: State, settings: Settings
) -> None:
    for n in range(3):
        visitor.get("/matomo.php", params=params(action_name=f"page {n}"))
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AnalyticsHit)) == 3
    database = Path(settings.resolved_database_url.split("///", 1)[1])
    files = [database, database.with_name(database.name + "-wal")]
    data = b"".join(path.read_bytes() for path in files if path.exists())
    assert b"page 2" in data  # the scan sees the latest writes
    for spelling in (IP, IP.replace(".", ""), "203.0.113"):
        assert spelling.encode() not in data
        assert spelling.encode("utf-16-le") not in data


def test_many_hits_are_not_refused_by_the_public_write_budgets(
    visitor: TestClient, state: State
) -> None:
    statuses = {
        visitor.post("/matomo.php?" + urlencode(params(send_image=0))).status_code
        for _ in range(70)
    }
    assert statuses == {204}


def test_parse_params_is_strict() -> None:
    assert parse_params(b"a=1&a=2&b=") == {"a": "1", "b": ""}
    for bad in (b"a=%ff", b"\xff=1", b"a=" + b"x" * 9000, b"a=%00"):
        with pytest.raises(ValueError, match="parameter"):
            parse_params(bad)


def test_gpc_hits_are_answered_alike_and_not_stored(visitor: TestClient, state: State) -> None:
    gpc = {"sec-gpc": "1"}
    single = visitor.get("/matomo.php", params=params(), headers=gpc)
    assert single.status_code == 200 and single.content == GIF
    bulk = visitor.post(
        "/matomo.php", content=json.dumps({"requests": ["?" + urlencode(params())]}), headers=gpc
    )
    assert bulk.json() == {"status": "success", "tracked": 1, "invalid": 0}
    assert hits(state) == []
    assert visitor.get("/matomo.php", params=params()).status_code == 200
    assert len(hits(state)) == 1
