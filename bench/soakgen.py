"""The soak benchmark's load generator: the mixed public write load, run as its own process.

One asyncio loop drives N keep-alive connections (``bench.loadgen.Connection``), spread over
one or more servers' ports, closed loop: each connection sends its next request as soon as the
previous answer is fully read. Requests cycle through the four public writes a site receives
(a tracking hit, a consent record, a contact-form submission, a rights request), each carrying
values of its own so no request repeats another (the forms' duplicate detection, one case per
address). Bounded twice: ``--seconds`` and ``--max-requests``, whichever comes first.

Usage: ``python -m bench.soakgen --ports P1,P2 --connections 16 --seconds 60 --setup FILE``
where FILE holds ``{"consent": {...}, "form": {...}}`` (a consent decision without its id, a
form submission with a ``shown_at`` stamp older than the minimum fill time). Prints one JSON
object per kind on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from urllib.parse import urlencode

from bench.loadgen import Connection, ProtocolError, _percentile

HOST = "127.0.0.1"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"
PAGE = "https://www.cegedim-rx.ro/soak/"
KINDS = ("hit", "consent", "form", "rights")
PATHS = {
    "hit": "/matomo.php",
    "consent": "/api/consent/records",
    "form": "/api/forms/contact",
    "rights": "/api/rights/requests",
}


@dataclass
class Tally:
    requests: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class KindResult:
    kind: str
    path: str
    requests: int
    acknowledged: int
    errors: int
    statuses: dict[str, int]
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float


def _head(port: int) -> str:
    return f"Host: {HOST}:{port}\r\nUser-Agent: {BROWSER}\r\nAccept: */*\r\n"


def _post(port: int, path: str, body: dict[str, object]) -> bytes:
    data = json.dumps(body, ensure_ascii=False).encode()
    head = (
        f"POST {path} HTTP/1.1\r\n{_head(port)}"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode("ascii") + data


def builders(port: int, setup: dict[str, dict[str, object]]) -> dict[str, Callable[[], bytes]]:
    """For each kind, a function returning the next request's bytes (new values each time)."""

    def hit() -> bytes:
        token = secrets.token_hex(8)
        query = urlencode({"idsite": "1", "rec": "1", "url": PAGE + token, "action_name": token})
        return f"GET /matomo.php?{query} HTTP/1.1\r\n{_head(port)}\r\n".encode("ascii")

    def consent() -> bytes:
        token = secrets.token_hex(16)
        body = {**setup["consent"], "consent_id": token, "page": f"/soak/{token[:8]}"}
        return _post(port, PATHS["consent"], body)

    def form() -> bytes:
        message = f"Bonjour, une question sur le logiciel (demande {secrets.token_hex(8)})."
        return _post(port, PATHS["form"], {**setup["form"], "message": message})

    def rights() -> bytes:
        email = f"person.{secrets.token_hex(8)}@example.org"
        return _post(port, PATHS["rights"], {"rights": ["access"], "email": email, "lang": "fr"})

    return {"hit": hit, "consent": consent, "form": form, "rights": rights}


async def _drive(
    connection: Connection,
    build: dict[str, Callable[[], bytes]],
    turns: itertools.count[int],
    limit: int,
    deadline: float,
    tallies: dict[str, Tally],
) -> None:
    while time.perf_counter() < deadline:
        turn = next(turns)
        if turn >= limit:
            return
        kind = KINDS[turn % len(KINDS)]
        tally = tallies[kind]
        request = build[kind]()
        sent = time.perf_counter()
        try:
            status, _ = await connection.get(request)
        except (OSError, asyncio.IncompleteReadError, ProtocolError, ValueError) as exc:
            tally.errors += 1
            name = type(exc).__name__
            tally.statuses[name] = tally.statuses.get(name, 0) + 1
            await connection.close()
            continue
        tally.latencies.append(time.perf_counter() - sent)
        tally.requests += 1
        if not 200 <= status < 300:
            tally.errors += 1
            tally.statuses[str(status)] = tally.statuses.get(str(status), 0) + 1


async def soak(
    ports: list[int],
    connections: int,
    seconds: float,
    max_requests: int,
    setup: dict[str, dict[str, object]],
) -> list[KindResult]:
    pool = [Connection(ports[number % len(ports)]) for number in range(connections)]
    await asyncio.gather(*(c.open() for c in pool))
    build = {port: builders(port, setup) for port in ports}
    tallies = {kind: Tally() for kind in KINDS}
    turns = itertools.count()
    started = time.perf_counter()
    try:
        await asyncio.gather(
            *(
                _drive(c, build[c.port], turns, max_requests, started + seconds, tallies)
                for c in pool
            )
        )
    finally:
        await asyncio.gather(*(c.close() for c in pool))
    elapsed = time.perf_counter() - started
    results = []
    for kind, tally in tallies.items():
        latencies = sorted(tally.latencies)
        results.append(
            KindResult(
                kind=kind,
                path=PATHS[kind],
                requests=tally.requests,
                acknowledged=tally.requests
                - sum(n for s, n in tally.statuses.items() if s.isdigit()),
                errors=tally.errors,
                statuses=tally.statuses,
                seconds=elapsed,
                requests_per_second=tally.requests / elapsed,
                p50_ms=_percentile(latencies, 0.50) * 1000,
                p99_ms=_percentile(latencies, 0.99) * 1000,
            )
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soakgen", description=__doc__)
    parser.add_argument("--ports", required=True, help="comma-separated server ports")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=10**9)
    parser.add_argument("--setup", required=True, help="JSON file: consent and form bodies")
    args = parser.parse_args()
    with open(args.setup, encoding="utf-8") as handle:
        setup = json.load(handle)
    ports = [int(port) for port in args.ports.split(",")]
    results = asyncio.run(soak(ports, args.connections, args.seconds, args.max_requests, setup))
    for result in results:
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
