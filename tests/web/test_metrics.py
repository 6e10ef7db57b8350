"""``/metrics``: Prometheus text format, request counters and latency histogram per route
template, queue depths and purge times from the database; loopback or a bearer token only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gardien.app import create_app
from gardien.config import Settings
from gardien.deps import State
from gardien.retention.service import run_retention
from gardien.storage.clock import FrozenClock
from tests.forms.test_submit import GOOD, stamped

LINE = re.compile(
    r"^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{([a-z_]+=\"[^\"]*\",?)+\})? (-?[0-9.e+-]+|NaN|\+Inf))$"
)


@pytest.fixture
def local(settings: Settings, state: State) -> Iterator[TestClient]:
    app = create_app(settings, state=state, scheduler=False)
    with TestClient(app, client=("127.0.0.1", 40000)) as test_client:
        yield test_client


def values(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        assert LINE.match(line), line
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = value
    return found


def test_metrics_count_requests_queues_and_purges(
    local: TestClient, state: State, clock: FrozenClock
) -> None:
    assert local.get("/healthz").status_code == 200
    assert local.get("/healthz").status_code == 200
    assert local.get("/no/such/page/ana@example.org").status_code == 404
    body = {**GOOD, **stamped(local, clock)}
    assert local.post("/api/forms/contact", json=body).status_code == 201

    answer = local.get("/metrics")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    figures = values(answer.text)
    assert figures['gardien_http_requests_total{method="GET",route="/healthz",status="2xx"}'] == "2"
    assert (
        figures[
            'gardien_http_requests_total{method="POST",route="/api/forms/{form_id}",status="2xx"}'
        ]
        == "1"
    )
    assert (
        figures['gardien_http_requests_total{method="GET",route="unmatched",status="4xx"}'] == "1"
    )
    assert "ana@example.org" not in answer.text  # routes are templates, never URLs
    assert figures['gardien_http_request_duration_seconds_count{route="/healthz"}'] == "2"
    assert (
        figures['gardien_http_request_duration_seconds_bucket{route="/healthz",le="+Inf"}'] == "2"
    )
    assert figures['gardien_outbox_messages{status="pending"}'] == "2"  # notification + ack
    assert figures['gardien_retention_last_purge_timestamp_seconds{activity="contact_forms"}'] == (
        "NaN"
    )
    assert figures["gardien_group_commit_queue"] == "0"
    assert figures["gardien_backups_retained"] == "0"

    run_retention(state.sessions, state.register, state.stores, state.clock)
    after = values(local.get("/metrics").text)
    purged = after['gardien_retention_last_purge_timestamp_seconds{activity="contact_forms"}']
    # finished_at is the run's start (the frozen clock) plus how long the purge took.
    assert 0 <= float(purged) - state.clock.now().timestamp() < 60
    # The scrape itself is counted, like any request.
    assert after['gardien_http_requests_total{method="GET",route="/metrics",status="2xx"}'] == "1"


def test_metrics_are_refused_to_other_addresses_without_the_token(
    settings: Settings, state: State, tmp_path: Path
) -> None:
    remote = TestClient(
        create_app(settings, state=state, scheduler=False), client=("203.0.113.9", 1)
    )
    with remote:
        refused = remote.get("/metrics")
        assert refused.status_code == 403 and "GARDIEN_METRICS_TOKEN" in refused.text
        assert "gardien_" not in refused.text
    with_token = settings.model_copy(update={"metrics_token": "s3cret-token-for-scrapes"})
    state.settings = with_token
    remote = TestClient(
        create_app(with_token, state=state, scheduler=False), client=("203.0.113.9", 1)
    )
    with remote:
        assert remote.get("/metrics").status_code == 403
        wrong = remote.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        good = remote.get("/metrics", headers={"Authorization": "Bearer s3cret-token-for-scrapes"})
        assert good.status_code == 200 and "gardien_outbox_messages" in good.text
