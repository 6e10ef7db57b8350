"""Enrichment when rolling up: referrer classes, campaigns, agents, countries, page labels;
and the server's refresh loop doing one turn."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, insert, select

from gardien.analytics.enrich import (
    Referrer,
    agent,
    campaign,
    classify_referrer,
    country,
    country_from_language,
    installed_country_lookup,
    page_label,
)
from gardien.analytics.jobs import refresh_once
from gardien.analytics.models import AnalyticsDay, analytics_hit
from gardien.analytics.rollups import LEASE
from gardien.deps import State
from gardien.storage.clock import FrozenClock
from gardien.storage.locks import acquire

OWN = frozenset({"www.cegedim-rx.ro", "localhost"})
PAGE = "https://www.cegedim-rx.ro/"


@pytest.mark.parametrize(
    ("referrer", "page", "want"),
    [
        (None, PAGE, Referrer("direct", None)),
        ("https://www.cegedim-rx.ro/contact", PAGE, Referrer("direct", None)),
        ("not a url at all", PAGE, Referrer("direct", None)),
        (
            "https://www.google.co.uk/search?q=Privacy+Gardien",
            PAGE,
            Referrer("search", "Google", "privacy gardien"),
        ),
        ("https://www.google.com/", PAGE, Referrer("search", "Google", None)),
        ("https://search.yahoo.com/search?p=rgpd", PAGE, Referrer("search", "Yahoo!", "rgpd")),
        ("https://yandex.ru/search/?text=cookies", PAGE, Referrer("search", "Yandex", "cookies")),
        ("https://www.bing.com/search?q=", PAGE, Referrer("search", "Bing", None)),
        ("https://m.facebook.com/story", PAGE, Referrer("social", "Facebook")),
        ("https://lnkd.in/abc", PAGE, Referrer("social", "LinkedIn")),
        ("https://www.partner.example.org/a?b=c", PAGE, Referrer("website", "partner.example.org")),
        # A host that merely contains an engine's name is a website.
        ("https://notgoogle.example.com/", PAGE, Referrer("website", "notgoogle.example.com")),
        (
            "https://www.google.com/",
            PAGE + "?utm_campaign=Spring&utm_medium=mail",
            Referrer("campaign", "spring"),
        ),
        (None, PAGE + "?mtm_source=Newsletter", Referrer("campaign", "newsletter")),
        (None, PAGE + "?pk_campaign=old", Referrer("campaign", "old")),
    ],
)
def test_referrer_classes(referrer: str | None, page: str, want: Referrer) -> None:
    assert classify_referrer(referrer, page, OWN) == want


def test_a_keyword_is_part_of_the_label() -> None:
    assert Referrer("search", "Google", "rgpd").label == "Google — rgpd"
    assert Referrer("direct", None).label is None
    assert campaign("https://x.example/?utm_campaign=%20") is None


@pytest.mark.parametrize(
    ("user_agent", "browser", "system", "device"),
    [
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Firefox",
            "Linux",
            "desktop",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Safari/537.36",
            "Chrome",
            "Android",
            "tablet",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Mobile Safari/537.36",
            "Chrome Mobile",
            "Android",
            "smartphone",
        ),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Googlebot",
            "Unknown",
            "bot",
        ),
        ("", "Unknown", "Unknown", "unknown"),
        (None, "Unknown", "Unknown", "unknown"),
    ],
)
def test_agents(user_agent: str | None, browser: str, system: str, device: str) -> None:
    found = agent(user_agent)
    assert (found.browser, found.operating_system, found.device) == (browser, system, device)


def test_countries_from_the_network_then_the_language() -> None:
    assert installed_country_lookup is not None, "the geo extra (iptocc) is a dev dependency"
    assert country("8.8.0.0", "fr-FR") == "US"  # the network wins over the language
    assert country("2a01:e0a::", None) == "FR"
    assert country("10.0.0.0", "ro-RO,ro;q=0.9") == "RO"  # private: the language tells
    assert country("8.8.0.0", "fr-FR", lookup=None) == "FR"  # no local table installed
    assert country(None, "de") == "XX"
    assert country("not an address", None) == "XX"
    assert [country_from_language(x) for x in ("pt_BR", "en-GB;q=0.8", "zh-Hant-TW", "")] == [
        "BR",
        "GB",
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("https://www.cegedim-rx.ro/a/b?utm_campaign=x&q=1#top", "https://www.cegedim-rx.ro/a/b"),
        ("https://www.cegedim-rx.ro", "https://www.cegedim-rx.ro/"),
        ("https://www.cegedim-rx.ro/#section", "https://www.cegedim-rx.ro/"),
        (None, None),
        ("", None),
    ],
)
def test_page_labels_drop_queries_and_fragments(url: str | None, label: str | None) -> None:
    assert page_label(url) == label


def test_the_server_loop_refreshes_and_skips_when_another_instance_holds_the_lease(
    state: State, clock: FrozenClock
) -> None:
    row = {
        "site_id": 1,
        "received_at": clock.now() - dt.timedelta(hours=1),
        "visitor_id": "0123456789abcdef",
        "action": "pageview",
        "url": "http://localhost/",
        "new_visit": 0,
        "consented": 0,
    }
    with state.engine.begin() as connection:
        connection.execute(insert(analytics_hit), [row])
    assert acquire(state.sessions, LEASE, "other-instance", dt.timedelta(minutes=5), clock)
    assert refresh_once(state) == 0
    clock.advance(dt.timedelta(minutes=6))
    assert refresh_once(state) == 1
    with state.sessions() as session:
        assert session.scalar(select(func.sum(AnalyticsDay.visits))) == 1
    assert refresh_once(state) == 0  # nothing new
