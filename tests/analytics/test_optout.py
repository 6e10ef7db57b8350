"""``/analytics/opt-out``: the page, the cookie it sets, the frames that may show it, and
``opted_out``, which the tracking endpoint asks on every hit."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from dateutil.relativedelta import relativedelta
from fastapi.testclient import TestClient

from gardien.analytics.optout import OPTOUT_COOKIE, opted_out
from gardien.consent.service import current_revision
from gardien.deps import State
from gardien.storage.clock import FrozenClock


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Nothing here touches the database beyond start-up: SQLite alone is enough."""
    return f"sqlite:///{tmp_path / 'gardien.db'}"


PAGE = "/analytics/opt-out"
SAME_SITE = {"origin": "http://testserver"}


def state_of_page(html: str) -> str:
    match = re.search(r'<p id="optout-state" class="flash" role="status" data-state="(\w+)">', html)
    assert match, "the page has no status paragraph"
    return match.group(1)


# -- opted_out: the rule the tracking endpoint applies -------------------------------------


@pytest.mark.parametrize(
    ("cookies", "expected"),
    [
        ({}, False),
        ({OPTOUT_COOKIE: "1"}, True),
        ({OPTOUT_COOKIE: "0"}, False),
        ({OPTOUT_COOKIE: ""}, False),
        ({OPTOUT_COOKIE: "yes"}, False),
        ({"mtm_consent_removed": "1732800000000"}, True),
        ({"mtm_consent_removed": ""}, True),
        # Matomo's rule: when both exist, "removed" wins.
        ({"mtm_consent_removed": "1732800000000", "mtm_consent": "1732700000000"}, True),
        ({"mtm_consent": "1732700000000"}, False),
        ({"gardien_consent": "1:" + "a" * 32 + ":1:1732700000:audience_measurement=1"}, False),
        ({OPTOUT_COOKIE: "1", "mtm_consent": "1732700000000"}, True),
    ],
)
def test_opted_out_truth_table(cookies: dict[str, str], expected: bool) -> None:
    assert opted_out(cookies) is expected


# -- the page ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "title", "button"),
    [
        ("en", "Audience measurement: your choice", "Opt out of audience measurement"),
        ("fr", "Mesure d’audience : votre choix", "M’opposer à la mesure d’audience"),
        ("ro", "Măsurarea audienței: alegerea dumneavoastră", "Mă opun măsurării audienței"),
    ],
)
def test_the_page_in_each_language(client: TestClient, lang: str, title: str, button: str) -> None:
    response = client.get(PAGE, params={"lang": lang})
    assert response.status_code == 200
    assert response.headers["content-language"] == lang
    assert response.headers["cache-control"] == "no-store"
    html = response.text
    assert f'<html lang="{lang}">' in html
    assert html.count("<h1") == 1
    assert f"<h1>{title}</h1>" in html
    assert state_of_page(html) == "cookieless"
    assert button in html
    assert 'aria-describedby="optout-state"' in html
    assert "gardien_optout" in html
    assert "Global Privacy Control" in html
    assert 'class="skip"' in html  # the site layout, with its skip link and language menu


def test_the_retention_shown_is_the_registers(client: TestClient) -> None:
    # P13M in the register; the words are the cookie policy's own (policy.duration_words).
    assert "kept for 1 year and 1 month" in client.get(PAGE, params={"lang": "en"}).text
    assert "păstrat 1 an și 1 lună" in client.get(PAGE, params={"lang": "ro"}).text


def test_accept_language_picks_the_language(client: TestClient) -> None:
    response = client.get(PAGE, headers={"accept-language": "ro-RO,ro;q=0.9,en;q=0.5"})
    assert '<html lang="ro">' in response.text
    assert client.get(PAGE, params={"lang": "xx"}).headers["content-language"] == "en"


def test_the_state_follows_gpc_consent_and_matomos_own_cookie(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    assert state_of_page(client.get(PAGE, headers={"sec-gpc": "1"}).text) == "gpc"
    revision = current_revision(state).number
    decided = int(clock.now().timestamp()) - 60
    client.cookies.set(
        "gardien_consent", f"1:{'c' * 32}:{revision}:{decided}:audience_measurement=1"
    )
    assert state_of_page(client.get(PAGE).text) == "consented"
    # Consent given, then the browser's signal: consent is the later, more specific choice.
    assert state_of_page(client.get(PAGE, headers={"sec-gpc": "1"}).text) == "consented"
    client.cookies.set("mtm_consent_removed", "1732800000000")
    html = client.get(PAGE).text
    assert state_of_page(html) == "opted_out"  # an objection wins over an earlier consent
    assert "Measure my visits again" in html
    assert '<input type="hidden" name="choice" value="in">' in html


def test_embed_drops_the_layout_and_keeps_itself_in_the_frame(client: TestClient) -> None:
    html = client.get(PAGE, params={"embed": "1", "lang": "fr"}).text
    assert '<html lang="fr">' in html
    assert html.count("<h1") == 1
    assert 'class="skip"' not in html and "<footer" not in html and "<nav" not in html
    assert "gardien-consent.js" not in html  # no banner inside the frame
    assert 'action="/analytics/opt-out?lang=fr&amp;embed=1"' in html
    assert '<input type="hidden" name="embed" value="1">' in html
    response = client.post(
        PAGE, data={"choice": "out", "lang": "fr", "embed": "1"}, headers=SAME_SITE
    )
    assert response.status_code == 200  # followed the 303
    assert str(response.url).endswith("/analytics/opt-out?lang=fr&embed=1")
    assert state_of_page(response.text) == "opted_out"
    assert "<footer" not in response.text


# -- the choice -------------------------------------------------------------------------------


def test_opting_out_sets_the_registers_cookie_and_shows_the_new_state(
    client: TestClient, clock: FrozenClock
) -> None:
    response = client.post(
        PAGE, data={"choice": "out", "lang": "ro"}, headers=SAME_SITE, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/analytics/opt-out?lang=ro"
    [cookie] = response.headers.get_list("set-cookie")
    now = clock.now()
    thirteen_months = int((now + relativedelta(months=13) - now).total_seconds())
    assert thirteen_months == (dt.date(2027, 2, 15) - dt.date(2026, 1, 15)).days * 86400
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert cookie.startswith(f"{OPTOUT_COOKIE}=1;")
    assert attributes["max-age"].strip() == f"Max-Age={thirteen_months}"
    assert attributes["path"].strip() == "Path=/"  # read by /matomo.php
    assert attributes["samesite"].strip().lower() == "samesite=lax"
    # HttpOnly: only the server reads it, and a script on the site cannot silently erase it.
    assert "httponly" in attributes
    assert "secure" not in attributes  # plain http in this test; see the https test below
    page = client.get("/analytics/opt-out?lang=ro")
    assert state_of_page(page.text) == "opted_out"
    assert "Măsurați din nou vizitele mele" in page.text


@pytest.fixture
def six_month_optout(register_path: Path) -> Path:
    text = register_path.read_text()
    declared = "    duration: P13M\n    consent_required: false\n    activity: audience_measurement"
    assert text.count(declared) == 1
    register_path.write_text(text.replace(declared, declared.replace("P13M", "P6M")))
    return register_path


def test_the_max_age_follows_the_register_not_a_constant(
    six_month_optout: Path, client: TestClient, clock: FrozenClock
) -> None:
    response = client.post(PAGE, data={"choice": "out"}, headers=SAME_SITE, follow_redirects=False)
    now = clock.now()
    six_months = int((now + relativedelta(months=6) - now).total_seconds())
    assert f"Max-Age={six_months};" in response.headers.get_list("set-cookie")[0]
    assert "kept for 6 months" in client.get(PAGE).text


def test_the_cookie_is_secure_over_https(state: State) -> None:
    from gardien.app import create_app

    app = create_app(state.settings, state=state, scheduler=False)
    with TestClient(app, base_url="https://testserver") as secure_client:
        response = secure_client.post(
            PAGE,
            data={"choice": "out"},
            headers={"origin": "https://testserver"},
            follow_redirects=False,
        )
    assert response.status_code == 303
    assert "secure" in response.headers.get_list("set-cookie")[0].lower()


def test_opting_back_in_clears_the_cookie_and_matomos(client: TestClient) -> None:
    client.post(PAGE, data={"choice": "out"}, headers=SAME_SITE)
    assert client.cookies.get(OPTOUT_COOKIE) == "1"
    client.cookies.set("mtm_consent_removed", "1732800000000")
    response = client.post(
        PAGE, data={"choice": "in", "lang": "en"}, headers=SAME_SITE, follow_redirects=False
    )
    assert response.status_code == 303
    cleared = response.headers.get_list("set-cookie")
    assert any(c.startswith(f'{OPTOUT_COOKIE}=""') and "Max-Age=0" in c for c in cleared)
    assert any(c.startswith('mtm_consent_removed=""') and "Max-Age=0" in c for c in cleared)
    client.cookies.clear()  # the test client keeps expired cookies; a browser drops them
    html = client.get(PAGE).text
    assert state_of_page(html) == "cookieless"


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},  # sandboxed frames, data: URLs
        {"origin": "http://testserver.evil.example"},
        {"referer": "https://evil.example/page"},
        {"origin": "https://evil.example", "referer": "http://testserver/analytics/opt-out"},
    ],
)
def test_a_cross_site_post_is_refused_with_a_reason(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.post(PAGE, data={"choice": "in"}, headers=headers, follow_redirects=False)
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    assert "only be sent from the site" in response.text


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://testserver"},
        {"origin": "https://www.cegedim-rx.ro"},  # a register site hostname (the iframe's page)
        {"referer": "http://localhost:8000/privacy"},
        {},  # no browser sends a form POST without Origin; curl is not a visitor's browser
    ],
)
def test_posts_from_the_sites_own_pages_are_accepted(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.post(PAGE, data={"choice": "out"}, headers=headers, follow_redirects=False)
    assert response.status_code == 303


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"choice=maybe", "application/x-www-form-urlencoded", "choice must be out or in"),
        (b"", "application/x-www-form-urlencoded", "choice must be out or in"),
        (b'{"choice": "out"}', "application/json", "application/x-www-form-urlencoded"),
        (b"choice=out&x=" + b"a" * 5000, "application/x-www-form-urlencoded", "larger than"),
        (b"choice=out&lang=\xff\xfe", "application/x-www-form-urlencoded", "UTF-8"),
    ],
)
def test_bad_posts_are_refused_with_a_reason(
    client: TestClient, body: bytes, content_type: str, reason: str
) -> None:
    response = client.post(
        PAGE,
        content=body,
        headers={**SAME_SITE, "content-type": content_type},
        follow_redirects=False,
    )
    assert response.status_code == 400
    assert reason in response.text
    assert "set-cookie" not in response.headers


# -- framing ----------------------------------------------------------------------------------


def frame_ancestors(csp: str) -> list[str]:
    [directive] = [d.strip() for d in csp.split(";") if d.strip().startswith("frame-ancestors")]
    return directive.split()[1:]


def test_the_sites_hostnames_may_frame_the_page(client: TestClient) -> None:
    response = client.get(PAGE, params={"embed": "1"})
    ancestors = frame_ancestors(response.headers["content-security-policy"])
    assert ancestors[0] == "'self'"
    for host in ("127.0.0.1", "localhost", "www.cegedim-rx.ro"):
        # Any port: the register names hosts, and a hit's url is checked by host alone.
        assert f"https://{host}:*" in ancestors and f"http://{host}:*" in ancestors
    assert len(ancestors) == 7
    assert "x-frame-options" not in response.headers  # it cannot name other hosts
    # The rest of the policy is the one every page has.
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers.get_list("content-security-policy") == [
        response.headers["content-security-policy"]
    ]


@pytest.mark.parametrize("path", ["/privacy", "/cookies", "/contact", "/no-such-page"])
def test_other_pages_still_refuse_foreign_frames(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert frame_ancestors(response.headers["content-security-policy"]) == ["'self'"]
    assert response.headers["x-frame-options"] == "SAMEORIGIN"


def test_the_choices_redirect_keeps_the_default_frame_policy(client: TestClient) -> None:
    response = client.post(PAGE, data={"choice": "out"}, headers=SAME_SITE, follow_redirects=False)
    assert response.headers["x-frame-options"] == "SAMEORIGIN"


# -- the control in the policy pages ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "section"), [("/privacy", "audience-measurement"), ("/cookies", "cookie-list")]
)
@pytest.mark.parametrize("lang", ["en", "fr", "ro"])
def test_the_policy_pages_embed_the_control(
    client: TestClient, path: str, section: str, lang: str
) -> None:
    html = client.get(path, params={"lang": lang}).text
    assert html.count("<iframe") == 1
    start = html.index(f'<section id="{section}"')
    end = html.index("</section>", start)
    control = html[start:end]
    iframe = re.search(r'<iframe src="([^"]+)" title="([^"]+)"', control)
    assert iframe, f"no opt-out frame in #{section}"
    assert iframe.group(1) == f"/analytics/opt-out?embed=1&amp;lang={lang}"
    assert (
        iframe.group(2)
        == client.get(PAGE, params={"lang": lang}).text.split("<h1>")[1].split("</h1>")[0]
    )
    assert f'<a href="/analytics/opt-out?lang={lang}">' in control  # without frames


def test_openapi_lists_the_page(client: TestClient) -> None:
    assert PAGE in client.get("/openapi.json").json()["paths"]


@pytest.fixture
def no_optout_cookie(register_path: Path) -> Path:
    text = register_path.read_text()
    start = text.index("  - name: gardien_optout\n")
    end = text.index("  - name:", start + 1)
    register_path.write_text(text[:start] + text[end:])
    return register_path


def test_an_undeclared_cookie_is_never_set(no_optout_cookie: Path, client: TestClient) -> None:
    response = client.post(
        PAGE,
        data={"choice": "out"},
        headers={**SAME_SITE, "accept": "application/json"},
        follow_redirects=False,
    )
    assert response.status_code == 500
    assert (
        response.json()["detail"]
        == "the register declares no gardien_optout cookie with a duration"
    )
    assert "set-cookie" not in response.headers


@pytest.fixture
def ignoring_dnt(register_path: Path) -> Path:
    text = register_path.read_text()
    declared = "    honour_do_not_track: true\n"
    assert text.count(declared) == 1
    register_path.write_text(text.replace(declared, "    honour_do_not_track: false\n"))
    return register_path


def test_do_not_track_where_the_register_honours_it(client: TestClient) -> None:
    html = client.get(PAGE, headers={"dnt": "1"}, params={"lang": "fr"}).text
    assert state_of_page(html) == "dnt"  # the seed honours it, as its policy promises
    assert "Votre navigateur envoie le signal Do Not Track" in html
    assert "Global Privacy Control ou Do Not Track" in html
    assert state_of_page(client.get(PAGE, headers={"x-do-not-track": "1"}).text) == "dnt"
    assert state_of_page(client.get(PAGE).text) == "cookieless"


def test_do_not_track_where_the_register_does_not(ignoring_dnt: Path, client: TestClient) -> None:
    html = client.get(PAGE, headers={"dnt": "1"}).text
    assert state_of_page(html) == "cookieless"
    assert "Do Not Track" not in html
    assert "A Global Privacy Control signal sent by your browser is honoured" in html
