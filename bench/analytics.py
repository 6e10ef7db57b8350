"""Audience measurement: what a tracking hit costs, on SQLite and on PostgreSQL.

Two targets (issue 6, reported, not enforced):

- **Single hit.** A hit as matomo.js sends it by default — ``navigator.sendBeacon``: a POST
  with the parameters in the URL's query string, an empty body and ``send_image=0``, answered
  204 — parsed, checked against the register's site, its visitor id derived, stored through
  group commit and only then answered, sustains at least half the requests per second of
  ``/bench/bare`` on the same server (same middleware, connection log included; a handler
  that reads the body and gives the same answer). The image shape (a GET without
  ``send_image``, answered with the 43-byte GIF) is measured the same way against a GET of the
  bare endpoint. The load generator (``bench.loadgen``, its own process) labels the empty body
  ``application/json`` where a browser says ``application/x-www-form-urlencoded``; the route
  reads neither for an empty body. Every request carries the same parameters (the load
  generator varies bodies only), so the stored rows are alike; each one is still a row.
- **Bulk.** 100,000 hits sent as bulk requests (JSON ``{"requests": ["?idsite=1&rec=1&...",
  ...], "send_image": 0}`` with the form content type, as matomo.js sends its queue), in
  chunks of 50 (matomo.js) and of 500 (``MAX_BULK_REQUESTS``) over eight connections, reach
  at least a tenth of the rate of a plain ``executemany`` (SQLAlchemy Core
  ``conn.execute(insert(analytics_hit), rows)``, one transaction, the engine Gardien builds)
  of the same final rows, read back from the database, into the same database.

Stored rows are counted afterwards: the single-hit rows must be at least the hits
acknowledged, and each bulk run must add exactly 100,000 rows, so an answer without storing
cannot pass. The writer's commits per request, sent one at a time, are printed too: the bare
endpoint waits for one (its connection-log row), a hit for two (its own row, then the
connection log's, written when the response starts), which at one connection is what a hit
costs against the bare endpoint.

``python -m bench.analytics --profile`` runs the bulk path in-process under cProfile (route,
parsing, row building on the event loop; the writer thread's CPU beside it) and prints where
the time goes; ``run()`` prints that profile on its own when the bulk target is missed.

The server is ``python -m uvicorn bench.analytics:create_bench_app --factory``: ``create_app``
as ``gardien serve`` builds it, with the bare endpoint and a figures endpoint added, and the
bare endpoint exempt from the public write budgets as the tracking paths are.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import http.client
import io
import json
import os
import pstats
import re
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psutil
from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import create_engine, func, insert, select

from bench import connlog
from bench.common import (
    HOST,
    SEED_REGISTER,
    RunningServer,
    Verdict,
    free_port,
    gardien_env,
    heading,
    print_table,
    ratio,
    serving,
    verdict,
)
from bench.connlog import DEFAULT_POSTGRES, _postgres_schema
from bench.loadgen import Connection
from bench.throughput import load

TRACKER = "/matomo.php"
BARE = "/bench/bare"
STATS = "/bench/stats"
SINGLE_CONNECTIONS = [1, 8, 32]
WARMUP_SECONDS = 1.0
MEASURE_SECONDS = 4.0
ROUNDS = 2
SINGLE_TARGET = 0.5
BULK_HITS = 100_000
BULK_CHUNKS = [50, 500]
BULK_CONNECTIONS = 8
PROBE_REQUESTS = 50
BULK_TARGET = 0.1
PROFILE_HITS = 20_000
PROFILE_LINES = 25
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAAAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
NO_STORE = {"Cache-Control": "no-store"}
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
FORM_TYPE = "application/x-www-form-urlencoded; charset=UTF-8"


# -- the server side ------------------------------------------------------------------------------


def create_bench_app() -> FastAPI:
    """Gardien as ``gardien serve`` builds it, plus ``/bench/bare`` and ``/bench/stats``."""
    from gardien import logs
    from gardien.app import create_app
    from gardien.config import Settings
    from gardien.runtime import build_state, start
    from gardien.security.connection_log import DEFAULT_SKIP, ConnectionLog
    from gardien.security.public_limits import PublicWriteLimits
    from gardien.storage.migrate import upgrade_fast

    settings = Settings()
    logs.configure(settings.log_level)
    state = build_state(settings)
    upgrade_fast(state.engine)
    start(state)
    writer = state.writer
    app = create_app(settings, state=state, publish_on_start=False, scheduler=False)

    async def bare(request: Request) -> Response:
        await request.body()
        if b"send_image=0" in request.scope["query_string"]:
            return Response(status_code=204, headers=NO_STORE)
        return Response(GIF, media_type="image/gif", headers=NO_STORE)

    async def stats() -> dict[str, int]:
        return {"batches": writer.batches, "rows": writer.rows}

    app.add_api_route(BARE, bare, methods=["GET", "POST"], include_in_schema=False)
    app.add_api_route(STATS, stats, include_in_schema=False)
    # The bare endpoint is exempt from the public write budgets as the tracking paths are; the
    # figures endpoint is not logged, so reading the writer's counts adds no commit to them.
    _extend(app, PublicWriteLimits, "exempt", (), BARE)
    _extend(app, ConnectionLog, "skip", DEFAULT_SKIP, STATS)
    return app


def _extend(
    app: FastAPI, factory: object, option: str, default: tuple[str, ...], path: str
) -> None:
    """Add ``path`` to the ``option`` list of the one middleware ``factory`` that
    ``create_app`` wires (its other options kept)."""
    from starlette.middleware import Middleware

    wired = [i for i, m in enumerate(app.user_middleware) if _same(m.cls, factory)]
    if len(wired) != 1:
        raise RuntimeError(f"create_app no longer wires exactly one {factory!r}")
    middleware = app.user_middleware[wired[0]]
    options: dict[str, Any] = dict(middleware.kwargs)
    options[option] = (*options.get(option, default), path)
    app.user_middleware[wired[0]] = Middleware(middleware.cls, *middleware.args, **options)


def _same(factory: object, other: object) -> bool:
    return factory is other


def bench_command(port: int) -> list[str]:
    """The connection-log bench's command (``gardien serve``'s options), serving this app."""
    command = connlog.bench_command(port)
    command[command.index("bench.connlog:create_bench_app")] = "bench.analytics:create_bench_app"
    return command


# -- what matomo.js sends -------------------------------------------------------------------------


def hit_params(number: int, *, beacon: bool) -> dict[str, str]:
    """A page view as matomo.js 5 builds it with cookies disabled (the seed site's setup)."""
    params = {
        "action_name": f"Produse | Cegedim Rx {number}",
        "idsite": "1",
        "rec": "1",
        "r": f"{number * 7919 % 1_000_000:06d}",
        "h": "10",
        "m": "24",
        "s": "7",
        "url": f"https://www.cegedim-rx.ro/produse/{number}?utm_source=newsletter&ref=x",
        "urlref": "https://www.google.com/",
        "_id": f"{number * 2654435761 % 2**64:016x}",
        "_idn": "0",
        "_refts": "0",
        "pv_id": f"{number % 916_132_832:06x}"[:6],
        "pf_net": "0",
        "pf_srv": "45",
        "pf_tfr": "3",
        "pf_dm1": "210",
        "uadata": "{}",
        "pdf": "1",
        "qt": "0",
        "realp": "0",
        "wma": "0",
        "fla": "0",
        "java": "0",
        "ag": "0",
        "cookie": "0",
        "res": "1920x1080",
    }
    if beacon:
        params["send_image"] = "0"
    return params


def hit_query(number: int, *, beacon: bool) -> str:
    return urlencode(hit_params(number, beacon=beacon), quote_via=quote)


def bulk_body(first: int, count: int) -> bytes:
    requests = [f"?{hit_query(n, beacon=True)}" for n in range(first, first + count)]
    return json.dumps({"requests": requests, "send_image": 0}, separators=(",", ":")).encode()


def bulk_request(port: int, body: bytes) -> bytes:
    head = (
        f"POST {TRACKER} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: {BROWSER}\r\n"
        f"Accept: */*\r\nContent-Type: {FORM_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


# -- the measuring side ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Single:
    backend: str
    shape: str
    connections: int
    bare_rps: float
    hits_rps: float
    p50_ms: float
    p99_ms: float
    server_cpu: float
    errors: int

    @property
    def ratio(self) -> float:
        return ratio(self.hits_rps, self.bare_rps)

    @property
    def where(self) -> str:
        return f"{self.shape}, {self.connections} conns, {self.hits_rps:.0f} hits/s"


@dataclass(frozen=True)
class Bulk:
    backend: str
    chunk: int
    seconds: float
    stored: int
    errors: int
    server_cpu: float
    rows_per_commit: float
    executemany_seconds: float

    @property
    def hits_per_second(self) -> float:
        return ratio(BULK_HITS, self.seconds)

    @property
    def executemany_per_second(self) -> float:
        return ratio(BULK_HITS, self.executemany_seconds)

    @property
    def ratio(self) -> float:
        return ratio(self.hits_per_second, self.executemany_per_second)

    @property
    def where(self) -> str:
        return f"chunks of {self.chunk}, {self.hits_per_second:.0f} hits/s"


def _stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://{HOST}:{port}{STATS}", timeout=5) as answer:
        data: dict[str, int] = json.load(answer)
    return data


def _hit_count(database_url: str) -> tuple[int, int]:
    """(rows, highest id) of ``analytics_hit``."""
    from gardien.analytics.models import analytics_hit

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            count, top = connection.execute(
                select(func.count(), func.coalesce(func.max(analytics_hit.c.id), 0))
            ).one()
    finally:
        engine.dispose()
    return int(count), int(top)


def _measure_single(
    backend: str, server: RunningServer, empty_body: Path
) -> tuple[list[Single], int]:
    """Beacon and image hits against the bare endpoint; also the hits acknowledged."""
    beacon_query = hit_query(1, beacon=True)
    image_query = hit_query(1, beacon=False)
    bare_post = f"POST:{BARE}?{beacon_query}:{empty_body}"
    beacon = f"POST:{TRACKER}?{beacon_query}:{empty_body}"
    bare_get = f"{BARE}?{image_query}"
    image = f"{TRACKER}?{image_query}"
    results: list[Single] = []
    acknowledged = 0
    for connections in SINGLE_CONNECTIONS:
        paths = load(
            server,
            [bare_post, beacon, bare_get, image],
            connections,
            warmup=WARMUP_SECONDS,
            seconds=MEASURE_SECONDS,
            rounds=ROUNDS,
        )
        for shape, bare, hit in (("beacon", bare_post, beacon), ("image", bare_get, image)):
            b, h = paths[bare], paths[hit]
            acknowledged += h.requests - h.errors
            results.append(
                Single(
                    backend,
                    shape,
                    connections,
                    b.requests_per_second,
                    h.requests_per_second,
                    h.p50_ms,
                    h.p99_ms,
                    h.server_cpu_percent,
                    b.errors + h.errors,
                )
            )
    return results, acknowledged


async def _send_bulk(port: int, requests: Sequence[bytes]) -> tuple[float, int]:
    """Send every request over ``BULK_CONNECTIONS`` keep-alive connections; (seconds, errors)."""
    pending = iter(requests)
    errors = 0
    pool = [Connection(port) for _ in range(BULK_CONNECTIONS)]
    await asyncio.gather(*(c.open() for c in pool))

    async def drive(connection: Connection) -> None:
        nonlocal errors
        for request in pending:
            status, _ = await connection.get(request)
            if not 200 <= status < 300:
                errors += 1

    try:
        started = time.perf_counter()
        await asyncio.gather(*(drive(c) for c in pool))
        return time.perf_counter() - started, errors
    finally:
        await asyncio.gather(*(c.close() for c in pool))


def commits_per_request(port: int, method: str, target: str) -> float:
    """Transactions the writer commits per request, over ``PROBE_REQUESTS`` sent one at a time
    (no batching with other requests): what one request waits for at one connection."""
    before = _stats(port)["batches"]
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        for _ in range(PROBE_REQUESTS):
            connection.request(method, target, body=b"" if method == "POST" else None)
            answer = connection.getresponse()
            answer.read()
            if not 200 <= answer.status < 300:
                raise RuntimeError(f"{method} {target[:40]} answered {answer.status}")
    finally:
        connection.close()
    return (_stats(port)["batches"] - before) / PROBE_REQUESTS


def _executemany_seconds(database_url: str, after_id: int) -> float:
    """Time one plain ``executemany`` of the rows stored after ``after_id``, re-inserted."""
    from gardien.analytics.models import analytics_hit
    from gardien.storage.database import make_engine

    engine = make_engine(database_url)
    try:
        columns = [c for c in analytics_hit.c if c.name != "id"]
        with engine.connect() as connection:
            rows = [
                dict(row._mapping)
                for row in connection.execute(
                    select(*columns)
                    .where(analytics_hit.c.id > after_id)
                    .order_by(analytics_hit.c.id)
                )
            ]
        if len(rows) != BULK_HITS:
            raise RuntimeError(f"expected {BULK_HITS} rows to re-insert, found {len(rows)}")
        started = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(insert(analytics_hit), rows)
        return time.perf_counter() - started
    finally:
        engine.dispose()


def _measure_backend(
    backend: str, database_url: str | None
) -> tuple[list[Single], list[Bulk], str]:
    with tempfile.TemporaryDirectory(prefix="gardien-bench-") as data_dir:
        env = gardien_env(Path(data_dir))
        if database_url:
            env["GARDIEN_DATABASE_URL"] = database_url
        url = database_url or f"sqlite:///{Path(data_dir) / 'gardien.db'}"
        empty_body = Path(data_dir) / "empty"
        empty_body.write_bytes(b"")
        port = free_port()
        bulk_runs: list[tuple[int, float, int, int, float, float]] = []
        with serving(bench_command(port), env, port) as server:
            single, acknowledged = _measure_single(backend, server, empty_body)
            query = hit_query(1, beacon=True)
            commits = {
                path: commits_per_request(port, "POST", f"{path}?{query}")
                for path in (BARE, TRACKER)
            }
            stored, _ = _hit_count(url)
            if stored < acknowledged:
                raise RuntimeError(
                    f"{backend}: {acknowledged} single hits acknowledged, {stored} stored"
                )
            process = psutil.Process(server.pid)
            for chunk in BULK_CHUNKS:
                requests = [
                    bulk_request(port, bulk_body(first, chunk))
                    for first in range(0, BULK_HITS, chunk)
                ]
                before_count, before_id = _hit_count(url)
                before_stats = _stats(port)
                cpu = sum(process.cpu_times()[:2])
                seconds, errors = asyncio.run(_send_bulk(port, requests))
                cpu = sum(process.cpu_times()[:2]) - cpu
                after_stats = _stats(port)
                after_count, _ = _hit_count(url)
                added = after_count - before_count
                if added != BULK_HITS:
                    raise RuntimeError(f"{backend}: bulk of {chunk} stored {added} rows")
                rows_per_commit = ratio(
                    after_stats["rows"] - before_stats["rows"],
                    after_stats["batches"] - before_stats["batches"],
                )
                bulk_runs.append((chunk, seconds, added, errors, cpu / seconds, rows_per_commit))
                if chunk == BULK_CHUNKS[-1]:
                    last_id = before_id
        # The server is stopped: the baseline has the database to itself.
        executemany = _executemany_seconds(url, last_id)
        bulk = [
            Bulk(backend, chunk, seconds, added, errors, 100 * cpu, per_commit, executemany)
            for chunk, seconds, added, errors, cpu, per_commit in bulk_runs
        ]
        summary = (
            f"{backend}: single hits stored {stored} (at least {acknowledged} acknowledged); "
            f"commits per request, one at a time: {BARE} {commits[BARE]:.2f}, "
            f"{TRACKER} {commits[TRACKER]:.2f}"
        )
    return single, bulk, summary


# -- where the time goes --------------------------------------------------------------------------


def profile_bulk(chunk: int = BULK_CHUNKS[0], hits: int = PROFILE_HITS) -> str:
    """The bulk path run in-process on SQLite under cProfile; returns the printed report.

    Requests go through the whole ASGI app (middleware, route, parsing, rows, group commit)
    with an in-process client, ``BULK_CONNECTIONS`` at a time. cProfile sees the event loop's
    thread (client included); the writer thread's inserts and commits are shown as the CPU of
    the process's other threads.
    """
    import httpx

    from gardien.app import create_app
    from gardien.config import Settings
    from gardien.runtime import build_state, start
    from gardien.storage.migrate import upgrade_fast

    out = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="gardien-bench-") as data_dir:
        settings = Settings(
            data_dir=Path(data_dir),
            database_url=f"sqlite:///{Path(data_dir) / 'gardien.db'}",
            register_file=SEED_REGISTER,
            log_level="WARNING",
        )
        state = build_state(settings)
        upgrade_fast(state.engine)
        start(state)
        app = create_app(settings, state=state, publish_on_start=False, scheduler=False)
        bodies = [bulk_body(first, chunk) for first in range(0, hits, chunk)]
        profile = cProfile.Profile()

        async def send_all() -> tuple[float, float, float]:
            transport = httpx.ASGITransport(app=app, client=("203.0.113.198", 50123))
            pending = iter(bodies)
            headers = {"content-type": FORM_TYPE, "user-agent": BROWSER}
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client,
            ):

                async def drive() -> None:
                    for body in pending:
                        answer = await client.post(TRACKER, content=body, headers=headers)
                        if answer.status_code != 204:
                            raise RuntimeError(f"bulk answered {answer.status_code}")

                started = time.perf_counter()
                process_cpu, loop_cpu = time.process_time(), time.thread_time()
                profile.enable()
                await asyncio.gather(*(drive() for _ in range(BULK_CONNECTIONS)))
                profile.disable()
                loop_cpu = time.thread_time() - loop_cpu
                other_cpu = time.process_time() - process_cpu - loop_cpu
                return time.perf_counter() - started, loop_cpu, other_cpu

        elapsed, loop_cpu, other_cpu = asyncio.run(send_all())
        stored, _ = _hit_count(settings.resolved_database_url)
        state.engine.dispose()
    print(
        f"in-process bulk, {hits} hits in chunks of {chunk}, {BULK_CONNECTIONS} at a time "
        f"(SQLite, under cProfile): {elapsed:.2f} s, {hits / elapsed:.0f} hits/s, "
        f"{stored} stored; CPU: event loop {loop_cpu:.2f} s, other threads (writer, "
        f"thread pool) {other_cpu:.2f} s",
        file=out,
    )
    stats = pstats.Stats(profile, stream=out)
    by_file: dict[str, float] = {}
    for (filename, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_file[_short(filename)] = by_file.get(_short(filename), 0.0) + own
    total = sum(by_file.values())
    print(f"\nevent-loop time by file (own time, {total:.2f} s profiled):", file=out)
    for filename, own in sorted(by_file.items(), key=lambda item: -item[1])[:15]:
        print(f"  {own:7.2f} s  {100 * own / total:5.1f}%  {filename}", file=out)
    print("\nfunctions by own time:", file=out)
    stats.sort_stats("tottime").print_stats(PROFILE_LINES)
    print("functions by cumulative time:", file=out)
    stats.sort_stats("cumulative").print_stats(PROFILE_LINES)
    return out.getvalue()


def _short(filename: str) -> str:
    """A profiled file's name without its installation prefix."""
    if filename == "~":
        return "(built-in functions: str, dict, list, select ...)"
    for prefix in (r".*/site-packages/", r".*/src/", r".*/lib/python3\.[0-9]+/"):
        if re.match(prefix, filename):
            return re.sub(prefix, "", filename, count=1)
    return filename


# -- the report -----------------------------------------------------------------------------------


def _worst(target: str, measured: Sequence[Single | Bulk], floor: float) -> Verdict:
    worst = min(measured, key=lambda m: m.ratio)
    errors = sum(m.errors for m in measured)
    return Verdict(
        target,
        f"x{worst.ratio:.3f} ({worst.where})" + (f", {errors} errors" if errors else ""),
        worst.ratio >= floor and errors == 0,
    )


def run() -> list[Verdict]:
    heading(
        f"audience measurement: {TRACKER} hits against {BARE} on one server, "
        f"{MEASURE_SECONDS:.0f} s per path in {ROUNDS} alternating rounds; bulk {BULK_HITS} hits "
        f"in chunks of {'/'.join(map(str, BULK_CHUNKS))} over {BULK_CONNECTIONS} connections "
        "against one executemany of the same rows"
    )
    single: list[Single] = []
    bulk: list[Bulk] = []
    summaries: list[str] = []
    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    postgres_url = os.environ.get("GARDIEN_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    with _postgres_schema(postgres_url) as schema_url:
        if schema_url:
            backends.append(("postgresql", schema_url))
        for backend, url in backends:
            s, b, summary = _measure_backend(backend, url)
            single += s
            bulk += b
            summaries.append(summary)
    print_table(
        "backend shape conns bare_req/s hits/s ratio p50_ms p99_ms srv_CPU% errors target".split(),
        [
            [
                m.backend,
                m.shape,
                str(m.connections),
                f"{m.bare_rps:.0f}",
                f"{m.hits_rps:.0f}",
                f"{m.ratio:.3f}",
                f"{m.p50_ms:.2f}",
                f"{m.p99_ms:.2f}",
                f"{m.server_cpu:.0f}",
                str(m.errors),
                verdict(m.ratio >= SINGLE_TARGET and not m.errors),
            ]
            for m in single
        ],
    )
    for summary in summaries:
        print(summary)
    print()
    print_table(
        (
            "backend chunk seconds hits/s rows/commit srv_CPU% errors executemany_rows/s "
            "ratio target"
        ).split(),
        [
            [
                m.backend,
                str(m.chunk),
                f"{m.seconds:.2f}",
                f"{m.hits_per_second:.0f}",
                f"{m.rows_per_commit:.0f}",
                f"{m.server_cpu:.0f}",
                str(m.errors),
                f"{m.executemany_per_second:.0f}",
                f"{m.ratio:.3f}",
                verdict(m.ratio >= BULK_TARGET and not m.errors),
            ]
            for m in bulk
        ],
    )
    print(f"every bulk run stored exactly {BULK_HITS} rows")
    verdicts = []
    for backend, _ in backends:
        verdicts += [
            _worst(
                f"tracking hit ≥ 0.5 × bare req/s ({backend}, worst shape × conns)",
                [m for m in single if m.backend == backend],
                SINGLE_TARGET,
            ),
            _worst(
                f"bulk hits ≥ 0.1 × executemany rows/s ({backend}, worst chunk)",
                [m for m in bulk if m.backend == backend],
                BULK_TARGET,
            ),
        ]
    for v in verdicts:
        print(f"{v.label}  {v.target}: {v.measured}")
    if any(m.ratio < BULK_TARGET for m in bulk):
        heading("where the bulk path's time goes")
        print(profile_bulk())
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.analytics", description=__doc__)
    parser.add_argument("--profile", action="store_true", help="only profile the bulk path")
    parser.add_argument("--chunk", type=int, default=BULK_CHUNKS[0], help="with --profile")
    args = parser.parse_args()
    if args.profile:
        print(profile_bulk(args.chunk))
    else:
        run()


if __name__ == "__main__":
    main()
