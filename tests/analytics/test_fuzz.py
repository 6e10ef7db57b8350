"""Property tests of the tracking parser and endpoint: whatever arrives, a clear refusal or a
hit, never a crash, and a refusal never quotes what the visitor sent.

The strategies aim at the edges a real tracker or a hostile client reaches: every parameter
name the parser reads, numbers far past any bound, ids one character off their format, URLs on
and off the seed site's hostnames, invalid UTF-8, deeply nested JSON. The HTTP test runs a
bounded number of examples on each backend; ``make fuzz`` may run longer.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_from_bytes, urlencode

import hypothesis
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given
from hypothesis import strategies as st

from gardien.analytics.models import analytics_hit
from gardien.analytics.tracking import (
    MAX_BULK_REQUESTS,
    InvalidRequest,
    TrackedHit,
    bulk_requests,
    parse_params,
    read_hit,
)
from gardien.app import create_app
from gardien.config import Settings
from gardien.deps import State
from gardien.register.loader import load_register
from gardien.storage.clock import FrozenClock

SEED_REGISTER = Path(__file__).resolve().parents[2] / "examples" / "seed-site" / "register.yaml"
SITES = load_register(SEED_REGISTER).sites
HOSTNAMES = sorted({host for site in SITES for host in site.hostnames})
NAMES = (
    "idsite rec url action_name urlref _id _idn cid uid res h m s e_c e_a e_n e_v search "
    "search_cat search_count link download send_image new_visit lang ua cip cdt ping ca pv_id "
    "bots token_auth dimension1 dimension999 r apiv _refts pf_net cookie uadata"
).split()
HEX16 = "0123456789abcdef"
DEEP = 5_000
"""Deeper than Python's recursion limit (1,000), and far under the 1 MB body limit."""
COLUMN_OF = {"tracker_visitor_id": "visitor_id"}
"""Fields of ``TrackedHit`` stored under another column name."""
ECHO_MINIMUM = 5
"""Values this long or longer must never appear in a refusal's message (shorter ones, like
``1``, can occur in the message's own words)."""

texts = st.text(max_size=40)
long_digits = st.integers(4290, 8000).map(lambda n: "1" * n)
numbers = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    long_digits,
    st.sampled_from(["", "0", "1", "nan", "inf", "-0", "1e999", "１", "²", " 1", "0x10"]),
)
ids = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from([HEX16, HEX16.upper(), HEX16[:15], "zzzzzzzzzzzzzzzz"]),
    st.sampled_from(["", "\n", " ", "0", "\x00", "é"]),
)
urls = st.builds(
    lambda scheme, host, path: f"{scheme}{host}{path}",
    st.sampled_from(["https://", "http://", "HTTPS://", "javascript:", "ftp://", "//", ""]),
    st.one_of(st.sampled_from([*HOSTNAMES, "evil.example", "[::1", "localhost:99999"]), texts),
    st.one_of(st.just("/"), texts.map(lambda t: "/" + t), st.just("/" + "a" * 9000)),
)
values = st.one_of(texts, numbers, ids, urls)
names = st.one_of(st.sampled_from(NAMES), st.text(max_size=70))
param_maps = st.dictionaries(names, values, max_size=12)
valid_base = st.fixed_dictionaries(
    {
        "idsite": st.just("1"),
        "rec": st.just("1"),
        "url": st.sampled_from(HOSTNAMES).map(lambda host: f"https://{host}/page"),
    }
)
near_valid = st.builds(lambda base, extra: {**base, **extra}, valid_base, param_maps)
"""A valid hit with arbitrary other parameters: reaches every check past the first three."""
any_params = st.one_of(param_maps, near_valid)


def nested(depth: int) -> bytes:
    """A bulk body whose one request is a list nested ``depth`` deep."""
    return b'{"requests": [' + b"[" * depth + b"]" * depth + b"]}"


def _json_values() -> st.SearchStrategy[object]:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts)
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(texts, children, max_size=4)
        ),
        max_leaves=12,
    )


bulk_items = st.one_of(
    any_params.map(lambda p: "?" + urlencode(p)),
    any_params,
    st.dictionaries(texts, _json_values(), max_size=5),
    _json_values(),
)
bulk_bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda items, extra: json.dumps({**extra, "requests": items}).encode(),
        st.lists(bulk_items, max_size=6),
        st.dictionaries(texts, _json_values(), max_size=3),
    ),
    st.builds(
        lambda n: json.dumps({"requests": ["?idsite=1"] * n}).encode(), st.integers(490, 510)
    ),
    st.integers(1, DEEP).map(nested),
)


def _too_long_for_their_columns(hit: TrackedHit) -> list[str]:
    too_long = []
    for field in dataclasses.fields(hit):
        value = getattr(hit, field.name)
        column = analytics_hit.c.get(COLUMN_OF.get(field.name, field.name))
        length = getattr(column.type, "length", None) if column is not None else None
        if isinstance(value, str) and length is not None and len(value) > length:
            too_long.append(f"{field.name} ({len(value)} > {length})")
    return too_long


def _echoed(message: str, submitted: object) -> list[str]:
    """The submitted values (nested in dicts too) that a message quotes."""
    found = []
    for value in _strings(submitted):
        if len(value.strip()) >= ECHO_MINIMUM and not value.strip().isdigit() and value in message:
            found.append(value)
    return found


def _strings(submitted: object) -> Iterator[str]:
    if isinstance(submitted, str):
        yield submitted
    elif isinstance(submitted, dict):
        for value in submitted.values():
            yield from _strings(value)


# -- the parser -----------------------------------------------------------------------------------


@hypothesis.settings(deadline=None)
@given(st.one_of(st.binary(max_size=500), st.text(max_size=500)))
@example(b"a=%ff&b=\xff")
@example("a=" + "x" * 9000)
def test_parse_params_decodes_or_refuses(raw: bytes | str) -> None:
    try:
        params = parse_params(raw)
    except InvalidRequest as exc:
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        assert len(text) < ECHO_MINIMUM or text not in str(exc)
    else:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())
        assert all("\x00" not in k + v for k, v in params.items())


@hypothesis.settings(deadline=None)
@given(any_params)
def test_parse_params_reads_back_what_urlencode_wrote(params: dict[str, str]) -> None:
    try:
        decoded = parse_params(urlencode(params))
    except InvalidRequest:
        return
    assert decoded == params


@hypothesis.settings(deadline=None, max_examples=100)
@given(bulk_bodies)
def test_bulk_requests_reads_or_refuses(body: bytes) -> None:
    try:
        requests, document = bulk_requests(body)
    except InvalidRequest as exc:
        text = body.decode("utf-8", "replace").strip()
        assert str(exc) and (len(text) < ECHO_MINIMUM or text not in str(exc))
    else:
        assert len(requests) <= MAX_BULK_REQUESTS
        assert all(r is None or isinstance(r, dict) for r in requests)
        assert isinstance(document, dict)


@hypothesis.settings(deadline=None, max_examples=200)
@given(any_params, st.booleans(), st.booleans())
def test_read_hit_returns_a_hit_or_refuses(
    params: dict[str, str], consented: bool, authenticated: bool
) -> None:
    try:
        hit = read_hit(params, SITES, consented=consented, authenticated=authenticated)
    except InvalidRequest as exc:
        assert str(exc)
        assert _echoed(str(exc), params) == []
        return
    assert isinstance(hit, TrackedHit)
    assert hit.site_id in {site.id for site in SITES}
    # Every text fits its column: PostgreSQL refuses a value longer than its VARCHAR.
    assert _too_long_for_their_columns(hit) == []
    assert hit.tracker_visitor_id is None or re.fullmatch("[0-9a-f]{16}", hit.tracker_visitor_id)
    if not consented:
        assert (hit.tracker_visitor_id, hit.user_id, hit.dimensions) == (None, None, {})


@hypothesis.settings(deadline=None, max_examples=200)
@given(
    valid_base,
    st.sampled_from(NAMES),
    st.sampled_from(
        [
            "jeanne.durand@example.org",
            "+40 721 234 567",
            "198.51.100.23",
            "Jeanne Durand, 12 rue des Lilas",
            "https://evil.example/jeanne",
        ]
    ),
)
def test_a_refusal_never_quotes_a_personal_value(
    base: dict[str, str], name: str, personal: str
) -> None:
    params = {**base, name: personal}
    try:
        read_hit(params, SITES, consented=False, authenticated=False)
    except InvalidRequest as exc:
        assert personal not in str(exc)
        assert personal.split("@")[0] not in str(exc)


# -- what the fuzzing found (kept as plain examples) ----------------------------------------------

BASE = {"idsite": "1", "rec": "1", "url": "https://www.cegedim-rx.ro/"}


@pytest.mark.parametrize("name", ["idsite", "h", "new_visit", "search_count"])
def test_a_number_longer_than_python_converts_is_refused(name: str) -> None:
    # int() refuses more than 4,300 digits with a plain ValueError; values may hold 8,192.
    with pytest.raises(InvalidRequest):
        read_hit({**BASE, name: "1" * 5000}, SITES, consented=False, authenticated=False)


@pytest.mark.parametrize("name", ["cid", "_id"])
def test_an_id_with_a_trailing_newline_is_not_kept_as_is(name: str) -> None:
    # ``$`` also matches before a final newline: a 17th character would reach the column.
    try:
        hit = read_hit({**BASE, name: HEX16 + "\n"}, SITES, consented=True, authenticated=False)
    except InvalidRequest:
        return
    assert hit.tracker_visitor_id is None or len(hit.tracker_visitor_id) == 16


def test_a_page_view_id_with_a_trailing_newline_is_not_kept_as_is() -> None:
    hit = read_hit({**BASE, "pv_id": "aB3dE6\n"}, SITES, consented=False, authenticated=False)
    assert _too_long_for_their_columns(hit) == []


def test_a_deeply_nested_bulk_body_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        bulk_requests(nested(DEEP))


# -- the endpoint ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackingRequest:
    method: str
    query: str
    body: bytes
    content_type: str | None
    consented: bool
    gpc: bool

    def __repr__(self) -> str:
        body = self.body if len(self.body) <= 200 else self.body[:200] + b"..."
        return (
            f"TrackingRequest({self.method!r}, {self.query[:300]!r}, {body!r} "
            f"({len(self.body)} bytes), {self.content_type!r}, consented={self.consented}, "
            f"gpc={self.gpc})"
        )


queries = st.one_of(
    any_params.map(lambda p: urlencode(p, quote_via=quote)),
    st.binary(max_size=200).map(lambda raw: quote_from_bytes(raw, safe="=&")),
    st.just(""),
)
bodies = st.one_of(
    st.just(b""),
    any_params.map(lambda p: urlencode(p).encode()),
    bulk_bodies,
)
tracking_requests = st.builds(
    TrackingRequest,
    method=st.sampled_from(["GET", "POST"]),
    query=queries,
    body=bodies,
    content_type=st.sampled_from(
        [
            None,
            "application/x-www-form-urlencoded; charset=UTF-8",
            "application/json",
            "multipart/form-data; boundary=x",
            "text/plain",
        ]
    ),
    consented=st.booleans(),
    gpc=st.booleans(),
)
PAGE = quote("https://www.cegedim-rx.ro/produse", safe="")


@pytest.fixture
def fuzzed(
    settings: Settings, state: State, clock: FrozenClock
) -> Iterator[tuple[TestClient, str]]:
    """A client from a real address, and the cookie of a visitor who granted measurement."""
    from gardien.consent.service import current_revision

    revision = current_revision(state).number
    decided = int(clock.now().timestamp()) - 60
    consent = f"1:{'0123456789abcdef' * 2}:{revision}:{decided}:audience_measurement=1"
    app = create_app(settings, state=state, scheduler=False)
    with TestClient(app, client=("203.0.113.198", 50123), raise_server_exceptions=False) as client:
        yield client, consent


@hypothesis.settings(
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tracking_requests)
@example(TrackingRequest("GET", f"idsite={'1' * 5000}&rec=1&url={PAGE}", b"", None, False, False))
@example(
    TrackingRequest("GET", f"idsite=1&rec=1&url={PAGE}&cid={HEX16}%0A", b"", None, True, False)
)
@example(
    TrackingRequest("GET", f"idsite=1&rec=1&url={PAGE}&pv_id=aB3dE6%0A", b"", None, False, False)
)
@example(TrackingRequest("POST", "", nested(DEEP), None, False, False))
def test_the_endpoint_never_answers_5xx(
    fuzzed: tuple[TestClient, str], request_: TrackingRequest
) -> None:
    client, consent = fuzzed
    headers = {"user-agent": "Mozilla/5.0 (fuzz)"}
    if request_.content_type:
        headers["content-type"] = request_.content_type
    if request_.consented:
        headers["cookie"] = f"gardien_consent={consent}"
    if request_.gpc:
        headers["sec-gpc"] = "1"
    response = client.request(
        request_.method,
        "/matomo.php" + (f"?{request_.query}" if request_.query else ""),
        content=request_.body if request_.method == "POST" else None,
        headers=headers,
    )
    assert response.status_code < 500, (response.status_code, request_)
