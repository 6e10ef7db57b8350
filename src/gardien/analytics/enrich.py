"""What a raw hit says about its visit, worked out when rolling up, never while tracking.

Browser, operating system and device class come from the user agent (ua-parser, cached: a
site's visitors share few agents). The referrer is classified from the first action of a visit:
a campaign (``mtm_*``/``utm_*``/``pk_*`` parameters of the page URL, which ingestion keeps), a
search engine (with its keyword when the referrer still carries it), a social network, another
website, or direct. The country comes from the anonymised network through a local IP-to-country
table when the ``iptocc`` package is installed (registry allocation data shipped in the package:
no third party is asked), else from the region of the browser language (``fr-FR`` -> ``FR``).
No request leaves the machine.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from ua_parser import parse as parse_agent

from gardien.analytics.models import LABEL_LIMIT

UNKNOWN = "Unknown"
DIRECT = "direct"
SEARCH = "search"
SOCIAL = "social"
WEBSITE = "website"
CAMPAIGN = "campaign"
REFERRER_TYPES = (DIRECT, SEARCH, SOCIAL, WEBSITE, CAMPAIGN)

CountryLookup = Callable[[str], str | None]


@dataclass(frozen=True)
class Engine:
    name: str
    host: re.Pattern[str]
    keyword_parameters: tuple[str, ...]


def _host(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(^|\.){pattern}$")


SEARCH_ENGINES: tuple[Engine, ...] = (
    Engine("Google", _host(r"google(\.[a-z]{2,3}){1,2}"), ("q",)),
    Engine("Bing", _host(r"bing\.com"), ("q",)),
    Engine("DuckDuckGo", _host(r"duckduckgo\.com"), ("q",)),
    Engine("Yahoo!", _host(r"search\.yahoo\.com|yahoo\.co\.jp"), ("p", "q")),
    Engine("Yandex", _host(r"yandex(\.[a-z]{2,3}){1,2}|ya\.ru"), ("text",)),
    Engine("Baidu", _host(r"baidu\.com"), ("wd", "word")),
    Engine("Ecosia", _host(r"ecosia\.org"), ("q",)),
    Engine("Qwant", _host(r"qwant\.com"), ("q",)),
    Engine("Startpage", _host(r"startpage\.com"), ("query", "q")),
    Engine("Brave Search", _host(r"search\.brave\.com"), ("q",)),
    Engine("Naver", _host(r"naver\.com"), ("query",)),
    Engine("Seznam", _host(r"seznam\.cz"), ("q",)),
    Engine("Ask", _host(r"ask\.com"), ("q",)),
    Engine("Lilo", _host(r"search\.lilo\.org"), ("q",)),
    Engine("Mojeek", _host(r"mojeek\.com"), ("q",)),
)
"""The search engines recognised, with the referrer parameters that carry the keyword."""

SOCIAL_NETWORKS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Facebook", _host(r"facebook\.com|fb\.me|fb\.com")),
    ("Instagram", _host(r"instagram\.com")),
    ("X (Twitter)", _host(r"twitter\.com|t\.co|x\.com")),
    ("LinkedIn", _host(r"linkedin\.com|lnkd\.in")),
    ("Reddit", _host(r"reddit\.com|redd\.it")),
    ("YouTube", _host(r"youtube\.com|youtu\.be")),
    ("Pinterest", _host(r"pinterest(\.[a-z]{2,3}){1,2}|pin\.it")),
    ("TikTok", _host(r"tiktok\.com")),
    ("Mastodon", _host(r"mastodon\.social|mastodon\.online|mstdn\.social")),
    ("Bluesky", _host(r"bsky\.app")),
    ("Threads", _host(r"threads\.net")),
    ("WhatsApp", _host(r"whatsapp\.com|wa\.me")),
    ("Telegram", _host(r"t\.me|telegram\.org")),
    ("VK", _host(r"vk\.com")),
    ("Tumblr", _host(r"tumblr\.com")),
    ("Xing", _host(r"xing\.com")),
    ("GitHub", _host(r"github\.com")),
)

CAMPAIGN_NAME = ("mtm_campaign", "mtm_cpn", "utm_campaign", "pk_campaign", "pk_cpn")
CAMPAIGN_FALLBACK = ("mtm_source", "utm_source", "pk_source", "mtm_medium", "utm_medium")
"""A campaign URL without a name is labelled by its source, else its medium."""


@dataclass(frozen=True)
class Agent:
    browser: str
    operating_system: str
    device: str
    """``desktop``, ``smartphone``, ``tablet``, ``bot`` or ``unknown``."""


@functools.lru_cache(maxsize=8192)
def agent(user_agent: str | None) -> Agent:
    """Browser family, OS family and device class of a user agent."""
    if not user_agent:
        return Agent(UNKNOWN, UNKNOWN, "unknown")
    parsed = parse_agent(user_agent)
    browser = parsed.user_agent.family if parsed.user_agent else UNKNOWN
    system = parsed.os.family if parsed.os else UNKNOWN
    family = parsed.device.family if parsed.device else ""
    if family == "Spider":
        device = "bot"
    elif (
        "iPad" in family
        or "Tablet" in user_agent
        or (system == "Android" and "Mobile" not in user_agent)
    ):
        device = "tablet"
    elif "Mobi" in user_agent or system in ("iOS", "Android") or "iPhone" in family:
        device = "smartphone"
    else:
        device = "desktop"
    return Agent(
        browser if browser != "Other" else UNKNOWN, system if system != "Other" else UNKNOWN, device
    )


@functools.lru_cache(maxsize=65536)
def page_label(url: str | None) -> str | None:
    """A URL as a report shows it: no query string, no fragment (a consenting visitor's URL
    keeps its query in the raw hit; a report never shows it). Cached: pages repeat."""
    if not url:
        return None
    cut = url.split("#", 1)[0].split("?", 1)[0]
    scheme, separator, rest = cut.partition("://")
    if separator and "/" not in rest:
        cut += "/"  # "https://host" is the page "https://host/"
    return cut[:LABEL_LIMIT]


def _bare_host(host: str) -> str:
    for prefix in ("www.", "m."):
        if host.startswith(prefix):
            return host[len(prefix) :]
    return host


def campaign(page_url: str | None) -> str | None:
    """The campaign named by a landing page's ``mtm_*``/``utm_*``/``pk_*`` parameters."""
    if not page_url or "?" not in page_url:
        return None
    try:
        params = {k.lower(): v for k, v in parse_qsl(urlsplit(page_url).query)}
    except ValueError:
        return None
    for names in (CAMPAIGN_NAME, CAMPAIGN_FALLBACK):
        for name in names:
            value = params.get(name, "").strip()
            if value:
                return value.lower()[:200]
    return None


@dataclass(frozen=True)
class Referrer:
    kind: str
    """One of ``REFERRER_TYPES``."""
    name: str | None
    """The engine, network, website host or campaign; ``None`` for direct."""
    keyword: str | None = None

    @property
    def label(self) -> str | None:
        if self.name and self.keyword:
            return f"{self.name} — {self.keyword}"
        return self.name


@functools.lru_cache(maxsize=65536)
def classify_referrer(
    referrer: str | None, page_url: str | None, own_hosts: frozenset[str]
) -> Referrer:
    """How a visit arrived, from its first action's referrer and page URL."""
    named = campaign(page_url)
    if named is not None:
        return Referrer(CAMPAIGN, named)
    if not referrer:
        return Referrer(DIRECT, None)
    try:
        parts = urlsplit(referrer)
        host = (parts.hostname or "").lower()
    except ValueError:
        return Referrer(DIRECT, None)
    if not host or host in own_hosts:
        return Referrer(DIRECT, None)
    for engine in SEARCH_ENGINES:
        if engine.host.search(host):
            params = dict(parse_qsl(parts.query))
            keyword = next(
                (
                    params[p].strip().lower()
                    for p in engine.keyword_parameters
                    if params.get(p, "").strip()
                ),
                None,
            )
            return Referrer(SEARCH, engine.name, keyword[:200] if keyword else None)
    for name, pattern in SOCIAL_NETWORKS:
        if pattern.search(host):
            return Referrer(SOCIAL, name)
    return Referrer(WEBSITE, _bare_host(host))


def _installed_lookup() -> CountryLookup | None:
    try:
        from iptocc import country_code  # optional: the ``geo`` extra
    except ImportError:
        return None

    def lookup(network: str) -> str | None:
        try:
            code = country_code(network)
        except (ValueError, TypeError):
            return None
        return code if isinstance(code, str) and len(code) == 2 else None

    return lookup


installed_country_lookup: CountryLookup | None = _installed_lookup()
"""The local IP-to-country table, or ``None`` when the ``geo`` extra is not installed."""

_REGION = re.compile(r"^[a-zA-Z]{2,3}[-_]([a-zA-Z]{2})$")


def country_from_language(language: str | None) -> str | None:
    """The region of the browser's first language (``fr-FR,fr;q=0.9`` -> ``FR``)."""
    if not language:
        return None
    first = language.split(",", 1)[0].split(";", 1)[0].strip()
    match = _REGION.match(first)
    return match.group(1).upper() if match else None


@functools.lru_cache(maxsize=65536)
def _network_country(lookup: CountryLookup, network: str) -> str | None:
    return lookup(network)


def country(
    network: str | None,
    language: str | None,
    lookup: CountryLookup | None = installed_country_lookup,
) -> str:
    """ISO 3166 alpha-2 code, ``"XX"`` when neither the network nor the language tells."""
    if network and lookup is not None:
        code = _network_country(lookup, network)
        if code:
            return code.upper()
    return country_from_language(language) or "XX"
