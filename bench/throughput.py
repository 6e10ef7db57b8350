"""Throughput: ``/privacy`` against ``/healthz`` on the same Gardien server.

Target (reported, not enforced): ``/privacy`` served at no less than half the requests per
second of ``/healthz``, which does one ``SELECT 1`` and is the cheapest real route. Both are
measured by the same load generator, in a second process, on one server, alternating paths.
A bare uvicorn app is measured briefly too: it bounds what this machine and load generator can
show at all, so a low Gardien figure can be told apart from a saturated rig.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import (
    MB,
    REPO_ROOT,
    RunningServer,
    Verdict,
    baseline_command,
    free_port,
    gardien_command,
    gardien_env,
    heading,
    print_table,
    ratio,
    serving,
    verdict,
)
from bench.loadgen import PathResult

HEALTHZ = "/healthz"
PRIVACY = ["/privacy?lang=en", "/privacy?lang=fr", "/privacy?lang=ro"]
CONNECTIONS = [8, 32]
WARMUP_SECONDS = 1.0
MEASURE_SECONDS = 5.0
ROUNDS = 2
BASELINE_SECONDS = 2.0
RATIO_TARGET = 0.5
RSS_TARGET_BYTES = 150 * MB
COLUMNS = ("path conns req/s p50_ms p99_ms kB errors srv_CPU% gen_CPU% x/healthz target").split()


def load(
    server: RunningServer,
    paths: list[str],
    connections: int,
    *,
    warmup: float,
    seconds: float,
    rounds: int,
) -> dict[str, PathResult]:
    """Run ``bench.loadgen`` in its own process so it never shares a GIL with the server."""
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--port",
        str(server.port),
        "--connections",
        str(connections),
        "--warmup",
        str(warmup),
        "--seconds",
        str(seconds),
        "--rounds",
        str(rounds),
        "--server-pid",
        str(server.pid),
        *paths,
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr[-2000:]}")
    results = []
    for line in done.stdout.splitlines():
        if line:
            fields = json.loads(line)
            fields["phase_rps"] = tuple(fields.get("phase_rps", ()))
            results.append(PathResult(**fields))
    return {result.path: result for result in results}


def _row(result: PathResult, healthz: PathResult) -> list[str]:
    share = ratio(result.requests_per_second, healthz.requests_per_second)
    is_privacy = result.path != HEALTHZ
    return [
        result.path,
        str(result.connections),
        f"{result.requests_per_second:.0f}",
        f"{result.p50_ms:.2f}",
        f"{result.p99_ms:.2f}",
        f"{result.mean_body_bytes / 1024:.1f}",
        str(result.errors),
        f"{result.server_cpu_percent:.0f}",
        f"{result.client_cpu_percent:.0f}",
        f"{share:.2f}",
        verdict(share >= RATIO_TARGET) if is_privacy else "",
    ]


def run() -> list[Verdict]:
    heading(
        f"throughput: {WARMUP_SECONDS:.0f} s warm-up, {MEASURE_SECONDS:.0f} s per path "
        f"in {ROUNDS} alternating rounds, keep-alive, loopback"
    )
    wrk = shutil.which("wrk")
    print(f"load generator: bench.loadgen (asyncio, separate process); wrk: {wrk or 'absent'}")
    paths = [HEALTHZ, *PRIVACY]
    measured: dict[int, dict[str, PathResult]] = {}
    with tempfile.TemporaryDirectory(prefix="gardien-bench-") as data_dir:
        port = free_port()
        with serving(gardien_command(port), gardien_env(Path(data_dir)), port) as server:
            rss_ready = server.rss_bytes()
            for connections in CONNECTIONS:
                measured[connections] = load(
                    server,
                    paths,
                    connections,
                    warmup=WARMUP_SECONDS,
                    seconds=MEASURE_SECONDS,
                    rounds=ROUNDS,
                )
            rss_after = server.rss_bytes()

    port = free_port()
    with serving(baseline_command(port), dict(os.environ), port) as bare:
        ceiling = load(
            bare,
            [HEALTHZ],
            CONNECTIONS[0],
            warmup=0.5,
            seconds=BASELINE_SECONDS,
            rounds=1,
        )[HEALTHZ]

    rows = []
    worst = float("inf")
    for results in measured.values():
        healthz = results[HEALTHZ]
        for path in paths:
            rows.append(_row(results[path], healthz))
            if path != HEALTHZ:
                worst = min(
                    worst, ratio(results[path].requests_per_second, healthz.requests_per_second)
                )
    print_table(COLUMNS, rows)
    gardien_healthz = measured[CONNECTIONS[0]][HEALTHZ].requests_per_second
    print(
        f"bare uvicorn /healthz, {CONNECTIONS[0]} conns: {ceiling.requests_per_second:.0f} req/s "
        f"(p50 {ceiling.p50_ms:.2f} ms, gen CPU {ceiling.client_cpu_percent:.0f}%); "
        f"gardien /healthz is x{ratio(gardien_healthz, ceiling.requests_per_second):.2f} of it"
    )
    print(
        f"gardien RSS: {rss_ready / MB:.1f} MB when ready, {rss_after / MB:.1f} MB after the runs"
    )

    errors = sum(r.errors for results in measured.values() for r in results.values())
    verdicts = [
        Verdict(
            "/privacy req/s ≥ 0.5 × /healthz (worst lang × conns)",
            f"x{worst:.2f}" + (f", {errors} errors" if errors else ""),
            worst >= RATIO_TARGET and errors == 0,
        ),
        Verdict(
            "RSS after throughput run < 150 MB",
            f"{rss_after / MB:.1f} MB",
            rss_after < RSS_TARGET_BYTES,
        ),
    ]
    for v in verdicts:
        print(f"{v.label}  {v.target}: {v.measured}")
    return verdicts


def main() -> None:
    run()


if __name__ == "__main__":
    main()
