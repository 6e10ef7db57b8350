"""Pure ASGI middleware: security headers, request-size limit, access log without personal data."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("gardien.access")


def content_security_policy(frame_ancestors: Iterable[str]) -> str:
    ancestors = " ".join(["'self'", *frame_ancestors])
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
        f"form-action 'self'; frame-ancestors {ancestors}"
    )


class SecurityHeaders:
    """Adds the headers every response needs; HSTS only when served over https."""

    def __init__(self, app: ASGIApp, *, csp: str, always_https: bool = False) -> None:
        self.app = app
        self.always_https = always_https
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
            (b"x-frame-options", b"SAMEORIGIN"),
            (
                b"permissions-policy",
                b"camera=(), microphone=(), geolocation=(), interest-cohort=()",
            ),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = self.always_https or scope.get("scheme") == "https"
        admin = scope.get("path", "").startswith("/admin")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                # A page meant to be embedded by the register's sites (the analytics opt-out)
                # names them in request.state.frame_ancestors: they join 'self' in the CSP, and
                # X-Frame-Options, which cannot name other hosts, is left out.
                ancestors = scope.get("state", {}).get("frame_ancestors")
                if ancestors is not None and b"content-security-policy" not in present:
                    headers.append(
                        (b"content-security-policy", content_security_policy(ancestors).encode())
                    )
                    present |= {b"content-security-policy", b"x-frame-options"}
                headers += [h for h in self.headers if h[0] not in present]
                if admin:  # never indexed, never cached by a shared cache
                    headers.append((b"x-robots-tag", b"noindex, nofollow"))
                    if b"cache-control" not in present:
                        headers.append((b"cache-control", b"no-store"))
                if https:
                    headers.append(
                        (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
                    )
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodySizeLimit:
    """Refuses bodies over ``max_bytes`` with 413, whether or not Content-Length is declared.
    ``uploads`` names the few paths that take a document, with their own (larger) limit; a
    name ending in ``/`` covers every path under it (``/rights/document/`` for each case)."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, uploads: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = dict(uploads or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.uploads.get(path) or next(
            (
                size
                for prefix, size in self.uploads.items()
                if prefix.endswith("/") and path.startswith(prefix)
            ),
            self.max_bytes,
        )
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _plain_error(send, 400, b"invalid Content-Length")
                    return
                if declared > limit:
                    await _plain_error(send, 413, b"request body too large")
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        tracked = StartTracker(send)
        try:
            await self.app(scope, limited_receive, tracked)
        except BodyTooLarge:
            if not tracked.started:
                await _plain_error(send, 413, b"request body too large")


class StartTracker:
    """Wraps ``send`` to remember whether the response has started (then it is too late to
    answer with an error page)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` past the limit. An HTTP 413 exception, so a framework that
    catches errors while parsing a body (FastAPI's form parser) still answers 413."""

    def __init__(self) -> None:
        super().__init__(413, "request body too large")


async def _plain_error(send: Send, status: int, body: bytes) -> None:
    payload = b'{"error":"' + body + b'"}'
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class AccessLog:
    """One JSON line per request: method, path (no query string), status, duration. No IP."""

    def __init__(
        self, app: ASGIApp, observe: Callable[[str, str, int, float], None] | None = None
    ) -> None:
        self.app = app
        self.observe = observe
        """Also told of each request (``/metrics``' counters): method, route, status, seconds."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            seconds = time.perf_counter() - started
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": path,
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                },
            )
            if self.observe is not None:
                self.observe(scope["method"], path, status, seconds)
