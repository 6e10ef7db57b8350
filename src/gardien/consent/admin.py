"""The consent pages of the admin: decisions per day (a chart), acceptance per category and
revision, search by consent id, the revision archive, exports."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from gardien.consent import content as banner
from gardien.consent.models import ConsentRevision
from gardien.consent.records import ACTIONS, CONSENT_ID
from gardien.consent.service import Filters, export, history, records, stats
from gardien.deps import AppState, DbSession, ReadSession
from gardien.errors import N_, BadRequest, NotFound
from gardien.security import audit
from gardien.security.admin import language, page
from gardien.security.auth import AdminContext, require
from gardien.security.permissions import Permission

router = APIRouter(prefix="/admin")
Reports = Annotated[AdminContext, Depends(require(Permission.view_reports))]
PersonalData = Annotated[AdminContext, Depends(require(Permission.view_personal_data))]
Exporter = Annotated[AdminContext, Depends(require(Permission.export_data))]
COLOURS = {
    "accept_all": "#1b5e20",
    "custom_save": "#2e7d32",
    "renewal": "#558b2f",
    "reject_all": "#b71c1c",
    "close_dismiss": "#e65100",
    "gpc_auto_reject": "#4a148c",
    "withdraw": "#37474f",
}


@dataclass(frozen=True)
class Bar:
    x: int
    y: int
    height: int
    colour: str
    label: str


def chart(per_day: list[tuple[str, dict[str, int]]], height: int = 160) -> dict[str, Any]:
    """A stacked bar per day, drawn as SVG on the server (no script, works under the CSP)."""
    peak = max((sum(counts.values()) for _, counts in per_day), default=0) or 1
    width = 18
    bars: list[Bar] = []
    for index, (day, counts) in enumerate(per_day):
        top = height
        for action in ACTIONS:
            count = counts.get(action, 0)
            if not count:
                continue
            size = max(1, round(count / peak * (height - 10)))
            top -= size
            bars.append(
                Bar(index * width + 2, top, size, COLOURS[action], f"{day} {action}: {count}")
            )
    return {
        "bars": bars,
        "width": max(1, len(per_day)) * width + 4,
        "height": height,
        "peak": peak,
        "legend": [(action, COLOURS[action]) for action in ACTIONS],
    }


def _since(days: int, now: dt.datetime) -> dt.datetime:
    return (now - dt.timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)


@router.get("/consent", response_class=HTMLResponse, summary="Consent decisions and revisions")
def consent_overview(
    state: AppState,
    db: ReadSession,
    request: Request,
    context: Reports,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> HTMLResponse:
    figures = stats(db, _since(days, state.clock.now()))
    optional = {c.id for c in state.register.consent_categories if not c.strictly_necessary}
    return page(
        state,
        request,
        "consent.html",
        context,
        days=days,
        figures=figures,
        chart=chart(figures.per_day),
        acceptance=[row for row in figures.per_category if row[1] in optional],
        actions=ACTIONS,
    )


@router.get(
    "/consent/records", response_class=HTMLResponse, summary="A consent id's records (audited)"
)
def consent_search(
    state: AppState,
    db: DbSession,
    request: Request,
    context: PersonalData,
    consent_id: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    consent_id = consent_id.strip().lower()
    found: list[dict[str, Any]] | None = None
    if consent_id:
        if not CONSENT_ID.match(consent_id):
            raise BadRequest(N_("a consent id is 32 hexadecimal characters"))
        found = history(db, consent_id)
        audit.record(
            db,
            context.actor,
            "view.consent_records",
            state.clock.now(),
            target_type="consent_id",
            reason=f"{len(found)} records",
        )
    return page(state, request, "consent_records.html", context, consent_id=consent_id, found=found)


@router.get(
    "/consent/revisions/{number}",
    response_class=HTMLResponse,
    summary="One archived banner revision, as shown in each language",
)
def consent_revision(
    state: AppState, db: ReadSession, request: Request, context: Reports, number: int
) -> HTMLResponse:
    revision = db.get(ConsentRevision, number)
    if revision is None:
        raise NotFound(N_("banner revision %(revision)s does not exist"), revision=number)
    document = json.loads(revision.content)
    lang = language(state, request)
    changes = banner.describe_changes(
        {str(k): list(v) for k, v in (revision.changes or {}).items() if isinstance(v, list)},
        document,
        lang,
    )
    return page(
        state,
        request,
        "consent_revision.html",
        context,
        revision=revision,
        document=document,
        changes=changes,
    )


@router.get("/consent/export", summary="Export consent records as CSV or JSON (audited)")
def consent_export(
    state: AppState,
    db: DbSession,
    context: Exporter,
    fmt: Annotated[str, Query(alias="format", pattern="^(csv|json)$")] = "csv",
    start: Annotated[dt.date | None, Query(alias="from")] = None,
    end: Annotated[dt.date | None, Query(alias="to")] = None,
    action: Annotated[str | None, Query(max_length=20)] = None,
    revision: Annotated[int | None, Query(ge=1)] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    if action and action not in ACTIONS:
        raise BadRequest(N_("unknown action: %(action)s"), action=action[:20])
    filters = Filters(
        start=dt.datetime.combine(start, dt.time(), dt.UTC) if start else None,
        end=dt.datetime.combine(end, dt.time(), dt.UTC) + dt.timedelta(days=1) if end else None,
        action=action or None,
        revision=revision,
        category=category or None,
    )
    text = export(records(db, filters), fmt)
    count = text.count("\n") - 1 if fmt == "csv" else len(json.loads(text))
    audit.record(
        db,
        context.actor,
        "consent.exported",
        state.clock.now(),
        target_type="consent_record",
        reason=f"{count} records, {fmt}",
    )
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
    return Response(
        text,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="consent-records.{fmt}"',
            "Cache-Control": "no-store",
        },
    )


class ConsentStats(BaseModel):
    total: int
    per_day: dict[str, dict[str, int]]
    acceptance: list[dict[str, Any]]


@router.get("/api/consent/stats", summary="Decisions per day and acceptance per category")
def consent_stats_api(
    state: AppState,
    db: ReadSession,
    context: Reports,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> ConsentStats:
    figures = stats(db, _since(days, state.clock.now()))
    return ConsentStats(
        total=figures.total,
        per_day=dict(figures.per_day),
        acceptance=[
            {"revision": r, "category": c, "granted": g, "decisions": n}
            for r, c, g, n in figures.per_category
        ],
    )
