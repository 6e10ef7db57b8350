"""``/metrics``: what an operator's Prometheus scrapes, in the text exposition format 0.0.4.

Two kinds of figures. Per process (each instance is scraped on its own port, and Prometheus
sums them): requests by route and status class, their latency histogram, the group-commit
writer's queue. Shared (read from the database, so every instance reports the same value):
outbox messages by status, the last successful purge of each register activity, how old the
analytics rollups are, the last backup. No figure carries a personal value or a path with an
identifier in it: requests are labelled by their route template, never by the URL.

Access: from loopback only, or with ``Authorization: Bearer <GARDIEN_METRICS_TOKEN>`` when
that setting is set. Behind a reverse proxy the client address is the forwarded one (only
proxies listed in ``GARDIEN_TRUSTED_PROXIES`` are believed), so a scrape through the proxy
from outside needs the token.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import threading
from bisect import bisect_left
from collections import defaultdict

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select

from gardien.deps import AppState, State

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Latency histogram bounds in seconds (Prometheus client defaults)."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RequestMetrics:
    """Counters of one process, updated by the access-log middleware; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, f"{status // 100}xx")] += 1
            counts = self.buckets.setdefault(route, [0] * (len(BUCKETS) + 1))
            counts[bisect_left(BUCKETS, seconds)] += 1
            self.sums[route] += seconds
            self.counts[route] += 1

    def render(self) -> list[str]:
        with self._lock:
            requests = dict(self.requests)
            buckets = {r: list(c) for r, c in self.buckets.items()}
            sums, counts = dict(self.sums), dict(self.counts)
        lines = [
            "# HELP gardien_http_requests_total Requests answered, by route template and status.",
            "# TYPE gardien_http_requests_total counter",
        ]
        for (method, route, status), count in sorted(requests.items()):
            labels = f'method="{method}",route="{_escape(route)}",status="{status}"'
            lines.append(f"gardien_http_requests_total{{{labels}}} {count}")
        lines += [
            "# HELP gardien_http_request_duration_seconds Time to answer, by route template.",
            "# TYPE gardien_http_request_duration_seconds histogram",
        ]
        for route in sorted(buckets):
            label = f'route="{_escape(route)}"'
            running = 0
            for bound, count in zip((*BUCKETS, float("inf")), buckets[route], strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(
                    f'gardien_http_request_duration_seconds_bucket{{{label},le="{le}"}} {running}'
                )
            lines.append(f"gardien_http_request_duration_seconds_sum{{{label}}} {sums[route]!r}")
            lines.append(f"gardien_http_request_duration_seconds_count{{{label}}} {counts[route]}")
        return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _timestamp(moment: dt.datetime | None) -> str:
    if moment is None:
        return "NaN"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return repr(moment.timestamp())


def shared_metrics(state: State) -> list[str]:
    """Figures read from the database (the same on every instance) and from DATA_DIR."""
    from gardien.analytics.models import AnalyticsRollupState
    from gardien.backup.service import read_catalogue
    from gardien.forms.models import OutboxMessage
    from gardien.retention.models import PurgeReceipt

    lines = []
    with state.readers() as session:
        outbox: dict[str, int] = {
            str(status): int(count)
            for status, count in session.execute(
                select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
            )
        }
        purges: dict[str, dt.datetime | None] = {
            str(activity): finished
            for activity, finished in session.execute(
                select(PurgeReceipt.activity, func.max(PurgeReceipt.finished_at))
                .where(PurgeReceipt.status == "purged")
                .group_by(PurgeReceipt.activity)
            )
        }
        refreshed = session.scalar(
            select(AnalyticsRollupState.refreshed_at).where(AnalyticsRollupState.name == "hits")
        )
    lines += [
        "# HELP gardien_outbox_messages Outbox messages by status (pending: waiting to be sent).",
        "# TYPE gardien_outbox_messages gauge",
    ]
    for status in ("pending", "sending", "held", "dead", "sent"):
        lines.append(f'gardien_outbox_messages{{status="{status}"}} {int(outbox.get(status, 0))}')
    lines += [
        "# HELP gardien_retention_last_purge_timestamp_seconds Last successful purge per "
        "register activity (NaN: never).",
        "# TYPE gardien_retention_last_purge_timestamp_seconds gauge",
    ]
    for activity in sorted({a.id for a in state.register.activities} | set(purges)):
        value = _timestamp(purges.get(activity))
        lines.append(
            f'gardien_retention_last_purge_timestamp_seconds{{activity="{activity}"}} {value}'
        )
    lines += [
        "# HELP gardien_analytics_rollups_refreshed_timestamp_seconds Hits committed before "
        "this instant are in the audience reports.",
        "# TYPE gardien_analytics_rollups_refreshed_timestamp_seconds gauge",
        f"gardien_analytics_rollups_refreshed_timestamp_seconds {_timestamp(refreshed)}",
    ]
    try:
        backups = read_catalogue(state.settings)
    except Exception:  # noqa: BLE001 - a damaged catalogue must not take the endpoint down
        backups = []
    last = max((dt.datetime.fromisoformat(b["created_at"]) for b in backups), default=None)
    lines += [
        "# HELP gardien_backup_last_timestamp_seconds When the newest retained backup was "
        "taken (NaN: none).",
        "# TYPE gardien_backup_last_timestamp_seconds gauge",
        f"gardien_backup_last_timestamp_seconds {_timestamp(last)}",
        "# HELP gardien_backups_retained Backups taken and not yet purged.",
        "# TYPE gardien_backups_retained gauge",
        f"gardien_backups_retained {len(backups)}",
    ]
    return lines


def process_metrics(state: State) -> list[str]:
    writer = state.writer
    queued = writer._queue.qsize()
    return [
        "# HELP gardien_group_commit_queue Batches waiting for the group-commit writer "
        "(this process).",
        "# TYPE gardien_group_commit_queue gauge",
        f"gardien_group_commit_queue {queued}",
        "# HELP gardien_group_commit_rows_total Rows committed by the group-commit writer.",
        "# TYPE gardien_group_commit_rows_total counter",
        f"gardien_group_commit_rows_total {writer.rows}",
        "# HELP gardien_group_commit_batches_total Batches committed by the group-commit writer.",
        "# TYPE gardien_group_commit_batches_total counter",
        f"gardien_group_commit_batches_total {writer.batches}",
    ]


def recorder(state: State) -> RequestMetrics:
    """The process's request counters, kept with the running state."""
    found = state.caches.get("metrics")
    if not isinstance(found, RequestMetrics):
        found = state.caches["metrics"] = RequestMetrics()
    return found


def allowed(request: Request, token: str | None) -> bool:
    if token:
        given = request.headers.get("authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


router = APIRouter()


@router.get(
    "/metrics",
    summary="Prometheus metrics (loopback, or a bearer token)",
    response_class=PlainTextResponse,
    responses={403: {"description": "Neither from loopback nor with the metrics token"}},
)
def metrics(request: Request, state: AppState) -> PlainTextResponse:
    if not allowed(request, state.settings.metrics_token):
        return PlainTextResponse(
            "metrics are served to loopback, or with Authorization: Bearer "
            "<GARDIEN_METRICS_TOKEN>\n",
            status_code=403,
        )
    lines = [*recorder(state).render(), *process_metrics(state), *shared_metrics(state)]
    return PlainTextResponse("\n".join(lines) + "\n", media_type=CONTENT_TYPE)
