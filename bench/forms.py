"""Contact forms: what a submission round trip costs, against a bare POST on the same server.

Target (issue 5, reported, not enforced): ``POST /api/forms/contact`` — abuse checks, validation
(e-mail syntax, phone per country, ISO country), duplicate detection, the encrypted submission
and its two outbox messages written and committed, then answered 201 — sustains at least a third
of the requests per second of ``POST /bench/bare`` (same body, same middleware, a handler that
reads the body and answers 201) in the same run. The server is the consent-records bench app:
``create_app`` as ``gardien serve`` builds it, public-write budgets raised for both paths alike.

Two product rules would refuse a flood of identical requests, and the bench honours both
instead of switching them off: the ``shown_at`` stamp is fetched once and the load starts only
after the register's minimum fill time (a stamp stays valid for a day); and every request's
message carries a different number (the load generator's ``{{sequence}}``), so the duplicate
detection sees new content each time. The sender job does not run: its cost is not part of the
round trip. Submissions and outbox rows are counted afterwards, so a path that answered without
storing cannot pass.
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.common import (
    HOST,
    SEED_REGISTER,
    Verdict,
    free_port,
    gardien_env,
    heading,
    print_table,
    ratio,
    serving,
    verdict,
)
from bench.consent_records import BARE, bench_command
from bench.throughput import load

FORM = "/api/forms/contact"
CONNECTIONS = [1, 8, 32]
WARMUP_SECONDS = 1.0
MEASURE_SECONDS = 6.0
ROUNDS = 2
TARGET = 1 / 3


def _min_fill_seconds() -> int:
    register = yaml.safe_load(SEED_REGISTER.read_text(encoding="utf-8"))
    form = next(f for f in register["forms"] if f["id"] == "contact")
    return int(form.get("min_fill_seconds", 3))


def _submission(port: int) -> dict[str, object]:
    """A French visitor's submission with a real stamp; the message varies per request."""
    with urllib.request.urlopen(f"http://{HOST}:{port}{FORM}?lang=fr") as answer:
        definition = json.load(answer)
    return {
        "first_name": "Élodie",
        "last_name": "Durand-Lefèvre",
        "email": "elodie.durand@pharmacie-exemple.fr",
        "phone": "01 23 45 67 89",
        "specialisation": "pharmacist",
        "company": "Pharmacie du Centre",
        "country": "FR",
        "message": "Bonjour,\nJe souhaite une démonstration du logiciel (demande {{sequence}}).",
        "consent": True,
        "lang": "fr",
        "shown_at": definition["shown_at"],
    }


@dataclass(frozen=True)
class Measured:
    connections: int
    bare_rps: float
    form_rps: float
    p50_ms: float
    p99_ms: float
    server_cpu_percent: float
    errors: int

    @property
    def ratio(self) -> float:
        return ratio(self.form_rps, self.bare_rps)


def _stored(database: Path) -> tuple[int, int]:
    """(submissions, outbox messages) in the bench's database."""
    from sqlalchemy import create_engine, func, select
    from sqlalchemy.orm import Session

    from gardien.forms.models import FormSubmission, OutboxMessage

    engine = create_engine(f"sqlite:///{database}")
    try:
        with Session(engine) as session:
            submissions = session.scalar(select(func.count()).select_from(FormSubmission))
            outbox = session.scalar(select(func.count()).select_from(OutboxMessage))
    finally:
        engine.dispose()
    return int(submissions or 0), int(outbox or 0)


def run() -> list[Verdict]:
    heading(
        f"contact forms: POST {FORM} against POST {BARE} on one server (SQLite), "
        f"{MEASURE_SECONDS:.0f} s per path in {ROUNDS} alternating rounds, keep-alive, loopback"
    )
    measured: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="gardien-bench-") as data_dir:
        env = gardien_env(Path(data_dir))
        port = free_port()
        body_file = Path(data_dir) / "submission.json"
        with serving(bench_command(port), env, port) as server:
            body_file.write_text(json.dumps(_submission(port), ensure_ascii=False))
            # The stamp must be older than the minimum fill time, as for a person.
            time.sleep(_min_fill_seconds() + 1)
            bare = f"POST:{BARE}:{body_file}"
            form = f"POST:{FORM}:{body_file}"
            acknowledged = 0
            for connections in CONNECTIONS:
                paths = load(
                    server,
                    [bare, form],
                    connections,
                    warmup=WARMUP_SECONDS,
                    seconds=MEASURE_SECONDS,
                    rounds=ROUNDS,
                )
                b, f = paths[bare], paths[form]
                acknowledged += f.requests - f.errors
                measured.append(
                    Measured(
                        connections,
                        b.requests_per_second,
                        f.requests_per_second,
                        f.p50_ms,
                        f.p99_ms,
                        f.server_cpu_percent,
                        b.errors + f.errors,
                    )
                )
        submissions, outbox = _stored(Path(data_dir) / "gardien.db")
    print_table(
        "conns bare_req/s form_req/s ratio p50_ms p99_ms server_cpu% errors target".split(),
        [
            [
                str(m.connections),
                f"{m.bare_rps:.0f}",
                f"{m.form_rps:.0f}",
                f"{m.ratio:.3f}",
                f"{m.p50_ms:.2f}",
                f"{m.p99_ms:.2f}",
                f"{m.server_cpu_percent:.0f}",
                str(m.errors),
                verdict(m.ratio >= TARGET and not m.errors),
            ]
            for m in measured
        ],
    )
    complete = submissions >= acknowledged and outbox == 2 * submissions
    print(
        f"submissions stored: {submissions} (at least {acknowledged} acknowledged), "
        f"outbox messages: {outbox} (two per submission: {outbox == 2 * submissions})"
    )
    worst = min(measured, key=lambda m: m.ratio)
    errors = sum(m.errors for m in measured)
    return [
        Verdict(
            "form submission ≥ 1/3 × bare POST req/s (SQLite, worst conns)",
            f"x{worst.ratio:.3f} at {worst.connections} conns, {worst.form_rps:.0f} req/s"
            + (f", {errors} errors" if errors else ""),
            worst.ratio >= TARGET and errors == 0 and complete,
        )
    ]


def main() -> None:
    run()


if __name__ == "__main__":
    main()
