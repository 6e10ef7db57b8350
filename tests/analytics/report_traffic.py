"""A small, known traffic for the report tests (API, dashboard, CLI): raw hits inserted as
the tracking endpoint stores them, the rollups brought up to date, the figures worked out by
hand.

Range ``FIRST``..``LAST`` (2026-01-13..14), seen from the tests' clock (2026-01-15 09:30):

- visitor a, 13th: ``/`` from a Google search at 10:00, ``/contact`` at 10:02, an event at
  10:03: one visit, 2 page views, 3 actions, 180 s;
- visitor b, 13th: ``/`` at 11:00 and nothing else: one visit, a bounce, 0 s;
- visitor c, 14th: ``/produse?x=1`` at 09:00 (campaign ``winter``), ``/contact`` at 09:01, a
  site search at 09:02, an outlink at 09:05, a download at 09:06: one visit, 2 page views,
  360 s.

The period before (2026-01-11..12) has visitor d's single page view on the 11th.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert

from gardien.analytics.models import analytics_hit
from gardien.analytics.reports import refresh_rollups
from gardien.deps import State

FIRST = dt.date(2026, 1, 13)
LAST = dt.date(2026, 1, 14)
BEFORE = dt.date(2026, 1, 11)
HOME = "https://www.cegedim-rx.ro/"
CONTACT = "https://www.cegedim-rx.ro/contact"
PRODUCTS = "https://www.cegedim-rx.ro/produse"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

EXPECTED = {
    "visits": 3,
    "visitors": 3,
    "pageviews": 5,
    "bounces": 1,
    "time_on_site": 540,
    "events": 1,
    "searches": 1,
    "outlinks": 1,
    "downloads": 1,
}
"""The range's totals, counted by hand from the hits below."""
EXPECTED_DAYS = {FIRST: (2, 2, 3), LAST: (1, 1, 2)}
"""Per day: visits, unique visitors, page views."""
PREVIOUS = {"visits": 1, "visitors": 1, "pageviews": 1, "bounces": 1}


def _at(day: dt.date, hour: int, minute: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), dt.UTC)


def _hit(visitor: str, when: dt.datetime, action: str, url: str, **fields: Any) -> dict[str, Any]:
    return {
        "site_id": 1,
        "received_at": when,
        "visitor_id": visitor * 16,
        "network": "203.0.0.0",
        "user_agent": FIREFOX,
        "language": "fr-fr",
        "action": action,
        "url": url,
        "new_visit": 0,
        "consented": 0,
        "referrer": None,
        "event_category": None,
        "event_action": None,
        "event_name": None,
        "search_keyword": None,
    } | fields


HITS = [
    _hit("a", _at(FIRST, 10, 0), "pageview", HOME, referrer="https://www.google.com/search?q=rx"),
    _hit("a", _at(FIRST, 10, 2), "pageview", CONTACT),
    _hit(
        "a",
        _at(FIRST, 10, 3),
        "event",
        CONTACT,
        event_category="cta",
        event_action="click",
        event_name="call",
    ),
    _hit("b", _at(FIRST, 11, 0), "pageview", HOME),
    _hit("c", _at(LAST, 9, 0), "pageview", PRODUCTS + "?mtm_campaign=winter"),
    _hit("c", _at(LAST, 9, 1), "pageview", CONTACT),
    _hit("c", _at(LAST, 9, 2), "search", CONTACT, search_keyword="Ordonnance"),
    _hit("c", _at(LAST, 9, 5), "outlink", "https://example.net/out?id=1"),
    _hit("c", _at(LAST, 9, 6), "download", "https://www.cegedim-rx.ro/notice.pdf"),
    _hit("d", _at(BEFORE, 15, 0), "pageview", HOME),
    # another site's hit, which no report of site 1 may count
    _hit("e", _at(FIRST, 12, 0), "pageview", HOME, site_id=2),
]


def add_traffic(state: State) -> None:
    """Store the hits above and bring the rollups up to date."""
    with state.sessions.begin() as session:
        session.execute(insert(analytics_hit), HITS)
    refresh_rollups(state.sessions, state.register, state.clock)
