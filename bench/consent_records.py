"""Consent records: what recording a decision costs, against a bare POST on the same server.

Target (reported, not enforced): ``POST /api/consent/records`` — validated, chained, committed
through group commit and only then answered — sustains at least half the requests per second
of ``POST /bench/bare`` (same body, same middleware, a handler that reads the body and answers
201) in the same run. The public-write budgets are raised for the run (both paths pass through
them alike); everything else is ``create_app`` as ``gardien serve`` builds it. The records
are counted afterwards and the chain verified, so a path that dropped or broke records cannot
pass.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bench.common import (
    HOST,
    Verdict,
    free_port,
    gardien_env,
    heading,
    print_table,
    ratio,
    serving,
    verdict,
)
from bench.throughput import load

BARE = "/bench/bare"
RECORDS = "/api/consent/records"
CONNECTIONS = [8, 32]
WARMUP_SECONDS = 1.0
MEASURE_SECONDS = 6.0
ROUNDS = 2
TARGET = 0.5


def create_bench_app() -> FastAPI:
    from starlette.middleware import Middleware

    from gardien import logs
    from gardien.app import create_app
    from gardien.config import Settings
    from gardien.runtime import build_state, start
    from gardien.security.public_limits import PublicWriteLimits
    from gardien.security.ratelimit import RateLimit
    from gardien.storage.migrate import upgrade_fast

    settings = Settings()
    logs.configure(settings.log_level)
    state = build_state(settings)
    upgrade_fast(state.engine)
    start(state)
    app = create_app(settings, state=state, publish_on_start=True, scheduler=False)

    async def bare(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"ok": True}, status_code=201)

    app.add_api_route(BARE, bare, methods=["POST"], include_in_schema=False)
    limits = [i for i, m in enumerate(app.user_middleware) if _is_limits(m.cls)]
    if len(limits) != 1:
        raise RuntimeError("create_app no longer wires exactly one PublicWriteLimits")
    plenty = dt.timedelta(minutes=1)
    app.user_middleware[limits[0]] = Middleware(
        PublicWriteLimits,
        sessions=state.sessions,
        secret=lambda: state.secret,
        clock=state.clock,
        per_address=RateLimit("bench_ip", 10**9, plenty),
        overall=RateLimit("bench_all", 10**9, plenty),
    )
    return app


def _is_limits(factory: object) -> bool:
    from gardien.security.public_limits import PublicWriteLimits

    return factory is PublicWriteLimits


def bench_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.consent_records:create_bench_app",
        "--factory",
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--no-server-header",
    ]


def _decision(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/consent/config.json?lang=fr") as answer:
        config = json.load(answer)
    optional = [c["id"] for c in config["categories"] if not c["required"]]
    return {
        "consent_id": "0123456789abcdef0123456789abcdef",
        "action": "accept_all",
        "layer": "banner",
        "control": "accept",
        "revision": config["revision"],
        "hash": config["hash"],
        "choices": dict.fromkeys(optional, True),
        "language": "fr",
        "page": "/",
        "client_time": "2026-11-28T10:00:00.000Z",
        "gpc": False,
        "dnt": False,
    }


@dataclass(frozen=True)
class Measured:
    connections: int
    bare_rps: float
    records_rps: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def ratio(self) -> float:
        return ratio(self.records_rps, self.bare_rps)


def _stored(database: Path) -> tuple[int, bool]:
    from sqlalchemy import create_engine, func, select
    from sqlalchemy.orm import Session

    from gardien.consent.models import ConsentRecord
    from gardien.storage.chain import ChainRow, verify

    engine = create_engine(f"sqlite:///{database}")
    try:
        with Session(engine) as session:
            count = int(session.scalar(select(func.count()).select_from(ConsentRecord)) or 0)
            rows = session.execute(
                select(ConsentRecord.seq, ConsentRecord.prev_hash, ConsentRecord.hash).order_by(
                    ConsentRecord.seq
                )
            ).all()
    finally:
        engine.dispose()
    # Links only (seq order and prev_hash = previous hash); contents are checked by the tests.
    linked = verify(ChainRow(seq, prev, digest, None) for seq, prev, digest in rows) is None
    return count, linked


def run() -> list[Verdict]:
    heading(
        f"consent records: POST {RECORDS} against POST {BARE} on one server (SQLite), "
        f"{MEASURE_SECONDS:.0f} s per path in {ROUNDS} alternating rounds, keep-alive, loopback"
    )
    measured: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="gardien-bench-") as data_dir:
        env = gardien_env(Path(data_dir))
        port = free_port()
        body_file = Path(data_dir) / "decision.json"
        with serving(bench_command(port), env, port) as server:
            body_file.write_text(json.dumps(_decision(port)))
            bare = f"POST:{BARE}:{body_file}"
            records = f"POST:{RECORDS}:{body_file}"
            acknowledged = 0
            for connections in CONNECTIONS:
                paths = load(
                    server,
                    [bare, records],
                    connections,
                    warmup=WARMUP_SECONDS,
                    seconds=MEASURE_SECONDS,
                    rounds=ROUNDS,
                )
                b, r = paths[bare], paths[records]
                acknowledged += r.requests - r.errors
                measured.append(
                    Measured(
                        connections,
                        b.requests_per_second,
                        r.requests_per_second,
                        r.p50_ms,
                        r.p99_ms,
                        b.errors + r.errors,
                    )
                )
        stored, linked = _stored(Path(data_dir) / "gardien.db")
    print_table(
        "conns bare_req/s records_req/s ratio p50_ms p99_ms errors target".split(),
        [
            [
                str(m.connections),
                f"{m.bare_rps:.0f}",
                f"{m.records_rps:.0f}",
                f"{m.ratio:.3f}",
                f"{m.p50_ms:.2f}",
                f"{m.p99_ms:.2f}",
                str(m.errors),
                verdict(m.ratio >= TARGET and not m.errors),
            ]
            for m in measured
        ],
    )
    print(
        f"records stored: {stored} (at least {acknowledged} acknowledged), chain intact: {linked}"
    )
    worst = min(measured, key=lambda m: m.ratio)
    errors = sum(m.errors for m in measured)
    ok = worst.ratio >= TARGET and errors == 0 and linked and stored >= acknowledged
    return [
        Verdict(
            "consent records ≥ 0.5 × bare POST req/s (SQLite, worst conns)",
            f"x{worst.ratio:.3f} at {worst.connections} conns"
            + (f", {errors} errors" if errors else ""),
            ok,
        )
    ]


def main() -> None:
    run()


if __name__ == "__main__":
    main()
