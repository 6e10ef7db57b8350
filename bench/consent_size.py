"""Consent banner weight: what a visitor's browser downloads to show the banner and the panel.

Targets (reported, not enforced here; ``tests/consent/test_banner_assets.py`` enforces the
first): the script and stylesheet at most 6,000 bytes gzipped, and with the French
configuration of the seed register at most 8,000. The files are fetched from a real ``gardien
serve`` exactly as a browser would, and compared with vanilla-cookieconsent 3.1.0's default
payload (10,194 + 5,319 gzipped bytes, measured on its npm tarball with ``gzip -9``; see
shared/reference/consent-managers-and-rules.md, 1.3).
"""

from __future__ import annotations

import gzip
import http.client
import tempfile
from pathlib import Path

from bench.common import (
    HOST,
    Verdict,
    free_port,
    gardien_command,
    gardien_env,
    heading,
    print_table,
    ratio,
    serving,
)

ASSETS_TARGET = 6_000
PAGE_TARGET = 8_000
COOKIECONSENT = {"script": 10_194, "stylesheet": 5_319}
PATHS = {
    "script": "/consent/gardien-consent.js",
    "stylesheet": "/consent/gardien-consent.css",
    "config (fr)": "/consent/config.json?lang=fr",
}


def _fetch(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        return body
    finally:
        connection.close()


def gzipped(body: bytes) -> int:
    return len(gzip.compress(body, compresslevel=9, mtime=0))


def run() -> list[Verdict]:
    heading("consent banner size (bytes, gzip -9)")
    with tempfile.TemporaryDirectory(prefix="gardien-bench-") as data_dir:
        port = free_port()
        with serving(gardien_command(port), gardien_env(Path(data_dir)), port):
            bodies = {name: _fetch(port, path) for name, path in PATHS.items()}
    sizes = {name: gzipped(body) for name, body in bodies.items()}
    assets = sizes["script"] + sizes["stylesheet"]
    page = assets + sizes["config (fr)"]
    baseline = sum(COOKIECONSENT.values())
    rows = [
        [name, f"{len(bodies[name]):,}", f"{sizes[name]:,}", _versus(sizes[name], name)]
        for name in PATHS
    ]
    rows.append(["script + stylesheet", "", f"{assets:,}", f"{ratio(assets, baseline):.2f}"])
    rows.append(["all three", "", f"{page:,}", f"{ratio(page, baseline):.2f}"])
    print_table(["file", "raw", "gzip", "x cookieconsent 3.1"], rows)
    print(f"(cookieconsent 3.1.0 default payload: {baseline:,} bytes gzipped, script + css)")
    return [
        Verdict(
            f"banner JS + CSS <= {ASSETS_TARGET:,} B gz", f"{assets:,} B", assets <= ASSETS_TARGET
        ),
        Verdict(
            f"banner JS + CSS + config fr <= {PAGE_TARGET:,} B gz",
            f"{page:,} B",
            page <= PAGE_TARGET,
        ),
    ]


def _versus(size: int, name: str) -> str:
    reference = COOKIECONSENT.get(name)
    return f"{ratio(size, reference):.2f}" if reference else ""
