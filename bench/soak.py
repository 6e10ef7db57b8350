"""Soak: the mixed public write load at the highest rate the machine holds, for minutes.

Tracking hits (``/matomo.php``), consent records, contact-form submissions and rights requests,
in turn, from ``bench.soakgen`` in its own process (closed loop, ``CONNECTIONS`` keep-alive
connections, bounded by time and by count), against three set-ups: SQLite with one server,
PostgreSQL with one server, PostgreSQL with two servers on one schema (different ports, the
connections split between them). Each server is the consent-records bench app: ``create_app``
as ``gardien serve`` builds it, with the public-write budgets raised (a soak from one address
would otherwise be a stream of 429s, which is the budget working, not a figure); the scheduler
does not run, so the outbox is not sent during the run.

Reported per endpoint: requests per second, p50/p99 latency, errors (target: none). Per server:
resident memory (RSS, the process and its children) before any load (``raw_start``), after a
warm-up that starts the worker threads and fills the caches (statement cache, templates,
translations, connection pool, pydantic's JSON string cache), half-way and at the end. Target:
growth from the end of the warm-up to the end at most ``RSS_TOLERANCE`` (10 %). The load itself
takes some 45 MB over ``raw_start`` in the first seconds (16 worker threads, their malloc
arenas, the pool), which is why the start is taken after the warm-up. What still grows after it
is the C allocator's free memory, not objects: traced with tracemalloc, glibc's ``mallinfo2``
and SQLite's own counter, the Python heap, the bytes malloc has handed out and SQLite's page
caches (3 to 9 MB in all) stay flat while malloc's retained free memory climbs (more on a busy
machine; it flattened within minutes in a 7-minute run, docs/operations.md). 10 % is about 17 MB
of a 175 MB server, which a leak of some 1.2 kB per request exceeds over the default minute
(about 15,000 requests); a longer ``--seconds`` catches smaller leaks.
Afterwards the rows are counted: every acknowledged write, and only those, must be stored
(the databases start empty).

Defaults keep the whole run under five minutes on a two-core machine: ``BENCH_SOAK_SECONDS``
(default 60) measured seconds per set-up after ``BENCH_SOAK_WARMUP`` (10) seconds of warm-up;
``python -m bench.soak --seconds 600`` for a longer soak. ``BENCH_SOAK_SETUPS`` (or
``--setups``) picks set-ups among ``sqlite``, ``pg1``, ``pg2`` (default: all three). PostgreSQL is
``GARDIEN_TEST_POSTGRES_URL`` (else the local test server), skipped when it is down.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    MB,
    REPO_ROOT,
    RunningServer,
    Verdict,
    free_port,
    gardien_env,
    heading,
    print_table,
    serving,
    verdict,
)
from bench.consent_records import _decision, bench_command
from bench.forms import _min_fill_seconds, _submission
from bench.soakgen import KINDS, KindResult

CONNECTIONS = 16
MAX_REQUESTS = 2_000_000
RSS_TOLERANCE = 0.10
SAMPLE_SECONDS = 5.0
SETUPS = ("sqlite", "pg1", "pg2")
COLUMNS = "setup endpoint requests req/s p50_ms p99_ms errors stored".split()


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _generate(
    servers: list[RunningServer], setup: Path, seconds: float
) -> tuple[dict[str, KindResult], list[list[int]]]:
    """The generator's results, and each server's RSS sampled every ``SAMPLE_SECONDS``
    while it ran (first sample at the start, last at the end)."""
    command = [
        sys.executable,
        "-m",
        "bench.soakgen",
        "--ports",
        ",".join(str(s.port) for s in servers),
        "--connections",
        str(CONNECTIONS),
        "--seconds",
        str(seconds),
        "--max-requests",
        str(MAX_REQUESTS),
        "--setup",
        str(setup),
    ]
    samples = [[s.rss_bytes() for s in servers]]
    with subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as generator:
        while True:
            try:
                out, err = generator.communicate(timeout=SAMPLE_SECONDS)
                break
            except subprocess.TimeoutExpired:
                samples.append([s.rss_bytes() for s in servers])
    samples.append([s.rss_bytes() for s in servers])
    if generator.returncode != 0:
        raise RuntimeError(f"soak generator failed:\n{err[-2000:]}")
    results = [KindResult(**json.loads(line)) for line in out.splitlines() if line]
    return {r.kind: r for r in results}, [list(server) for server in zip(*samples, strict=True)]


def _stored(database_url: str) -> dict[str, int]:
    from sqlalchemy import create_engine, func, select

    from gardien.analytics.models import AnalyticsHit
    from gardien.consent.models import ConsentRecord
    from gardien.forms.models import FormSubmission
    from gardien.rights.models import RightsCase

    tables = {
        "hit": AnalyticsHit,
        "consent": ConsentRecord,
        "form": FormSubmission,
        "rights": RightsCase,
    }
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {
                kind: int(connection.scalar(select(func.count()).select_from(model)) or 0)
                for kind, model in tables.items()
            }
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Soaked:
    setup: str
    results: dict[str, KindResult]
    acknowledged: dict[str, int]
    stored: dict[str, int]
    rss: list[list[int]]
    """Each server's RSS samples from the end of the warm-up to the end of the run."""
    raw_start: list[int]
    """Each server's RSS before the warm-up (started, migrated, no load yet)."""

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.results.values())

    @property
    def complete(self) -> bool:
        return self.stored == self.acknowledged

    @property
    def worst_growth(self) -> float:
        return max((samples[-1] - samples[0]) / samples[0] for samples in self.rss)


def _soak(setup: str, data_dir: Path, instances: int, database_url: str | None) -> Soaked:
    warmup = _seconds("BENCH_SOAK_WARMUP", 10.0)
    seconds = _seconds("BENCH_SOAK_SECONDS", 60.0)
    env = gardien_env(data_dir)
    if database_url:
        env["GARDIEN_DATABASE_URL"] = database_url
    with ExitStack() as stack:
        servers: list[RunningServer] = []
        for _ in range(instances):
            # One after the other: the first has migrated the schema when the second starts.
            port = free_port()
            servers.append(stack.enter_context(serving(bench_command(port), env, port)))
        setup_file = data_dir / "soak-setup.json"
        body = {"consent": _decision(servers[0].port), "form": _submission(servers[0].port)}
        setup_file.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
        # The form's stamp must be older than the minimum fill time, as for a person.
        time.sleep(_min_fill_seconds() + 1)
        warm, warm_rss = _generate(servers, setup_file, warmup)
        results, rss = _generate(servers, setup_file, seconds)
    acknowledged = {k: warm[k].acknowledged + results[k].acknowledged for k in KINDS}
    stored = _stored(database_url or f"sqlite:///{data_dir / 'gardien.db'}")
    return Soaked(setup, results, acknowledged, stored, rss, [r[0] for r in warm_rss])


def _report(soaked: list[Soaked]) -> list[Verdict]:
    rows: list[list[str]] = []
    for s in soaked:
        for kind in KINDS:
            r = s.results[kind]
            rows.append(
                [
                    s.setup,
                    r.path,
                    str(r.requests),
                    f"{r.requests_per_second:.0f}",
                    f"{r.p50_ms:.1f}",
                    f"{r.p99_ms:.1f}",
                    str(r.errors) + (f" {r.statuses}" if r.statuses else ""),
                    f"{s.stored[kind]}/{s.acknowledged[kind]}",
                ]
            )
        total = sum(r.requests for r in s.results.values())
        seconds = next(iter(s.results.values())).seconds
        rows.append([s.setup, "all", str(total), f"{total / seconds:.0f}", "", "", "", ""])
    print_table(COLUMNS, rows)
    print("stored = rows in the database / writes acknowledged 2xx (warm-up included)")
    memory: list[list[str]] = []
    for s in soaked:
        for number, (raw, samples) in enumerate(zip(s.raw_start, s.rss, strict=True), start=1):
            start, half, end = samples[0], samples[len(samples) // 2], samples[-1]
            growth = (end - start) / start
            memory.append(
                [
                    f"{s.setup} #{number}",
                    f"{raw / MB:.1f}",
                    f"{start / MB:.1f}",
                    f"{half / MB:.1f}",
                    f"{end / MB:.1f}",
                    f"{max(samples) / MB:.1f}",
                    f"{(end - start) / MB:+.1f}",
                    f"{100 * growth:+.1f}%",
                    f"{(end - half) / MB:+.1f}",
                    verdict(growth <= RSS_TOLERANCE),
                ]
            )
    print_table(
        "server raw_start_MB warm_MB half_MB end_MB peak_MB growth_MB growth 2nd_half_MB "
        "target".split(),
        memory,
    )
    print(
        "raw_start = RSS before any load; warm = after the warm-up, the start of the measured "
        "run; growth = end - warm"
    )
    verdicts = []
    for s in soaked:
        total = sum(r.requests for r in s.results.values())
        seconds = next(iter(s.results.values())).seconds
        verdicts.append(
            Verdict(
                f"soak ({s.setup}): mixed load, 0 errors, every acknowledged write stored",
                f"{total / seconds:.0f} req/s for {seconds:.0f} s, {s.errors} errors, "
                f"stored {'=' if s.complete else '≠'} acknowledged",
                s.errors == 0 and s.complete,
            )
        )
        verdicts.append(
            Verdict(
                f"soak ({s.setup}): RSS growth ≤ {100 * RSS_TOLERANCE:.0f}% per server",
                ", ".join(f"{100 * (r[-1] - r[0]) / r[0]:+.1f}%" for r in s.rss),
                s.worst_growth <= RSS_TOLERANCE,
            )
        )
    for v in verdicts:
        print(f"{v.label}  {v.target}: {v.measured}")
    return verdicts


def _setups() -> list[str]:
    chosen = [s for s in os.environ.get("BENCH_SOAK_SETUPS", ",".join(SETUPS)).split(",") if s]
    unknown = [s for s in chosen if s not in SETUPS]
    if unknown or not chosen:
        raise SystemExit(f"BENCH_SOAK_SETUPS: choose among {', '.join(SETUPS)}")
    return chosen


def run() -> list[Verdict]:
    from bench.connlog import DEFAULT_POSTGRES, _postgres_schema

    chosen = _setups()
    seconds = _seconds("BENCH_SOAK_SECONDS", 60.0)
    heading(
        f"soak: mixed public writes, {CONNECTIONS} keep-alive connections, "
        f"{_seconds('BENCH_SOAK_WARMUP', 10.0):.0f} s warm-up + {seconds:.0f} s per set-up"
    )
    soaked: list[Soaked] = []
    url = os.environ.get("GARDIEN_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    with tempfile.TemporaryDirectory(prefix="gardien-soak-") as directory:
        root = Path(directory)
        if "sqlite" in chosen:
            (root / "sqlite").mkdir()
            soaked.append(_soak("sqlite x1", root / "sqlite", 1, None))
        for instances in (1, 2):
            if f"pg{instances}" not in chosen:
                continue
            with _postgres_schema(url) as schema_url:
                if schema_url is None:
                    break
                data_dir = root / f"pg{instances}"
                data_dir.mkdir()
                soaked.append(_soak(f"postgresql x{instances}", data_dir, instances, schema_url))
    return _report(soaked)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, help="measured seconds per set-up (default 60)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per set-up (default 10)")
    parser.add_argument("--setups", help=f"comma-separated among {','.join(SETUPS)} (default all)")
    args = parser.parse_args()
    if args.setups is not None:
        os.environ["BENCH_SOAK_SETUPS"] = args.setups
    if args.seconds is not None:
        os.environ["BENCH_SOAK_SECONDS"] = str(args.seconds)
    if args.warmup is not None:
        os.environ["BENCH_SOAK_WARMUP"] = str(args.warmup)
    run()


if __name__ == "__main__":
    main()
