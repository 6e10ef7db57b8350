"""The requests matomo.js sends, sent by a real Chromium to a real ``gardien serve``: the
sendBeacon POST with the parameters in the URL and no body (its default), the XHR form POST,
the image GET, and a bulk JSON body sent with the form content type. Each is stored without a
cookie and without the raw address; once the visitor opts out on ``/analytics/opt-out``, the
same requests are answered and not stored."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser.consent import Site, running

SEND_ALL = """
async ([endpoint, query, bulk]) => {
  const form = 'application/x-www-form-urlencoded; charset=UTF-8';
  const beacon = navigator.sendBeacon(endpoint + '?' + query('beacon'));
  const xhr = await new Promise(done => {
    const request = new XMLHttpRequest();
    request.open('POST', endpoint, true);
    request.withCredentials = true;
    request.setRequestHeader('Content-Type', form);
    request.onload = () => done(request.status);
    request.send(query('xhr'));
  });
  const image = await new Promise(done => {
    const img = new Image(1, 1);
    img.onload = () => done(img.naturalWidth);
    img.onerror = () => done(-1);
    img.src = endpoint + '?' + query('image').replace('send_image=0', 'send_image=1');
  });
  const queued = navigator.sendBeacon(endpoint, new Blob([bulk], {type: form}));
  return {beacon, xhr, image, queued};
}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running(tmp_path_factory.mktemp("tracking")) as running_site:
        yield running_site


# Headless Chromium says "HeadlessChrome", which the robot filter rightly leaves out (Matomo's
# spam prevention blocks headless browsers too): the visitor here presents a desktop Chrome.
DESKTOP_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
)


@pytest.fixture
def tab(browser: Browser) -> Iterator[tuple[BrowserContext, Page]]:
    context = browser.new_context(locale="fr-FR", user_agent=DESKTOP_CHROME)
    yield context, context.new_page()
    context.close()


def stored(site: Site) -> list[tuple[str, str, str | None, str]]:
    with sqlite3.connect(site.database) as connection:
        rows = connection.execute(
            "SELECT action_name, url, network, visitor_id FROM analytics_hit ORDER BY id"
        ).fetchall()
    return [tuple(row) for row in rows]


def wait_for(site: Site, count: int) -> list[tuple[str, str, str | None, str]]:
    """Beacons are fire-and-forget: poll the database (bounded) until they have landed."""
    deadline = time.monotonic() + 10
    rows = stored(site)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = stored(site)
    return rows


def send_all(page: Page, site: Site, tag: str) -> dict[str, object]:
    page_url = f"{site.url}/?utm_source=newsletter&email=jeanne%40example.org"

    def query(name: str) -> str:
        return urlencode(
            {
                "idsite": 1,
                "rec": 1,
                "action_name": f"{tag} {name}",
                "url": page_url,
                "_id": "",
                "cookie": 0,
                "r": "123456",
                "h": 10,
                "m": 4,
                "s": 2,
                "res": "1280x720",
                "pv_id": "Ab12Cd",
                "send_image": 0,
            }
        )

    bulk = '{"requests":["?' + query("bulk") + '"],"send_image":0}'
    queries = {name: query(name) for name in ("beacon", "xhr", "image")}
    script = "async ([endpoint, queries, bulk]) => (" + SEND_ALL.strip() + ")"
    answers: dict[str, object] = page.evaluate(
        script + "([endpoint, name => queries[name], bulk])",
        [f"{site.url}/matomo.php", queries, bulk],
    )
    return answers


def test_each_matomo_js_shape_is_stored_without_cookie_or_address(
    site: Site, tab: tuple[BrowserContext, Page]
) -> None:
    context, page = tab
    page.goto(f"{site.url}/analytics/opt-out")
    before = len(stored(site))
    answers = send_all(page, site, "shape")
    assert answers == {"beacon": True, "xhr": 204, "image": 1, "queued": True}
    rows = wait_for(site, before + 4)[before:]
    assert sorted(name for name, *_ in rows) == [
        "shape beacon",
        "shape bulk",
        "shape image",
        "shape xhr",
    ]
    for _name, url, network, visitor in rows:
        assert url == f"{site.url}/?utm_source=newsletter"  # the e-mail left out
        assert network == "127.0.0.0"
        assert len(visitor) == 16
    assert len({visitor for *_, visitor in rows}) == 1  # one cookieless visitor
    assert context.cookies() == []
    with sqlite3.connect(site.database) as connection:
        dump = [line for line in connection.iterdump() if 'INTO "analytics_hit"' in line]
    assert len(dump) >= 4 and not any("127.0.0.1" in line.replace(site.url, "") for line in dump)


def test_after_opting_out_on_the_page_nothing_more_is_stored(
    site: Site, tab: tuple[BrowserContext, Page]
) -> None:
    context, page = tab
    page.goto(f"{site.url}/analytics/opt-out")
    page.locator("form button[type=submit]").click()
    page.wait_for_load_state()
    assert any(cookie["name"] == "gardien_optout" for cookie in context.cookies())
    before = len(stored(site))
    answers = send_all(page, site, "opted out")
    assert answers == {"beacon": True, "xhr": 204, "image": 1, "queued": True}
    time.sleep(1.0)  # a stored beacon would have landed by now (the first test waits for it)
    assert [row for row in stored(site)[before:] if row[0].startswith("opted out")] == []
