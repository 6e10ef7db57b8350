"""``gardien serve`` as a real process: refuses a bad register, publishes versions on start,
and treats PostgreSQL migrations explicitly."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support import gardien, gardien_env, serving


def test_invalid_register_refuses_to_start_with_precise_messages(
    tmp_path: Path, register_path: Path, database_url: str
) -> None:
    text = register_path.read_text(encoding="utf-8")
    register_path.write_text(
        text.replace("period: P90D", "period: P90X", 1).replace(
            "    fr: Politique de confidentialité\n", "", 1
        ),
        encoding="utf-8",
    )
    result = gardien(
        "serve", "--port", "1", env=gardien_env(tmp_path / "data", database_url, register_path)
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any(
        "activities[0].retention.period: 'P90X' is not an ISO 8601 duration" in line
        for line in lines
    )
    assert any("policy.title: missing translation: fr" in line for line in lines)
    assert all(line.startswith(f"{register_path}:") for line in lines)
    assert "Traceback" not in result.stderr


def test_serve_publishes_then_a_purpose_edit_makes_version_2(
    tmp_path: Path, register_path: Path, database_url: str
) -> None:
    env = gardien_env(tmp_path / "data", database_url, register_path)
    extra = () if database_url.startswith("sqlite") else ("--upgrade",)
    with serving(env, *extra) as server:
        for lang, word in (
            ("en", "Privacy policy"),
            ("fr", "Politique de confidentialité"),
            ("ro", "Politica de confidențialitate"),
        ):
            page = httpx.get(f"{server.url}/privacy", params={"lang": lang})
            assert page.status_code == 200
            assert word in page.text
        assert httpx.get(f"{server.url}/api/policy").json()["number"] == 1
    text = register_path.read_text(encoding="utf-8")
    register_path.write_text(
        text.replace("the question you asked.", "your question and nothing else.", 1),
        encoding="utf-8",
    )
    with serving(env) as server:
        assert httpx.get(f"{server.url}/api/policy").json()["number"] == 2
        versions = httpx.get(f"{server.url}/privacy/versions")
        assert "/privacy/versions/2" in versions.text
    listing = gardien("policy", "versions", env=env | {"COLUMNS": "200"})
    assert listing.returncode == 0
    assert "serve" in listing.stdout


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_postgres_with_pending_migrations_needs_consent_to_upgrade(
    tmp_path: Path, register_path: Path, database_url: str
) -> None:
    env = gardien_env(tmp_path / "data", database_url, register_path)
    refused = gardien("serve", "--port", "1", env=env)
    assert refused.returncode == 2
    assert "pending migrations" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert gardien("db", "upgrade", env=env).returncode == 0
    with serving(env) as server:
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
