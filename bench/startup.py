"""Start-up: time from spawn to the first 200 on ``/healthz``, and resident memory once ready.

Target (reported, not enforced): ``gardien serve`` with the seed register ready in under 2 s and
under 150 MB resident. Each cold start gets a fresh data dir (keys generated, migrations applied,
policy published); warm starts reuse an existing database. The baseline is a bare uvicorn app
started the same way, interleaved with Gardien's runs so both see the same machine load.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    MB,
    REPO_ROOT,
    Spread,
    Verdict,
    baseline_command,
    free_port,
    gardien_command,
    gardien_env,
    heading,
    print_table,
    ratio,
    serving,
)

COLD_RUNS = 5
WARM_RUNS = 3
READY_TARGET_SECONDS = 2.0
RSS_TARGET_BYTES = 150 * MB


@dataclass(frozen=True)
class Sample:
    ready_seconds: float
    rss_bytes: int


def _start_once(command: Callable[[int], list[str]], env: dict[str, str]) -> Sample:
    port = free_port()
    with serving(command(port), env, port) as server:
        return Sample(server.ready_seconds, server.rss_bytes())


def _row(name: str, samples: list[Sample]) -> list[str]:
    times = Spread.of([s.ready_seconds for s in samples])
    rss = Spread.of([s.rss_bytes / MB for s in samples])
    return [
        name,
        str(len(samples)),
        f"{times.median:.3f}",
        f"{times.low:.3f}",
        f"{times.high:.3f}",
        f"{rss.median:.1f}",
        f"{rss.low:.1f}",
        f"{rss.high:.1f}",
    ]


# What ``gardien serve`` imports before it can answer: the CLI module, then the modules its
# ``serve`` command imports lazily. Kept in step with ``gardien.cli.main.serve`` by hand.
SERVE_IMPORTS = (
    "gardien.cli.main",
    "uvicorn",
    "gardien.app",
    "gardien.runtime",
    "gardien.storage.migrate",
)


def import_breakdown(top: int = 12) -> tuple[float, list[tuple[str, float]]]:
    """Total import time of what ``serve`` imports, and its top packages by own (self) time.

    Self time is summed over every module of a top-level package, so a package is charged for
    its own code only, not for what it pulled in from others.
    """
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {', '.join(SERVE_IMPORTS)}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    # "import time: self [us] | cumulative | <indent>module"
    pattern = re.compile(r"^import time:\s+(\d+) \|\s+\d+ \| \s*(\S+)")
    by_package: dict[str, float] = defaultdict(float)
    for line in result.stderr.splitlines():
        match = pattern.match(line)
        if match:
            by_package[match.group(2).split(".")[0]] += int(match.group(1)) / 1e6
    ranked = sorted(by_package.items(), key=lambda item: item[1], reverse=True)
    return sum(by_package.values()), ranked[:top]


def run() -> list[Verdict]:
    heading("startup: spawn -> first 200 on /healthz; RSS once ready")
    cold: list[Sample] = []
    warm: list[Sample] = []
    baseline: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="gardien-bench-") as root:
        data_dirs = [Path(root) / f"cold-{i}" for i in range(COLD_RUNS)]
        for data_dir in data_dirs:
            baseline.append(_start_once(baseline_command, dict(os.environ)))
            data_dir.mkdir()
            cold.append(_start_once(gardien_command, gardien_env(data_dir)))
        # Warm: the database, keys and published policy already exist.
        for _ in range(WARM_RUNS):
            warm.append(_start_once(gardien_command, gardien_env(data_dirs[-1])))

    print_table(
        ["server", "runs", "ready s", "min", "max", "RSS MB", "min", "max"],
        [
            _row("baseline (bare uvicorn)", baseline),
            _row("gardien cold (fresh data dir)", cold),
            _row("gardien warm (existing DB)", warm),
        ],
    )
    base_time = Spread.of([s.ready_seconds for s in baseline]).median
    base_rss = Spread.of([float(s.rss_bytes) for s in baseline]).median
    cold_rss_median = Spread.of([float(s.rss_bytes) for s in cold]).median
    cold_time = Spread.of([s.ready_seconds for s in cold]).median
    warm_time = Spread.of([s.ready_seconds for s in warm]).median
    cold_rss = max(s.rss_bytes for s in cold)
    warm_rss = max(s.rss_bytes for s in warm)
    print(
        f"ratio gardien/baseline (medians): cold time x{ratio(cold_time, base_time):.2f}, "
        f"warm time x{ratio(warm_time, base_time):.2f}, "
        f"cold RSS x{ratio(cold_rss_median, base_rss):.2f}"
    )

    verdicts = [
        Verdict(
            "cold start ready < 2 s (median)",
            f"{cold_time:.3f} s",
            cold_time < READY_TARGET_SECONDS,
        ),
        Verdict(
            "warm start ready < 2 s (median)",
            f"{warm_time:.3f} s",
            warm_time < READY_TARGET_SECONDS,
        ),
        Verdict(
            "RSS when ready < 150 MB (max of all)",
            f"{max(cold_rss, warm_rss) / MB:.1f} MB",
            max(cold_rss, warm_rss) < RSS_TARGET_BYTES,
        ),
    ]
    for v in verdicts:
        print(f"{v.label}  {v.target}: {v.measured}")

    if not all(v.passed for v in verdicts[:2]):
        total, ranked = import_breakdown()
        print(
            f"where the time goes: `python -X importtime` of what serve imports: {total:.3f} s "
            f"in all ({ratio(total, cold_time):.0%} of the median cold start); by package:"
        )
        print_table(
            ["package", "self s", "share"],
            [[name, f"{seconds:.3f}", f"{ratio(seconds, total):.0%}"] for name, seconds in ranked],
        )
    return verdicts


def main() -> None:
    run()


if __name__ == "__main__":
    main()
