"""Connection log: what the middleware costs a bare endpoint, on SQLite and on PostgreSQL.

Target (reported, not enforced): a request through ``ConnectionLog`` — its row encrypted,
committed through group commit, and only then answered — served at no less than 90% of the
requests per second of the same endpoint without it. Both are measured on one Gardien server
(the full middleware stack of ``create_app``) in the same run: ``/bench/logged`` and
``/bench/plain`` run the same handler, and the plain one is on the middleware's skip list, so
the only difference is the log. The load generator alternates the two paths in rounds, in a
process of its own. Afterwards the rows are counted, so a log that dropped rows cannot pass.

The load generator is closed-loop: where a logged request's wait for its COMMIT (on PostgreSQL
a WAL flush to disk) leaves the server idle, the ratio measures durability latency; where the
server is saturated, it measures the log's CPU cost. ``srv_CPU%`` tells which case a row is,
and the verdict takes the worst row. ``rounds`` is the spread of the ratio between adjacent
plain and logged phases: on a shared machine it shows how far the host moved during the run,
which the pooled ratio averages out but does not remove.

The server is ``python -m uvicorn bench.connlog:create_bench_app --factory``, started with the
options ``gardien serve`` uses; ``BENCH_CONNLOG_MAX_BATCH`` and ``BENCH_CONNLOG_MAX_DELAY_MS``
tune the writer.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response
from sqlalchemy import create_engine, func, select, text

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
from gardien.security.connection_log import DEFAULT_SKIP, ConnectionLog, connection_log

PLAIN = "/bench/plain"
LOGGED = "/bench/logged"
STATS = "/bench/stats"
CONNECTIONS = [8, 32, 64]
WARMUP_SECONDS = 1.0
MEASURE_SECONDS = 6.0
ROUNDS = 6
RATIO_TARGET = 0.9
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
COLUMNS = (
    "backend conns plain_req/s logged_req/s ratio rounds p50_ms p99_ms srv_CPU% rows/commit target"
).split()
BODY = b'{"status":"ok"}'


# -- the server side ------------------------------------------------------------------------------


def create_bench_app() -> FastAPI:
    """Gardien exactly as ``gardien serve`` builds it, plus the two bench routes.

    ``create_app`` wires the connection log itself; its skip list is extended here so that
    ``/bench/plain`` (and the figures endpoint) pass through it unlogged.
    """
    from starlette.middleware import Middleware

    from gardien import logs
    from gardien.app import create_app
    from gardien.config import Settings
    from gardien.runtime import build_state, start
    from gardien.storage.migrate import upgrade_fast

    settings = Settings()
    logs.configure(settings.log_level)
    state = build_state(settings)
    upgrade_fast(state.engine)
    start(state)
    writer = state.writer
    writer.max_batch = int(os.environ.get("BENCH_CONNLOG_MAX_BATCH", str(writer.max_batch)))
    delay_ms = os.environ.get("BENCH_CONNLOG_MAX_DELAY_MS")
    if delay_ms is not None:
        writer.max_delay = float(delay_ms) / 1000
    app = create_app(settings, state=state, publish_on_start=False, scheduler=False)

    async def bare(path: str) -> Response:
        return Response(BODY, media_type="application/json")

    async def stats() -> dict[str, int]:
        return {"batches": writer.batches, "rows": writer.rows}

    app.add_api_route(STATS, stats, include_in_schema=False)
    # One route serves both paths, so the router's work is the same for each.
    app.add_api_route("/bench/{path}", bare, include_in_schema=False)
    wired = [i for i, m in enumerate(app.user_middleware) if _is_connection_log(m.cls)]
    if len(wired) != 1:
        raise RuntimeError("create_app no longer wires exactly one ConnectionLog")
    app.user_middleware[wired[0]] = Middleware(
        ConnectionLog, writer=writer, clock=state.clock, skip=(*DEFAULT_SKIP, PLAIN, STATS)
    )
    return app


def _is_connection_log(factory: object) -> bool:
    return factory is ConnectionLog


def bench_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.connlog:create_bench_app",
        "--factory",
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--no-server-header",
        "--proxy-headers",
    ]


# -- the measuring side ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    backend: str
    connections: int
    plain_rps: float
    logged_rps: float
    logged_p50_ms: float
    logged_p99_ms: float
    rows_per_commit: float
    errors: int
    plain_cpu: float
    logged_cpu: float
    round_ratios: tuple[float, ...]
    """Each round's logged rate over the plain rate of the same round (the phases are
    adjacent): their spread shows how much the machine moved under the measurement."""

    @property
    def ratio(self) -> float:
        return ratio(self.logged_rps, self.plain_rps)


def _stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://{HOST}:{port}{STATS}", timeout=5) as answer:
        data: dict[str, int] = json.load(answer)
    return data


@contextmanager
def _postgres_schema(url: str) -> Iterator[str | None]:
    """A fresh schema for the run (dropped after), or ``None`` when PostgreSQL is down."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - reported as a skipped backend
        print(f"postgresql: skipped ({type(exc).__name__}: is the server up?)")
        admin.dispose()
        yield None
        return
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _logged_rows(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(connection_log)) or 0)
    finally:
        engine.dispose()


def _measure_backend(backend: str, database_url: str | None) -> list[Measured]:
    results = []
    with tempfile.TemporaryDirectory(prefix="gardien-bench-") as data_dir:
        env = gardien_env(Path(data_dir))
        if database_url:
            env["GARDIEN_DATABASE_URL"] = database_url
        url = database_url or f"sqlite:///{Path(data_dir) / 'gardien.db'}"
        port = free_port()
        logged_total = 0
        with serving(bench_command(port), env, port) as server:
            for connections in CONNECTIONS:
                before = _stats(port)
                paths = load(
                    server,
                    [PLAIN, LOGGED],
                    connections,
                    warmup=WARMUP_SECONDS,
                    seconds=MEASURE_SECONDS,
                    rounds=ROUNDS,
                )
                after = _stats(port)
                plain, logged = paths[PLAIN], paths[LOGGED]
                commits = after["batches"] - before["batches"]
                rows = after["rows"] - before["rows"]
                results.append(
                    Measured(
                        backend=backend,
                        connections=connections,
                        plain_rps=plain.requests_per_second,
                        logged_rps=logged.requests_per_second,
                        logged_p50_ms=logged.p50_ms,
                        logged_p99_ms=logged.p99_ms,
                        rows_per_commit=ratio(rows, commits),
                        errors=plain.errors + logged.errors,
                        plain_cpu=plain.server_cpu_percent,
                        logged_cpu=logged.server_cpu_percent,
                        round_ratios=tuple(
                            ratio(lr, pr)
                            for lr, pr in zip(logged.phase_rps, plain.phase_rps, strict=True)
                        ),
                    )
                )
            logged_total = _stats(port)["rows"]
        _check_rows(backend, url, logged_total)
    return results


def _check_rows(backend: str, database_url: str, acknowledged: int) -> None:
    """Every acknowledged row is in the table: a log that drops rows cannot pass."""
    stored = _logged_rows(database_url)
    if stored != acknowledged:
        raise RuntimeError(f"{backend}: {acknowledged} rows acknowledged, {stored} stored")


def run() -> list[Verdict]:
    heading(
        f"connection log: {PLAIN} against {LOGGED} on one server, {MEASURE_SECONDS:.0f} s per "
        f"path in {ROUNDS} alternating rounds, keep-alive, loopback"
    )
    measured: list[Measured] = []
    measured += _measure_backend("sqlite", None)
    postgres_url = os.environ.get("GARDIEN_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    with _postgres_schema(postgres_url) as schema_url:
        if schema_url:
            measured += _measure_backend("postgresql", schema_url)
    print_table(
        COLUMNS,
        [
            [
                m.backend,
                str(m.connections),
                f"{m.plain_rps:.0f}",
                f"{m.logged_rps:.0f}",
                f"{m.ratio:.3f}",
                f"{min(m.round_ratios):.2f}-{max(m.round_ratios):.2f}",
                f"{m.logged_p50_ms:.2f}",
                f"{m.logged_p99_ms:.2f}",
                f"{m.plain_cpu:.0f}/{m.logged_cpu:.0f}",
                f"{m.rows_per_commit:.1f}",
                verdict(m.ratio >= RATIO_TARGET and not m.errors),
            ]
            for m in measured
        ],
    )
    verdicts = []
    for backend in dict.fromkeys(m.backend for m in measured):
        mine = [m for m in measured if m.backend == backend]
        worst = min(mine, key=lambda m: m.ratio)
        errors = sum(m.errors for m in mine)
        verdicts.append(
            Verdict(
                f"connection log ≥ 0.9 × bare endpoint req/s ({backend}, worst conns)",
                f"x{worst.ratio:.3f} at {worst.connections} conns"
                + (f", {errors} errors" if errors else ""),
                worst.ratio >= RATIO_TARGET and errors == 0,
            )
        )
    for v in verdicts:
        print(f"{v.label}  {v.target}: {v.measured}")
    return verdicts


def main() -> None:
    run()


if __name__ == "__main__":
    main()
