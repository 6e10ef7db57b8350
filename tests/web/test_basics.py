"""What every response carries, and how the service fails: headers, limits, errors, logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient

from gardien.app import create_app
from gardien.config import Settings
from gardien.deps import State
from gardien.logs import JsonFormatter


def test_healthz_and_gpc(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    gpc = client.get("/.well-known/gpc.json")
    assert gpc.status_code == 200
    assert gpc.json()["gpc"] is True


def test_security_headers_on_every_response(client: TestClient) -> None:
    for path in ("/privacy", "/healthz", "/does-not-exist", "/static/gardien.css"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'self'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert "strict-transport-security" not in response.headers


def test_hsts_when_served_over_https(settings: Settings, state: State) -> None:
    app = create_app(settings, state=state, scheduler=False)
    with TestClient(app, base_url="https://testserver") as https_client:
        response = https_client.get("/healthz")
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")


def test_oversized_body_is_413_declared_or_streamed(settings: Settings, state: State) -> None:
    app = create_app(settings, state=state, scheduler=False)
    echo = APIRouter()
    received: list[int] = []

    @echo.post("/api/echo-size")
    async def size(request: Request) -> dict[str, int]:
        body = await request.body()
        received.append(len(body))
        return {"size": len(body)}

    app.include_router(echo)
    limit = state.settings.max_body_bytes

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536

    with TestClient(app) as client:
        assert client.post("/api/echo-size", content=b"x" * 10).json() == {"size": 10}
        declared = client.post("/api/echo-size", content=b"x" * (limit + 1))
        assert declared.status_code == 413
        streamed = client.post("/api/echo-size", content=chunks())
        assert streamed.status_code == 413
    assert received == [10]  # the handler never saw an oversized body


def test_styled_404_for_browsers_json_for_apis(client: TestClient) -> None:
    page = client.get("/nowhere", headers={"Accept": "text/html", "Accept-Language": "fr"})
    assert page.status_code == 404
    assert 'lang="fr"' in page.text
    assert "/static/gardien.css" in page.text
    api = client.get("/api/nowhere")
    assert api.status_code == 404
    assert api.json()["error"] == "not_found"


def test_styled_500_without_details(
    settings: Settings, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, state=state, scheduler=False)
    boom = APIRouter()

    @boom.get("/boom")
    def explode() -> None:
        raise RuntimeError("secret-value alice@example.org")

    app.include_router(boom)
    with TestClient(app, raise_server_exceptions=False) as failing:
        response = failing.get("/boom", headers={"Accept": "text/html"})
    assert response.status_code == 500
    assert "alice@example.org" not in response.text
    assert "content-security-policy" in response.headers
    assert "<main" in response.text
    assert "alice@example.org" not in caplog.text


def test_validation_errors_do_not_echo_input(client: TestClient) -> None:
    response = client.get("/privacy/versions/alice@example.org")
    assert response.status_code == 422
    assert "alice@example.org" not in response.text
    assert response.json()["problems"][0]["field"] == "path.number"


def test_openapi_lists_public_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/privacy",
        "/cookies",
        "/privacy/versions",
        "/privacy/versions/{number}",
        "/api/policy",
        "/healthz",
        "/.well-known/gpc.json",
    ):
        assert path in spec["paths"], path


def test_access_log_has_route_not_query_or_ip(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="gardien.access"):
        client.get(
            "/privacy/versions/1?email=alice@example.org",
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
    records = [r for r in caplog.records if r.name == "gardien.access"]
    assert records
    line = JsonFormatter().format(records[-1])
    entry = json.loads(line)
    assert entry["route"] == "/privacy/versions/{number}"
    assert entry["status"] == 200
    assert "alice" not in line
    assert "203.0.113.9" not in line
    assert "testclient" not in line


def test_app_factory_builds_no_global_state(settings: Settings, state: State) -> None:
    first = create_app(settings, state=state, scheduler=False)
    second = create_app(settings, state=state, scheduler=False)
    assert isinstance(first, FastAPI)
    assert first is not second
    assert first.state.gardien is second.state.gardien is state
