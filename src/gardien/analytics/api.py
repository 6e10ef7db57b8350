"""``GET /api/analytics/reports``: a site's audience report for a range of days, as JSON or CSV,
for scripts holding a personal API token (``Authorization: Bearer`` or Matomo's
``token_auth`` parameter) whose role grants ``view_reports``.

The answer is built from the daily rollups only (never a scan of raw hits), so it is as current
as the rollups are; ``rollups_as_of`` says how current that is. Reading aggregates is not
personal-data access, so a report read is not written to the audit trail (the token's last use
is recorded); a CSV downloaded from the dashboard is.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from gardien.analytics.period import MAX_DAYS, ReportPeriod, check_period
from gardien.analytics.reports import build_report, report_as_csv, report_as_dict
from gardien.deps import AppState, ReadSession
from gardien.errors import N_, BadRequest
from gardien.security.auth import AdminContext, require
from gardien.security.permissions import Permission

router = APIRouter()
ReportReader = Annotated[AdminContext, Depends(require(Permission.view_reports))]
FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8"}

_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "site",
        "in": "query",
        "required": True,
        "description": "A site id declared in the register's `sites`.",
        "schema": {"type": "integer", "minimum": 1},
    },
    {
        "name": "from",
        "in": "query",
        "required": True,
        "description": "First day, YYYY-MM-DD (UTC), included.",
        "schema": {"type": "string", "format": "date"},
    },
    {
        "name": "to",
        "in": "query",
        "required": True,
        "description": f"Last day, YYYY-MM-DD (UTC), included; at most {MAX_DAYS} days in all.",
        "schema": {"type": "string", "format": "date"},
    },
    {
        "name": "format",
        "in": "query",
        "required": False,
        "description": "`json` (default) or `csv`.",
        "schema": {"type": "string", "enum": list(FORMATS), "default": "json"},
    },
    {
        "name": "token_auth",
        "in": "query",
        "required": False,
        "description": "A personal API token, as Matomo's reporting API takes it; "
        "`Authorization: Bearer <token>` is preferred (it stays out of access logs).",
        "schema": {"type": "string"},
    },
]
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad site, dates, order or range length (the reason in `detail`)."},
    401: {"description": "No token, or an unknown, revoked or orphaned one."},
    403: {"description": "The token's role does not grant `view_reports`."},
}


def report_response(period: ReportPeriod, fmt: str, content: str, *, attachment: bool) -> Response:
    """The report as a download (or an API answer): never cached, named after its range."""
    headers = {"Cache-Control": "no-store"}
    if attachment:
        name = f"analytics-site{period.site.id}-{period.start}-{period.end}.{fmt}"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(content, media_type=FORMATS[fmt], headers=headers)


def check_format(fmt: str | None) -> str:
    chosen = (fmt or "json").strip().lower()
    if chosen not in FORMATS:
        raise BadRequest(N_("format: json or csv"))
    return chosen


@router.get(
    "/api/analytics/reports",
    summary="A site's audience report for a range of days (JSON or CSV)",
    response_class=Response,
    responses={
        200: {
            "description": "The report: totals, days, the tables, `rollups_as_of`.",
            "content": {"application/json": {}, "text/csv": {}},
        },
        **_ERRORS,
    },
    openapi_extra={"parameters": _PARAMETERS, "security": [{"bearer": []}]},
)
def analytics_reports(
    state: AppState, db: ReadSession, request: Request, context: ReportReader
) -> Response:
    # Read by hand (documented above) so that every malformed value is a 400 with a reason,
    # checked only once the token is: a stranger learns nothing about the site list.
    query = request.query_params
    period = check_period(state.register, query.get("site"), query.get("from"), query.get("to"))
    fmt = check_format(query.get("format"))
    report = build_report(db, period.site.id, period.start, period.end)
    if fmt == "csv":
        content = report_as_csv(report)
    else:
        content = json.dumps(report_as_dict(report), ensure_ascii=False)
    return report_response(period, fmt, content, attachment=False)
