"""A generated day of audience traffic, built as visits, and what a report of it must say.

The expected numbers come from the visits as generated (who arrived how, what they did), not
from sessionising the raw rows again, so a report that groups hits wrongly cannot agree.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SITE = 1
HOST = "http://localhost"

AGENTS = [
    # (user agent, browser, OS, device)
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Firefox",
        "Linux",
        "desktop",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36",
        "Chrome",
        "Windows",
        "desktop",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
        "iOS",
        "smartphone",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Mobile Safari/537.36",
        "Chrome Mobile",
        "Android",
        "smartphone",
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
        "iOS",
        "tablet",
    ),
    (None, "Unknown", "Unknown", "unknown"),
]

ARRIVALS = [
    # (referrer, landing query, referrer type, referrer label, campaign)
    (None, "", "direct", None, None),
    ("http://localhost/elsewhere", "", "direct", None, None),
    ("https://www.google.fr/search?q=Gardien+RGPD", "", "search", "Google — gardien rgpd", None),
    ("https://www.google.com/", "", "search", "Google", None),
    ("https://duckduckgo.com/", "", "search", "DuckDuckGo", None),
    ("https://l.facebook.com/l.php", "", "social", "Facebook", None),
    ("https://t.co/abc", "", "social", "X (Twitter)", None),
    ("https://www.partner.example.org/links", "", "website", "partner.example.org", None),
    (None, "?utm_campaign=Spring&utm_source=news", "campaign", "spring", "spring"),
    ("https://www.google.com/", "?mtm_campaign=autumn", "campaign", "autumn", "autumn"),
]

PLACES = [
    # (anonymised network, language, expected country)
    ("8.8.0.0", "en-US,en;q=0.9", "US"),
    ("81.56.0.0", "fr-FR", "FR"),
    ("10.0.0.0", "ro-RO,ro;q=0.8", "RO"),
    ("192.168.0.0", "de", "XX"),
    (None, "fr-BE", "BE"),
]

PAGES = ["/", "/about", "/contact", "/blog/one", "/blog/two", "/pricing", "/docs/"]
EVENTS = [("Video", "Play", "intro"), ("Video", "Pause", None), ("Form", "Submit", "contact")]
KEYWORDS = ["RGPD", "cookies", "Contact"]
OUTLINKS = ["https://example.org/out", "https://partner.example.net/a?utm_x=1"]
DOWNLOADS = ["http://localhost/files/policy.pdf", "http://localhost/files/report.zip"]


@dataclass
class Visit:
    visitor: str
    start: dt.datetime
    agent: tuple[str | None, str, str, str]
    arrival: tuple[str | None, str, str, str | None, str | None]
    place: tuple[str | None, str, str]
    actions: list[tuple[int, str, Any]] = field(default_factory=list)
    """(seconds after the start, action, what) — what: a page, an event, a keyword, a URL."""
    ping: int | None = None
    forced: bool = False
    """The first hit says new_visit=1 (it follows the visitor's last visit within 30 min)."""

    @property
    def length(self) -> int:
        last = max(offset for offset, _, _ in self.actions)
        return max(last, self.ping or 0)

    def pageviews(self) -> list[str]:
        return [HOST + _cut(page) for _, action, page in self.actions if action == "pageview"]


def _cut(page: str) -> str:
    return page.split("?", 1)[0].split("#", 1)[0]


def generate_day(day: dt.date, visitors: int = 80, seed: int = 7) -> list[Visit]:
    """Visits of ``visitors`` people (one to three each, 31 to 120 minutes apart, or one
    minute apart with ``new_visit=1``), all within ``day`` (UTC)."""
    rng = random.Random(seed)
    visits: list[Visit] = []
    midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
    for number in range(visitors):
        visitor = f"{number:016x}"
        when = midnight + dt.timedelta(minutes=rng.randint(0, 400))
        for count in range(rng.choice([1, 1, 1, 2, 3])):
            visit = Visit(
                visitor=visitor,
                start=when,
                agent=rng.choice(AGENTS),
                arrival=rng.choice(ARRIVALS),
                place=rng.choice(PLACES),
            )
            offset = 0
            kinds = ["pageview"] if rng.random() < 0.9 else ["event"]
            kinds += rng.choices(
                ["pageview", "event", "search", "outlink", "download"],
                weights=[6, 2, 1, 1, 1],
                k=rng.choice([0, 0, 1, 2, 4, 7]),
            )
            for kind in kinds:
                choices: dict[str, list[Any]] = {
                    "pageview": PAGES,
                    "event": EVENTS,
                    "search": KEYWORDS,
                    "outlink": OUTLINKS,
                    "download": DOWNLOADS,
                }
                what = rng.choice(choices[kind])
                visit.actions.append((offset, kind, what))
                offset += rng.randint(5, 20 * 60)  # never 30 minutes between two actions
            if rng.random() < 0.3:
                visit.ping = visit.length + rng.randint(10, 600)
            if count and rng.random() < 0.3:
                # new_visit=1 a minute after the last visit ended: a new visit all the same.
                visit.forced = True
                visit.start = visits[-1].start + dt.timedelta(seconds=visits[-1].length + 60)
            visits.append(visit)
            when = visit.start + dt.timedelta(seconds=visit.length + rng.randint(31, 120) * 60)
    return visits


def rows_of(visits: list[Visit]) -> list[dict[str, Any]]:
    """The raw ``analytics_hit`` rows the visits' trackers would have stored."""
    rows: list[dict[str, Any]] = []
    for visit in visits:
        agent, _, _, _ = visit.agent
        referrer, query, _, _, _ = visit.arrival
        network, language, _ = visit.place
        base = {
            "site_id": SITE,
            "visitor_id": visit.visitor,
            "network": network,
            "user_agent": agent,
            "language": language,
            "consented": 0,
        }
        for position, (offset, action, what) in enumerate(visit.actions):
            row = {
                **base,
                "received_at": visit.start + dt.timedelta(seconds=offset),
                "action": action,
                "new_visit": int(visit.forced and position == 0),
                "url": HOST + "/",
                "referrer": referrer if position == 0 else HOST + "/",
            }
            # The first hit's page URL carries the campaign parameters, whatever the action.
            page = HOST + (what if action == "pageview" else "/")
            row["url"] = page + (query if position == 0 else "")
            if action == "event":
                row["event_category"], row["event_action"], row["event_name"] = what
            elif action == "search":
                row["search_keyword"] = what
            elif action in ("outlink", "download"):
                row["url"] = what
            rows.append(row)
        if visit.ping is not None:
            rows.append(
                {
                    **base,
                    "received_at": visit.start + dt.timedelta(seconds=visit.ping),
                    "action": "ping",
                    "new_visit": 0,
                    "url": HOST + "/",
                }
            )
    return rows


def expected(visits: list[Visit]) -> dict[str, Any]:
    """The totals and every table (label -> (visits, actions)) a report must show."""
    totals = Counter[str]()
    tables: dict[str, Counter[tuple[str, str]]] = {}

    def count(table: str, label: str, visits_: int, actions: int) -> None:
        per = tables.setdefault(table, Counter())
        per[(label, "visits")] += visits_
        per[(label, "actions")] += actions

    for visit in visits:
        totals["visits"] += 1
        totals["time_on_site"] += visit.length
        kinds = [action for _, action, _ in visit.actions]
        totals["bounces"] += len(kinds) == 1
        for kind, name in (
            ("pageview", "pageviews"),
            ("event", "events"),
            ("search", "searches"),
            ("outlink", "outlinks"),
            ("download", "downloads"),
        ):
            totals[name] += kinds.count(kind)
        pages = visit.pageviews()
        for page in set(pages):
            count("pages", page, 1, pages.count(page))
        if pages:
            count("entry_pages", pages[0], 1, len(pages))
            count("exit_pages", pages[-1], 1, len(pages))
        _, _, kind, label, campaign = visit.arrival
        count("referrer_types", kind, 1, 1)
        if label:
            count("referrers", label, 1, 1)
        if campaign:
            count("campaigns", campaign, 1, 1)
        _, browser, system, device = visit.agent
        count("browsers", browser, 1, 1)
        count("operating_systems", system, 1, 1)
        count("devices", device, 1, 1)
        count("countries", visit.place[2], 1, 1)
        for table, kind, label_of in (
            ("events", "event", lambda w: " / ".join(p for p in w if p)),
            ("searches", "search", lambda w: w.lower()),
            ("outlinks", "outlink", _cut),
            ("downloads", "download", _cut),
        ):
            labels = [label_of(w) for _, action, w in visit.actions if action == kind]
            for name in set(labels):
                count(table, name, 1, labels.count(name))
    # A range's visitors: the sum of each day's unique visitors (reports.py says why).
    totals["visitors"] = len({(visit.visitor, visit.start.date()) for visit in visits})
    as_rows = {
        table: {label: (per[(label, "visits")], per[(label, "actions")]) for label, _ in per}
        for table, per in tables.items()
    }
    return {"totals": dict(totals), "tables": as_rows}
