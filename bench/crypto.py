"""Encryption at rest: what encrypting and decrypting a typical record adds to a form
submission's round trip, on the same server in the same run (target: under 5 %).

The typical record is a contact-form submission stored the way Gardien stores one (forms/
models.py): its fields as one encrypted JSON value, its e-mail address and phone number as
blind indexes; against the same record with the fields in clear and the two lookup columns in
clear. The same fields each in an encrypted column of its own (seven ciphertexts each way, the
shape of a rights case) are measured too and reported, not held to the target. See
``bench/crypto_app.py``. The endpoints take one request each in turn, in a shuffled order, so
the machine's drift falls on all of them alike; the figures are medians of the round trips.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from bench.common import REPO_ROOT, Verdict, free_port, heading, print_table, verdict

RECORD = {
    "first_name": "Ana-Maria",
    "last_name": "Popescu",
    "phone": "+40721234567",
    "email": "ana.popescu@clinica-exemplu.ro",
    "company": "Clinica Exemplu SRL",
    "country": "RO",
    "message": "Bună ziua, aș dori o demonstrație a produsului pentru cabinetul nostru. " * 4,
}
REQUESTS = 2000
"""Round trips per endpoint."""
PATHS = ("/plain", "/encrypted", "/plain-columns", "/encrypted-columns")
TARGET = 0.05


def _measure(client: httpx.Client, path: str, count: int) -> list[float]:
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.post(path, json=RECORD)
        timings.append(time.perf_counter() - started)
        response.raise_for_status()
    return timings


def run() -> list[Verdict]:
    heading("encryption at rest: a form submission's round trip, plain vs encrypted storage")
    port = free_port()
    timings: dict[str, list[float]] = {path: [] for path in PATHS}
    with tempfile.TemporaryDirectory(prefix="gardien-crypto-") as directory:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.crypto_app:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=REPO_ROOT,
            env={"BENCH_DIR": directory, "PATH": "/usr/bin:/bin"},
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                for _ in range(100):
                    try:
                        client.post("/plain", json=RECORD)
                        break
                    except httpx.TransportError:
                        time.sleep(0.05)
                for path in PATHS:
                    _measure(client, path, 50)
                order = list(PATHS)
                shuffle = random.Random(0).shuffle  # the same sequence in every run
                for _ in range(REQUESTS):
                    # One request per endpoint in turn, in a shuffled order: the machine's
                    # drift falls on every endpoint alike, and each follows every other one
                    # about as often.
                    shuffle(order)
                    for path in order:
                        timings[path] += _measure(client, path, 1)
        finally:
            server.terminate()
            server.wait(timeout=10)
    medians = {path: statistics.median(t) for path, t in timings.items()}
    form = medians["/encrypted"] / medians["/plain"] - 1
    columns = medians["/encrypted-columns"] / medians["/plain-columns"] - 1
    print_table(
        ["storage", "requests", "median ms", "p90 ms"],
        [
            [
                name,
                str(len(timings[path])),
                f"{medians[path] * 1000:.3f}",
                f"{statistics.quantiles(timings[path], n=10)[-1] * 1000:.3f}",
            ]
            for name, path in (
                ("form record, in clear", "/plain"),
                ("form record, as Gardien stores it", "/encrypted"),
                ("seven columns, in clear", "/plain-columns"),
                ("seven columns, each encrypted", "/encrypted-columns"),
            )
        ],
    )
    print(
        f"encryption + decryption add {form:+.1%} to the form record's round trip "
        f"(one ciphertext and two blind indexes), {columns:+.1%} with seven encrypted columns "
        "(reported, not a target)"
    )
    passed = form < TARGET
    print(f"{verdict(passed)}  encryption overhead < 5 % of a form round trip: {form:+.1%}")
    return [Verdict("encryption overhead < 5 % of a round trip", f"{form:+.1%}", passed)]
