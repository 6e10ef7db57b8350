"""The audience dashboard in real Chromium against a real ``gardien serve``: page views sent to
``/matomo.php`` as a browser's tracker would, the rollups brought up to date by ``gardien
analytics report``, then an admin opens ``/admin/analytics``: the chart is drawn (an accessible
SVG with bars), the totals show the visits, nothing is logged to the console, and axe-core finds
no violation."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.browser.test_admin_xss import ADMIN, PASSWORD, sign_in_and_enrol
from tests.browser.test_contact_form import violations
from tests.support import Server, gardien, gardien_env, serving

pytestmark = pytest.mark.browser

AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
]


@pytest.fixture(scope="module")
def measured_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("analytics-dashboard")
    register = Path(__file__).resolve().parents[2] / "examples" / "seed-site" / "register.yaml"
    env = gardien_env(root / "data", f"sqlite:///{root / 'gardien.db'}", register)
    created = subprocess.run(
        [sys.executable, "-m", "gardien", "admin", "create-user", ADMIN, "--role", "admin"]
        + ["--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    with serving(env) as server:
        for agent in AGENTS:
            for path in ("/", "/contact"):
                tracked = httpx.get(
                    f"{server.url}/matomo.php",
                    params={"idsite": 1, "rec": 1, "url": f"http://127.0.0.1{path}"},
                    headers={"User-Agent": agent},
                )
                assert tracked.status_code == 200, tracked.text
        today = dt.datetime.now(dt.UTC).date().isoformat()
        report = gardien(
            "analytics", "report", "--site", "1", "--from", today, "--to", today, env=env
        )
        assert report.returncode == 0, report.stderr
        assert json.loads(report.stdout)["totals"]["pageviews"] == 4
        yield server


def test_the_dashboard_draws_the_chart_cleanly(page: Page, measured_site: Server) -> None:
    console: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            console.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: console.append(str(error)))
    sign_in_and_enrol(page, measured_site.url, ADMIN)
    page.get_by_role("link", name="Audience").click()
    page.wait_for_url("**/admin/analytics")
    assert page.get_by_role("heading", level=1).inner_text() == "Audience"
    chart = page.get_by_role("img", name="Visits per day", exact=False)
    assert chart.is_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 50
    drawn = [
        float(h)
        for h in chart.locator("rect").evaluate_all(
            "bars => bars.map(bar => bar.getAttribute('height'))"
        )
    ]
    assert len(drawn) == 30 and drawn[-1] > 0  # today, the last of 30 days, has the visits
    visits = page.get_by_role("row", name="Visits", exact=False).first
    assert visits.locator("td").first.inner_text() == "2"
    # the range form works without any script: pick the last 7 days
    page.get_by_role("link", name="Last 7 days").click()
    bars = page.get_by_role("img", name="Visits per day", exact=False).locator("rect")
    expect(bars).to_have_count(7)
    assert console == []
    assert violations(page) == []
