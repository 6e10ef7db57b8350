"""Shared helpers: spawning a server, timing its readiness, measuring its memory, printing.

Every benchmark starts real processes on loopback, exactly as an operator would (``python -m
gardien serve``), so the figures include interpreter start-up, imports and migrations.
"""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED_REGISTER = REPO_ROOT / "examples" / "seed-site" / "register.yaml"
HOST = "127.0.0.1"
MB = 1024 * 1024


@dataclass(frozen=True)
class Verdict:
    """One target from the issue: reported, never enforced."""

    target: str
    measured: str
    passed: bool

    @property
    def label(self) -> str:
        return verdict(self.passed)


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def gardien_env(data_dir: Path) -> dict[str, str]:
    """The environment of a default install: SQLite in a data dir, the seed register.

    Inherited ``GARDIEN_*`` variables are dropped (``make`` exports ``GARDIEN_DATA_DIR=var``),
    so every run measures the same configuration.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("GARDIEN_")}
    env.update(
        GARDIEN_DATA_DIR=str(data_dir),
        GARDIEN_REGISTER=str(SEED_REGISTER),
        GARDIEN_LOG_LEVEL="WARNING",
    )
    return env


def gardien_command(port: int) -> list[str]:
    return [sys.executable, "-m", "gardien", "serve", "--host", HOST, "--port", str(port)]


def baseline_command(port: int) -> list[str]:
    """A bare uvicorn app, started with the same server options ``gardien serve`` passes."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.baseline_app:app",
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


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    ready_seconds: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        return rss_bytes(self.process.pid)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants."""
    root = psutil.Process(pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def _healthz_ok(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=1)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@contextmanager
def serving(
    command: Sequence[str], env: dict[str, str], port: int, *, timeout: float = 30.0
) -> Iterator[RunningServer]:
    """Spawn a server and yield once ``/healthz`` answers 200 (polled every 10 ms).

    ``ready_seconds`` runs from just before the spawn to the first 200.
    """
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command),
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            while not _healthz_ok(port):
                if process.poll() is not None:
                    stderr.seek(0)
                    detail = stderr.read().decode(errors="replace").strip()[-2000:]
                    raise RuntimeError(
                        f"{command[2]} exited with {process.returncode} before ready:\n{detail}"
                    )
                if time.perf_counter() - started > timeout:
                    raise TimeoutError(f"{command[2]} was not ready after {timeout:.0f} s")
                time.sleep(0.01)
            yield RunningServer(process, port, time.perf_counter() - started)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-align the first column, right-align the others (they hold figures)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [first.ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    print(line(headers))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print(line(row))


def heading(title: str) -> None:
    print()
    print(f"== {title} ==")
