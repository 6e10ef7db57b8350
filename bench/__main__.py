"""``python -m bench [startup|throughput|connlog ...]``: run benchmarks, summarise targets.

Targets are reported as PASS/MISS, never enforced: the machines are shared and noisy, so each
figure is read next to the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench import (
    analytics,
    analytics_reports,
    backup,
    connlog,
    consent_records,
    consent_size,
    crypto,
    forms,
    rights,
    soak,
    startup,
    throughput,
    tracker_size,
)
from bench.common import Verdict, heading, print_table

BENCHMARKS: dict[str, Callable[[], list[Verdict]]] = {
    "startup": startup.run,
    "throughput": throughput.run,
    "connlog": connlog.run,
    "crypto": crypto.run,
    "consent_size": consent_size.run,
    "tracker_size": tracker_size.run,
    "consent_records": consent_records.run,
    "forms": forms.run,
    "analytics": analytics.run,
    "analytics_reports": analytics_reports.run,
    "rights": rights.run,
    "backup": backup.run,
    "soak": soak.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "benchmarks",
        nargs="*",
        metavar="benchmark",
        help=f"one or more of {', '.join(BENCHMARKS)} (default: all)",
    )
    chosen: list[str] = parser.parse_args().benchmarks or list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    started = time.perf_counter()
    verdicts: list[Verdict] = []
    for name in chosen:
        verdicts += BENCHMARKS[name]()
    heading(f"targets ({time.perf_counter() - started:.0f} s in all)")
    print_table(
        ["target", "measured", "verdict"],
        [[v.target, v.measured, v.label] for v in verdicts],
    )


if __name__ == "__main__":
    main()
