"""Running a real ``gardien serve`` process for end-to-end and browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gardien_env(data_dir: Path, database_url: str, register: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GARDIEN_DATA_DIR=str(data_dir),
        GARDIEN_DATABASE_URL=database_url,
        GARDIEN_REGISTER=str(register),
        GARDIEN_LOG_LEVEL="WARNING",
    )
    return env


def gardien(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gardien", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]


@contextmanager
def serving(env: dict[str, str], *extra: str, timeout: float = 30) -> Iterator[Server]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gardien", "serve", "--port", str(port), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                _, err = process.communicate()
                raise RuntimeError(f"gardien serve exited with {process.returncode}: {err}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("gardien serve did not become ready")
            time.sleep(0.05)
        yield Server(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
