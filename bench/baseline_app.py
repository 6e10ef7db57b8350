"""The baseline server: a bare ASGI app answering 200 on ``/healthz`` and nothing else.

Started with ``python -m uvicorn bench.baseline_app:app`` so that its start-up time, memory and
throughput measure the floor any uvicorn application pays, against which Gardien is compared.
No framework import on purpose: only the interpreter and uvicorn are in the baseline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping

Message = MutableMapping[str, object]
Scope = MutableMapping[str, object]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HEALTHY = b'{"status":"ok"}'
JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(HEALTHY)).encode()),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    found = scope["path"] == "/healthz"
    body = HEALTHY if found else b""
    headers = JSON_HEADERS if found else [(b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 200 if found else 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})
