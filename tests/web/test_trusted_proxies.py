"""``GARDIEN_TRUSTED_PROXIES`` reaches uvicorn: forwarded headers are believed from a listed
proxy and ignored from anyone else, as a real ``gardien serve`` process shows through
``/metrics``' loopback check."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import gardien_env, serving

OUTSIDE = {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"}


def test_forwarded_headers_count_only_from_trusted_proxies(
    tmp_path: Path, database_url: str, register_path: Path
) -> None:
    env = gardien_env(tmp_path / "data", database_url, register_path)
    # Default: the loopback proxy is trusted, so a request it forwards comes from outside.
    with serving(env, "--upgrade") as server:
        assert httpx.get(f"{server.url}/metrics").status_code == 200
        forwarded = httpx.get(f"{server.url}/metrics", headers=OUTSIDE)
        assert forwarded.status_code == 403
        assert "GARDIEN_METRICS_TOKEN" in forwarded.text
    # Only another proxy is trusted: the same headers from loopback are ignored.
    with serving({**env, "GARDIEN_TRUSTED_PROXIES": "192.0.2.1"}) as server:
        ignored = httpx.get(f"{server.url}/metrics", headers=OUTSIDE)
        assert ignored.status_code == 200 and "gardien_http_requests_total" in ignored.text
    # The token opens it to a forwarded client.
    token = "a-long-random-metrics-token"
    with serving({**env, "GARDIEN_METRICS_TOKEN": token}) as server:
        opened = httpx.get(
            f"{server.url}/metrics", headers={**OUTSIDE, "Authorization": f"Bearer {token}"}
        )
        assert opened.status_code == 200
