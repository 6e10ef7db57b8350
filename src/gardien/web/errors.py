"""Errors as people and programs expect them: styled pages for browsers, JSON for APIs.

Validation errors never echo the submitted value (it may be personal data): only the field
and the reason. A 500 logs the exception type, not its message.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from gardien.deps import state_of
from gardien.errors import GardienError, Localised, TooManyRequests
from gardien.i18n import negotiate
from gardien.web.middleware import BodyTooLarge, StartTracker

log = logging.getLogger("gardien.errors")


def _wants_json(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/admin/api/")) or path.endswith(".json"):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _page(request: Request, status: int, title: str, detail: str | Localised) -> Response:
    """JSON for programs (the English ``message``, stable); a page in the visitor's language
    for people."""
    if _wants_json(request):
        message = detail.message if isinstance(detail, Localised) else detail
        return JSONResponse({"error": title, "detail": message}, status_code=status)
    try:
        state = state_of(request)
        languages = state.register.languages
        language = negotiate(
            request.query_params.get("lang"),
            request.headers.get("accept-language"),
            languages.available,
            languages.default,
        )
        html = (
            state.env(language)
            .get_template("error.html")
            .render(
                status=status,
                title=title,
                detail=detail.text(language) if isinstance(detail, Localised) else detail,
                languages=[],
                path="/",
            )
        )
    except Exception:  # noqa: BLE001 - the error page must never fail itself
        html = f"<!doctype html><title>{status}</title><h1>{status}</h1>"
    return HTMLResponse(html, status_code=status)


def install(app: FastAPI) -> None:
    describe_refusals(app)

    @app.exception_handler(GardienError)
    async def domain_error(request: Request, exc: GardienError) -> Response:
        if (
            exc.status == 401
            and request.url.path.startswith("/admin")
            and not request.url.path.startswith("/admin/api/")
            and not _wants_json(request)
        ):
            return RedirectResponse("/admin/login", status_code=303)
        response = _page(request, exc.status, exc.code, exc)
        if exc.status == 401 and _wants_json(request):
            response.headers["WWW-Authenticate"] = 'Bearer realm="gardien"'
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        titles = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        detail = str(exc.detail) if exc.status_code != 404 else "This page does not exist."
        response = _page(request, exc.status_code, titles.get(exc.status_code, "error"), detail)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def out_of_range(request: Request, exc: Exception) -> Response:
        # A number past what the database stores (an id of 30 digits) or a value it refuses
        # to hold (a NUL character on PostgreSQL): the request's fault, and its transaction is
        # rolled back whole. Never the value itself in the answer.
        return _page(
            request, 400, "invalid_value", "A value in the request is out of the range stored."
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in error["loc"]), "reason": error["msg"]}
            for error in exc.errors()
        ]
        return JSONResponse({"error": "invalid_request", "problems": problems}, status_code=422)


class CatchAll:
    """Turns an unexpected exception into the styled 500 page *inside* the header middleware,
    so even error pages carry the security headers (Starlette's own handler sits outside)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = StartTracker(send)
        try:
            await self.app(scope, receive, tracked)
        except BodyTooLarge:
            raise
        except Exception as exc:
            log.error("unhandled error", extra={"error": type(exc).__name__})
            if tracked.started:
                raise
            response = _page(
                Request(scope), 500, "internal_error", "Something went wrong on our side."
            )
            await response(scope, receive, send)


REFUSALS = {
    "400": "The request is malformed or breaks a rule; the reason is in the body.",
    "401": "Not signed in, or the API token is invalid.",
    "403": "Signed in, but the role or the form's CSRF token does not allow this.",
    "404": "No such thing (or not one this caller may know about).",
    "405": "This method is not allowed here.",
    "409": "It conflicts with the current state (already done, already exists).",
    "410": "No longer available (expired or erased).",
    "413": "The body is larger than this path accepts.",
    "415": "The body is not in a media type this operation reads.",
    "422": "A field is missing or has the wrong shape; each problem names its field.",
    "429": "Too many requests: the Retry-After header says when to try again.",
}
_REFUSAL_SCHEMA: dict[str, object] = {
    "anyOf": [
        {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
        },
        {
            "type": "object",
            "required": ["error", "problems"],
            "properties": {
                "error": {"type": "string"},
                "problems": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "reason"],
                        "properties": {
                            "field": {"type": "string"},
                            "reason": {"type": "string"},
                        },
                    },
                },
            },
        },
    ]
}


def describe_refusals(app: FastAPI) -> None:
    """The published schema says what every operation may refuse with and in which shape (a
    JSON body for programs, an error page for browsers), so a client generated from it, or a
    fuzzer checking answers against it, meets no undocumented status. FastAPI's own 422 model
    is replaced: ours lists ``problems`` and never echoes the value sent."""
    build = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        paths = schema.get("paths", {})
        for operations in paths.values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in REFUSALS.items():
                    own = responses.get(status)
                    if own is not None and status != "422":
                        # A route that describes a refusal itself answers it in its own
                        # media type (``/metrics``: text/plain).
                        success = responses.get("200", {}).get("content")
                        own.setdefault("content", success or {})
                        continue
                    responses[status] = {
                        "description": description,
                        "content": {
                            "application/json": {"schema": _REFUSAL_SCHEMA},
                            "text/html": {"schema": {"type": "string"}},
                        },
                    }
                responses.setdefault(
                    "303", {"description": "See the page named in the Location header."}
                )
        components = schema.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
