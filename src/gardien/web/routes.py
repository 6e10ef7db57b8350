"""Service endpoints: health, Global Privacy Control support, static files."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from gardien.deps import AppState

router = APIRouter()


class Health(BaseModel):
    status: str


@router.get(
    "/healthz",
    summary="Liveness and database reachability",
    responses={503: {"model": Health, "description": "The database is unreachable"}},
)
def healthz(state: AppState, response: Response) -> Health:
    try:
        with state.readers() as session:
            session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any database failure means "not ready"
        response.status_code = 503
        return Health(status="database unavailable")
    return Health(status="ok")


@router.get("/.well-known/gpc.json", summary="Declares that this site honours GPC")
def gpc() -> JSONResponse:
    # https://privacycg.github.io/gpc-spec/#gpc-support-resource
    return JSONResponse({"gpc": True, "lastUpdate": "2026-11-28"})
