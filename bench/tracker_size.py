"""Tracker weight: what every visitor of a measured site downloads, ``/gardien.js`` (the same
script as ``/matomo.js`` and ``/piwik.js``), fetched from a real ``gardien serve``.

Target (``tests/analytics/test_tracker_script.py`` enforces it): at most 2,000 bytes gzipped,
stretch goal 1,500. Compared with the published trackers measured with ``gzip -9`` in
shared/reference/matomo-tracking-and-gdpr.md, 3.4: matomo.js 5.2 (21,877 B), Umami 3.1
(2,226 B) and Plausible's npm bundle 0.4.6 (2,694 B).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import (
    Verdict,
    free_port,
    gardien_command,
    gardien_env,
    heading,
    print_table,
    ratio,
    serving,
)
from bench.consent_size import _fetch, gzipped

TARGET = 2_000
STRETCH = 1_500
OTHERS = {"matomo.js 5.2": 21_877, "Plausible 0.4.6 (npm)": 2_694, "Umami 3.1": 2_226}


def run() -> list[Verdict]:
    heading("tracker size (bytes, gzip -9)")
    with tempfile.TemporaryDirectory(prefix="gardien-bench-") as data_dir:
        port = free_port()
        with serving(gardien_command(port), gardien_env(Path(data_dir)), port):
            bodies = {path: _fetch(port, path) for path in ("/gardien.js", "/matomo.js")}
    if len(set(bodies.values())) != 1:
        raise RuntimeError("/gardien.js and /matomo.js answered different scripts")
    body = bodies["/gardien.js"]
    size = gzipped(body)
    rows = [["gardien.js", f"{len(body):,}", f"{size:,}", "1.00"]]
    rows += [
        [name, "", f"{other:,}", f"{ratio(other, size):.2f}"] for name, other in OTHERS.items()
    ]
    print_table(["script", "raw", "gzip", "x gardien.js"], rows)
    return [
        Verdict(f"gardien.js <= {TARGET:,} B gz", f"{size:,} B", size <= TARGET),
        Verdict(f"gardien.js <= {STRETCH:,} B gz (stretch)", f"{size:,} B", size <= STRETCH),
    ]
