"""Many visitors send the contact form at the same moment to one ``gardien serve``: each gets its
answer and each submission is stored. (Database work done on the server's event loop once made
one submission wait for another's lock while holding up the very loop that would release it:
the server froze until SQLite's busy timeout and answered 500.)"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select

from gardien.forms.models import FormSubmission
from tests.forms.test_submit import GOOD
from tests.support import Server, gardien_env, serving

VISITORS = 16


def send(server: Server, number: int) -> int:
    """One visitor's submission, every other one through the HTML form; returns the status."""
    message = f"Question number {number} about the software."
    with httpx.Client(base_url=server.url, timeout=120) as client:
        if number % 2:
            stamp = client.get("/api/forms/contact?lang=fr").json()["shown_at"]
            body = {**GOOD, "message": message, "shown_at": stamp, "lang": "fr"}
            return client.post("/api/forms/contact", json=body).status_code
        page = client.get("/contact?lang=ro").text
        found = re.search(r'name="shown_at" value="([^"]+)"', page)
        assert found
        form = {**GOOD, "message": message, "consent": "on", "shown_at": found.group(1)}
        return client.post("/contact", data={**form, "lang": "ro"}).status_code


def test_simultaneous_submissions_are_all_answered_and_stored(
    tmp_path: Path, register_path: Path, database_url: str
) -> None:
    # Not a test of the fill time: let the visitors send as soon as they have the form.
    text = register_path.read_text(encoding="utf-8")
    register_path.write_text(text.replace("min_fill_seconds: 3", "min_fill_seconds: 0", 1))
    env = gardien_env(tmp_path / "data", database_url, register_path)
    extra = () if database_url.startswith("sqlite") else ("--upgrade",)
    with serving(env, *extra) as server, ThreadPoolExecutor(VISITORS) as pool:
        statuses = list(pool.map(lambda number: send(server, number), range(VISITORS)))
    assert sorted(statuses) == sorted([201, 303] * (VISITORS // 2))
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = connection.scalar(select(func.count()).select_from(FormSubmission))
    finally:
        engine.dispose()
    assert stored == VISITORS
