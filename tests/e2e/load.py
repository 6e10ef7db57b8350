"""A mixed public write load against a real ``gardien serve`` (tracking hits, consent records,
contact-form submissions, rights requests), remembering every write answered 2xx by the value
that identifies it, and the checks that each acknowledged write is stored intact.

Shared by the crash test (one server killed mid-load) and the several-instances test (two
servers on one PostgreSQL). Each worker speaks from its own forwarded address (the server
trusts ``X-Forwarded-For`` from loopback), so the per-address budget of public writes does
not turn the load into a stream of 429s.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count

import httpx
from sqlalchemy import Connection, create_engine, func, select

from gardien.analytics.models import AnalyticsHit
from gardien.consent.models import ConsentRecord
from gardien.deps import State
from gardien.forms.models import FormSubmission, OutboxMessage
from gardien.rights.models import RightsCase

PAGE = "https://www.cegedim-rx.ro/crash/"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"
CONTACT = {
    "first_name": "Ana-Maria",
    "last_name": "Popescu",
    "email": "Ana.Popescu@Clinica.example.ro",
    "phone": "021 123 4567",
    "specialisation": "pharmacist",
    "company": "Farmacia Centrală",
    "country": "RO",
    "consent": True,
}
KINDS = ("hit", "consent", "form", "rights")


@dataclass(frozen=True)
class Acknowledged:
    kind: str
    key: str
    """What the server answered it by (consent id, form id, case reference) or, for a hit,
    the unique page it was about."""
    value: str
    """The value sent that must come back intact."""


@dataclass
class Load:
    urls: Sequence[str]
    acknowledged: list[Acknowledged] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _numbers: count[int] = field(default_factory=count)

    def acked(self, kind: str | None = None) -> list[Acknowledged]:
        with self.lock:
            return [a for a in self.acknowledged if kind is None or a.kind == kind]

    def _note(self, status: int, ack: Acknowledged | None) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if ack is not None and 200 <= status < 300:
                self.acknowledged.append(ack)

    def _one(self, client: httpx.Client, kind: str, consent: dict[str, object]) -> None:
        token = secrets.token_hex(8)
        if kind == "hit":
            page = PAGE + token
            params = {"idsite": "1", "rec": "1", "url": page, "action_name": token}
            answer = client.get("/matomo.php", params=params)
            self._note(answer.status_code, Acknowledged(kind, page, token))
        elif kind == "consent":
            consent_id = secrets.token_hex(16)
            body = {**consent, "consent_id": consent_id, "page": f"/crash/{token}"}
            answer = client.post("/api/consent/records", json=body)
            key = answer.json().get("event_id", "") if answer.status_code == 201 else ""
            self._note(answer.status_code, Acknowledged(kind, consent_id, str(key)))
        elif kind == "form":
            stamp = client.get("/api/forms/contact").json()["shown_at"]
            message = f"Question {token} about the software."
            body = {**CONTACT, "message": message, "shown_at": stamp}
            answer = client.post("/api/forms/contact", json=body)
            key = answer.json().get("id", "") if answer.status_code == 201 else ""
            self._note(answer.status_code, Acknowledged(kind, str(key), message))
        else:
            email = f"person.{token}@example.org"
            body = {"rights": ["access"], "email": email}
            answer = client.post("/api/rights/requests", json=body)
            key = answer.json().get("reference", "") if answer.status_code == 202 else ""
            self._note(answer.status_code, Acknowledged(kind, str(key), email))

    def worker(self, number: int) -> None:
        url = self.urls[number % len(self.urls)]
        headers = {"User-Agent": BROWSER, "X-Forwarded-For": f"10.9.{number}.1"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            consent = consent_body(client)
            while not self.stop.is_set():
                kind = KINDS[next(self._numbers) % len(KINDS)]
                try:
                    self._one(client, kind, consent)
                except (httpx.HTTPError, ValueError, KeyError):
                    # The server was killed under this request: no answer, nothing promised.
                    with self.lock:
                        self.failures += 1
                    self.stop.wait(0.05)

    def run(self, workers: int) -> ThreadPoolExecutor:
        pool = ThreadPoolExecutor(workers)
        for number in range(workers):
            pool.submit(self.worker, number)
        return pool


@contextmanager
def connected(database_url: str, *, write: bool = False) -> Iterator[Connection]:
    """A connection of its own (no key ring: only columns stored in clear are read)."""
    engine = create_engine(database_url)
    try:
        with engine.begin() if write else engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def unsent(database_url: str) -> int:
    with connected(database_url) as connection:
        query = select(func.count()).select_from(OutboxMessage)
        return int(connection.execute(query.where(OutboxMessage.status != "sent")).scalar_one())


def consent_body(client: httpx.Client) -> dict[str, object]:
    conf = client.get("/consent/config.json?lang=fr").json()
    optional = [c["id"] for c in conf["categories"] if not c["required"]]
    return {
        "action": "accept_all",
        "layer": "banner",
        "control": "accept",
        "revision": conf["revision"],
        "hash": conf["hash"],
        "choices": dict.fromkeys(optional, True),
        "language": "fr",
        "client_time": "2026-01-15T09:30:00.000Z",
        "gpc": False,
        "dnt": False,
    }


def missing(state: State, acknowledged: Sequence[Acknowledged]) -> list[Acknowledged]:
    """The acknowledged writes not found intact in the database (decrypted through the
    application's own models)."""
    lost: list[Acknowledged] = []
    with state.sessions() as session:
        for ack in acknowledged:
            if ack.kind == "hit":
                found = session.scalars(
                    select(AnalyticsHit.action_name).where(AnalyticsHit.url == ack.key)
                ).all()
                intact = list(found) == [ack.value]
            elif ack.kind == "consent":
                row = session.scalars(
                    select(ConsentRecord).where(ConsentRecord.event_id == ack.value)
                ).one_or_none()
                intact = row is not None and row.consent_id == ack.key
            elif ack.kind == "form":
                submission = session.scalars(
                    select(FormSubmission).where(FormSubmission.public_id == ack.key)
                ).one_or_none()
                intact = (
                    submission is not None
                    and json.loads(submission.fields).get("message") == ack.value
                    and bool(
                        session.scalars(
                            select(OutboxMessage.id).where(
                                OutboxMessage.submission_id == submission.id
                            )
                        ).all()
                    )
                )
            else:
                case = session.scalars(
                    select(RightsCase).where(RightsCase.reference == ack.key)
                ).one_or_none()
                intact = case is not None and case.email == ack.value
            if not intact:
                lost.append(ack)
    return lost
