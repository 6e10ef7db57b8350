"""A bounded-time HTTP/1.1 load generator, run as its own process on loopback.

``wrk`` is not installed on the bench machines and nothing is installed system-wide for a
benchmark, so this is the stand-in: one asyncio loop driving N keep-alive connections, each
sending the next request as soon as the previous response is fully read (closed loop). It
speaks just enough HTTP/1.1 for Gardien and uvicorn (``content-length`` bodies).

Usage: ``python -m bench.loadgen --port P --connections 8 /healthz '/privacy?lang=en'``; prints
one JSON object per path on stdout. Paths are measured in turn, then again in reverse order, so
slow drift on a shared machine falls on every path alike.

``POST:/path:/file.json`` posts that file's JSON. Where the file holds ``{{sequence}}``, each
request carries a different value there (a token of this run, then a counter; always the same
width, so the body's length does not change): a server that refuses repeated content (the
forms' duplicate detection) sees every request as new.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import psutil

HOST = "127.0.0.1"
SEQUENCE = b"{{sequence}}"
_RUN = secrets.token_hex(4)
_COUNTER = itertools.count()


class ProtocolError(Exception):
    """The server answered something this minimal client does not parse."""


@dataclass
class Tally:
    """What one path accumulated over all its measured phases."""

    requests: int = 0
    errors: int = 0
    body_bytes: int = 0
    seconds: float = 0.0
    server_cpu_seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    phase_rates: list[float] = field(default_factory=list)
    """Requests per second of each measured phase, in order (one per round)."""


@dataclass(frozen=True)
class PathResult:
    path: str
    connections: int
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    mean_body_bytes: float
    server_cpu_percent: float
    client_cpu_percent: float
    phase_rps: tuple[float, ...] = ()
    """Each round's requests per second, in order: how much the machine drifted."""


class Connection:
    """One keep-alive connection; reopened if the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        return self.reader, self.writer

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    async def get(self, request: bytes) -> tuple[int, int]:
        """Send one request; return (status, body length) once the body is fully read."""
        reader, writer = self.reader, self.writer
        if reader is None or writer is None:
            reader, writer = await self.open()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        keep_alive = True
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise ProtocolError("chunked responses are not supported")
            elif name == b"connection" and value.strip().lower() == b"close":
                keep_alive = False
        await reader.readexactly(length)
        if not keep_alive:
            await self.close()
        return status, length


def sequence_value() -> bytes:
    """The next value for ``{{sequence}}``: unique in this run and across runs."""
    return f"{_RUN}-{next(_COUNTER):012d}".encode("ascii")


class RequestBytes:
    """What one path sends: a GET of ``path``, or for ``POST:/path:/file.json`` a POST of
    that file's JSON; the same bytes each time, unless the body holds ``{{sequence}}``."""

    def __init__(self, path: str, port: int) -> None:
        common = f"Host: {HOST}:{port}\r\nUser-Agent: gardien-bench\r\nAccept: */*\r\n"
        if not path.startswith("POST:"):
            self.template = f"GET {path} HTTP/1.1\r\n{common}\r\n".encode("ascii")
            self.varies = False
            return
        _, target, body_file = path.split(":", 2)
        with open(body_file, "rb") as handle:
            body = handle.read()
        marks = body.count(SEQUENCE)
        length = len(body) + marks * (len(sequence_value()) - len(SEQUENCE))
        head = (
            f"POST {target} HTTP/1.1\r\n{common}"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
        self.template = head.encode("ascii") + body
        self.varies = marks > 0

    def next(self) -> bytes:
        if not self.varies:
            return self.template
        return self.template.replace(SEQUENCE, sequence_value())


async def _drive(
    connection: Connection, request: RequestBytes, deadline: float, tally: Tally
) -> None:
    while time.perf_counter() < deadline:
        sent = time.perf_counter()
        try:
            status, length = await connection.get(request.next())
        except (OSError, asyncio.IncompleteReadError, ProtocolError, ValueError):
            tally.errors += 1
            await connection.close()
            continue
        tally.latencies.append(time.perf_counter() - sent)
        tally.requests += 1
        tally.body_bytes += length
        if not 200 <= status < 300:
            tally.errors += 1


def _cpu_seconds(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


async def _phase(
    connections: list[Connection],
    request: RequestBytes,
    seconds: float,
    tally: Tally,
    server: psutil.Process | None,
) -> None:
    server_cpu = _cpu_seconds(server)
    client_cpu = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    before = tally.requests
    await asyncio.gather(*(_drive(c, request, deadline, tally) for c in connections))
    # Elapsed runs to the last response, so requests started before the deadline all count.
    elapsed = time.perf_counter() - started
    tally.seconds += elapsed
    tally.phase_rates.append((tally.requests - before) / elapsed)
    tally.server_cpu_seconds += _cpu_seconds(server) - server_cpu
    tally.client_cpu_seconds += time.process_time() - client_cpu


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def measure(
    port: int,
    paths: Sequence[str],
    connections: int,
    *,
    warmup: float = 1.0,
    seconds: float = 5.0,
    rounds: int = 2,
    server_pid: int | None = None,
) -> list[PathResult]:
    """``warmup`` seconds shared by all paths, then ``seconds`` per path split over ``rounds``."""
    server = psutil.Process(server_pid) if server_pid else None
    pool = [Connection(port) for _ in range(connections)]
    await asyncio.gather(*(c.open() for c in pool))
    try:
        requests = {path: RequestBytes(path, port) for path in paths}
        for path in paths:
            await _phase(pool, requests[path], warmup / len(paths), Tally(), None)
        tallies = {path: Tally() for path in paths}
        for round_number in range(rounds):
            order = list(paths) if round_number % 2 == 0 else list(reversed(paths))
            for path in order:
                await _phase(pool, requests[path], seconds / rounds, tallies[path], server)
    finally:
        await asyncio.gather(*(c.close() for c in pool))

    results = []
    for path, tally in tallies.items():
        latencies = sorted(tally.latencies)
        results.append(
            PathResult(
                path=path,
                connections=connections,
                requests=tally.requests,
                errors=tally.errors,
                seconds=tally.seconds,
                requests_per_second=tally.requests / tally.seconds,
                p50_ms=_percentile(latencies, 0.50) * 1000,
                p99_ms=_percentile(latencies, 0.99) * 1000,
                mean_body_bytes=tally.body_bytes / max(1, tally.requests),
                server_cpu_percent=100 * tally.server_cpu_seconds / tally.seconds,
                client_cpu_percent=100 * tally.client_cpu_seconds / tally.seconds,
                phase_rps=tuple(tally.phase_rates),
            )
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("paths", nargs="+", help="request paths, e.g. /healthz")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds, all paths")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per path")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server-pid", type=int, help="report this process's CPU use")
    args = parser.parse_args()
    results = asyncio.run(
        measure(
            args.port,
            args.paths,
            args.connections,
            warmup=args.warmup,
            seconds=args.seconds,
            rounds=args.rounds,
            server_pid=args.server_pid,
        )
    )
    for result in results:
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
