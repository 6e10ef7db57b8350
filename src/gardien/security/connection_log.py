"""The connection log: one row per HTTP request, kept six months to detect and investigate abuse.

This is the seed policy's "site connection and usage data" (legitimate interests, fraud
prevention). The IP address is personal data: it is stored encrypted, and found again only
through its blind index, by the rights workflow (a person's requests from an address during a
period), by the retention engine (rows past the period) and by the abuse view (the sources of
most errors and rejected writes). Nothing else reads it; analytics never does.

``ConnectionLog`` is pure ASGI middleware. It holds the response start until the request's row
is committed through group commit, so no response leaves unlogged (DESIGN.md principle 5),
and fails closed with a 503 when the row cannot be written. Static files and ``/healthz`` are
neither logged nor held: they carry no action worth investigating and are polled by machines.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    SmallInteger,
    String,
    Table,
    and_,
    case,
    delete,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gardien.register.schema import Register
from gardien.retention.stores import DeletedWhenOld
from gardien.security.crypto import (
    BlindIndex,
    Encrypted,
    KeyRing,
    Sealed,
    blind_index,
    blind_lookups,
    ring,
)
from gardien.storage.base import PERSONAL_DATA, Base
from gardien.storage.clock import Clock, SystemClock
from gardien.storage.groupcommit import GroupCommit, Ticket
from gardien.storage.subjects import ErasureOutcome, FoundRecords, JsonScalar, SubjectIdentity

log = logging.getLogger("gardien.connection_log")

ACTIVITY = "connection_log"
"""The register activity (and retention store) this log implements."""
IP_CONTEXT = "connection_log.ip"
IP_INDEX_CONTEXT = "connection_log.ip_index"
TEXT_LIMIT = 300
DEFAULT_SKIP = ("/static/", "/healthz", "/metrics")
"""Not visits of the site: static files, and the probes of the operator's monitoring (a
scrape every 15 s would otherwise be a million rows per instance over the six months)."""
FINGERPRINT_FIELD = "client_fingerprint"
FINGERPRINT_CONTEXT = "connection_log.fingerprint"
FINGERPRINT_HEADERS = (
    b"user-agent",
    b"accept",
    b"accept-language",
    b"accept-encoding",
    b"sec-ch-ua",
    b"sec-ch-ua-mobile",
    b"sec-ch-ua-platform",
)
"""What the browser sends on its own with every request; nothing a script collects."""


def declares_fingerprint(register: Register) -> bool:
    """Whether the register's connection-log activity lists ``client_fingerprint``."""
    return any(
        FINGERPRINT_FIELD in category.fields
        for activity in register.activities
        if activity.id == ACTIVITY
        for category in activity.data_categories
    )


def fingerprint(scope: Scope) -> str:
    """A coarse, keyed hash of the received headers (16 hex characters): requests from one
    browser set-up look alike, and nobody can recompute it without the index key."""
    wanted = dict.fromkeys(FINGERPRINT_HEADERS, b"")
    for key, value in scope.get("headers", ()):
        if key in wanted and not wanted[key]:
            wanted[key] = bytes(value)[:TEXT_LIMIT]
    material = b"\x1f".join(wanted.values()).decode("latin-1")
    return ring().index(material, FINGERPRINT_CONTEXT).partition(":")[2][:16]


class ConnectionLogEntry(Base):
    """One request as the server received it: who (encrypted IP), what, when, how it ended."""

    __tablename__ = "connection_log"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    ip: Mapped[str | None] = mapped_column(Encrypted(IP_CONTEXT))
    ip_index: Mapped[str | None] = mapped_column(
        BlindIndex(IP_INDEX_CONTEXT, source="ip", normaliser="ip"), index=True
    )
    user_agent: Mapped[str | None] = mapped_column(String(TEXT_LIMIT))
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(TEXT_LIMIT))
    status: Mapped[int] = mapped_column(SmallInteger)
    latency_ms: Mapped[float] = mapped_column(Float)
    fingerprint: Mapped[str | None] = mapped_column(String(16), index=True)
    """A coarse client fingerprint, only when the register declares ``client_fingerprint``
    among the activity's fields: a keyed hash of received headers, never of anything a script
    collected."""


connection_log: Table = cast(Table, ConnectionLogEntry.__table__)


def canonical_ip(value: str) -> str:
    """The one spelling of an address that is stored and searched (IPv4-mapped IPv6 as IPv4).

    Raises ``ValueError`` without quoting the value, which is personal data.
    """
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError("not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def client_ip(scope: Scope) -> str | None:
    """The peer address of the request (uvicorn has applied trusted proxy headers already).

    ``None`` for a peer that is not an IP address (a Unix socket, a test client), which then
    cannot be tied to anyone and is not stored.
    """
    client = scope.get("client")
    if not client:
        return None
    try:
        return canonical_ip(str(client[0]))
    except ValueError:
        return None


def matches_prefix(path: str, prefixes: Iterable[str]) -> bool:
    """``/static/`` covers everything under it; ``/healthz`` covers itself and below only."""
    for prefix in prefixes:
        if prefix.endswith("/"):
            if path.startswith(prefix) or path == prefix[:-1]:
                return True
        elif path == prefix or path.startswith(prefix + "/"):
            return True
    return False


class _Addresses:
    """Each peer's sealed address and blind index, computed once rather than per request.

    A busy client sends many requests; parsing its address, encrypting it and computing the
    HMAC every time would be most of the log's cost. So each address is encrypted once per
    data key, and every row from it stores that same ciphertext (a ``Sealed`` value the
    column stores as it is). That reveals nothing the blind index next to it does not already
    reveal, which is which rows share an address. Re-using the nonce is safe for the same
    reason: under AES-GCM a repeated nonce leaks only when it seals two *different*
    plaintexts, and each cached nonce only ever seals its one address. Decryption and key
    rotation see ordinary ciphertext.

    An entry is used only while the keys it was made with are the active ones and the key
    ring is fresh (read within its ``max_age``): otherwise the lookup goes through the ring,
    which reloads, so a key another instance rotated in is picked up as promptly as if every
    row were encrypted afresh. The table is emptied when the keys change or it grows past
    ``limit``. It lives in process memory only, like the request that brought the address.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._data_key: str | None = None
        self._index_key: str | None = None
        self._known: dict[str, tuple[Sealed | None, str | None]] = {}

    def lookup(self, host: str) -> tuple[Sealed | None, str | None]:
        keys = ring()
        known = self._known.get(host)
        if (
            known is not None
            and keys.active_data == self._data_key
            and keys.active_index == self._index_key
            and time.monotonic() - keys.loaded_at <= keys.max_age
        ):
            return known
        return self._miss(host, keys)

    def _miss(self, host: str, keys: KeyRing) -> tuple[Sealed | None, str | None]:
        try:
            ip: str | None = canonical_ip(host)
        except ValueError:
            ip = None  # a Unix socket or a test client: not an address of anyone
        if ip is None:
            known: tuple[Sealed | None, str | None] = (None, None)
        else:
            # Through the ring, which reloads first when its keys are due for a refresh.
            index = blind_index(ip, IP_INDEX_CONTEXT, "ip")
            blob = keys.encrypt(ip, IP_CONTEXT)
            if (
                index.partition(":")[0] != keys.active_index
                or KeyRing.key_id_of(blob) != keys.active_data
            ):
                return (Sealed(blob, IP_CONTEXT), index)  # keys changed midway: not kept
            known = (Sealed(blob, IP_CONTEXT), index)
        if keys.active_data != self._data_key or keys.active_index != self._index_key:
            self._known.clear()
            self._data_key, self._index_key = keys.active_data, keys.active_index
        if len(self._known) >= self.limit:
            self._known.clear()
        self._known[host] = known
        return known


class ConnectionLog:
    """Records every HTTP request in ``connection_log`` before its response may start.

    The row is queued when the application starts its response and the ``http.response.start``
    message is passed on only once the row is committed (held meanwhile, with the body when it
    comes in one piece, so the application itself does not wait). ``latency_ms`` runs to the
    application's first response message. If the row cannot be written, the client gets a 503
    instead of the application's response: an unlogged response would be a hole in the record
    the log exists to keep. An exception escaping the application is recorded as a 500.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        writer: GroupCommit,
        clock: Clock | None = None,
        skip: Sequence[str] = DEFAULT_SKIP,
        fingerprints: bool = False,
    ) -> None:
        self.app = app
        self.writer = writer
        self.clock = clock or SystemClock()
        self.skip = tuple(skip)
        self.fingerprints = fingerprints
        self._addresses = _Addresses()
        # ``matches_prefix`` as one set lookup and one ``startswith``, checked on every request.
        self._skip_paths = frozenset(p[:-1] if p.endswith("/") else p for p in self.skip)
        self._skip_trees = tuple(p if p.endswith("/") else p + "/" for p in self.skip)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._skipped(scope):
            await self.app(scope, receive, send)
            return
        at = self.clock.now()
        started = time.perf_counter()
        responded = False
        failed = False
        scope[LOG_SCOPE_KEY] = (self, at, started)

        ticket: Ticket | None = None
        held: list[Message] = []
        """Messages kept back until the row is committed."""

        # The row is queued at the response start, but the application is not made to wait
        # for its commit: its start and (for a response in one piece) its final body are held
        # here, so the application returns at once and the wait happens below, in this
        # shallow frame, rather than deep in the application's stack, which every suspension
        # and resumption would otherwise cross. A streaming response waits at its first
        # chunk instead. Either way nothing reaches the client before the row is committed.
        def logged_send(message: Message) -> Awaitable[None]:
            # Not a coroutine itself: a message that needs no wait costs no coroutine.
            nonlocal responded, ticket
            if failed:
                return _dropped()  # a 503 went out instead; the application's body goes nowhere
            if not responded:
                if message["type"] != "http.response.start":
                    return send(message)
                responded = True
                status = int(message["status"])
                if scope.get(LOGGED_SCOPE_KEY) == status:
                    # The route committed this request's row with its own (``commit_with_log``).
                    return send(message)
                try:
                    row = self._row(scope, at, status, started)
                    ticket = self.writer.enqueue(connection_log, row)
                except Exception as exc:  # noqa: BLE001 - a stopped writer: fail closed
                    return unavailable(exc)
                held.append(message)
                return _dropped()
            if ticket is None:
                return send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                held.append(message)
                return _dropped()
            held.append(message)
            return flush()

        def unavailable(exc: Exception) -> Awaitable[None]:
            """The row cannot be written: a 503 goes out instead of the application's answer."""
            nonlocal failed
            failed = True
            held.clear()
            log.error("connection log write failed", extra={"error": type(exc).__name__})
            return _unavailable(send)

        async def flush() -> None:
            """Wait for the row, then pass the held messages on (or a 503 if it failed)."""
            nonlocal ticket
            (batch, index), ticket = cast(Ticket, ticket), None
            try:
                await batch.future  # ``GroupCommit.settled``, one frame less to resume
                error = batch.outcome(index)
                if error is not None:
                    raise error
            except Exception as exc:  # noqa: BLE001 - fail closed, whatever the cause
                await unavailable(exc)
                return
            messages = held[:]
            held.clear()
            for message in messages:
                await send(message)

        try:
            await self.app(scope, receive, logged_send)
        except Exception:
            if not responded:
                responded = True
                try:
                    await self.writer.write(connection_log, self._row(scope, at, 500, started))
                except Exception as exc:  # noqa: BLE001 - the original error matters more
                    log.error("connection log write failed", extra={"error": type(exc).__name__})
            elif ticket is not None:
                await flush()
            raise
        if ticket is not None:
            await flush()

    def _skipped(self, scope: Scope) -> bool:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        return path in self._skip_paths or path.startswith(self._skip_trees)

    def _row(self, scope: Scope, at: dt.datetime, status: int, started: float) -> dict[str, object]:
        client = scope.get("client")
        ip, ip_index = self._addresses.lookup(str(client[0])) if client else (None, None)
        user_agent = None
        for key, value in scope.get("headers", ()):
            if key == b"user-agent":
                user_agent = value.decode("latin-1")[:TEXT_LIMIT]
                break
        return {
            "at": at,
            "ip": ip,
            "ip_index": ip_index,
            "user_agent": user_agent,
            "method": scope["method"][:16],
            "path": scope["path"][:TEXT_LIMIT],
            "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "fingerprint": fingerprint(scope) if self.fingerprints else None,
        }


async def _dropped() -> None:
    return None


LOG_SCOPE_KEY = "gardien.connection_log"
LOGGED_SCOPE_KEY = "gardien.connection_logged"


def pending_log_row(scope: Scope, status: int) -> dict[str, Any] | None:
    """The request's connection-log row for ``status``, for a route that commits it in a
    transaction of its own (then ``mark_logged``); ``None`` without the middleware."""
    log_state = scope.get(LOG_SCOPE_KEY)
    if log_state is None:
        return None
    middleware, at, started = log_state
    return cast(dict[str, Any], middleware._row(scope, at, status, started))


def mark_logged(scope: Scope, status: int) -> None:
    """The request's row for ``status`` is committed: the middleware writes none at start."""
    scope[LOGGED_SCOPE_KEY] = status


async def commit_with_log(
    scope: Scope, writer: GroupCommit, items: Sequence[tuple[Table, dict[str, Any]]], status: int
) -> None:
    """Commit a route's rows together with the request's connection-log row, for the status
    the route is about to answer: one commit instead of two for a request that writes (the
    tracking endpoint, on every page view). The log row is then not written again at the
    response start unless the status turns out different. Without the middleware in front,
    only the route's rows are written. Raises what ``GroupCommit.write`` raises; nothing is
    marked logged then."""
    log_state = scope.get(LOG_SCOPE_KEY)
    writes = [writer.write(table, row) for table, row in items]
    if log_state is not None:
        middleware, at, started = log_state
        writes.append(writer.write(connection_log, middleware._row(scope, at, status, started)))
    await asyncio.gather(*writes)
    if log_state is not None:
        scope[LOGGED_SCOPE_KEY] = status


async def _unavailable(send: Send) -> None:
    body = b'{"error":"service_unavailable","detail":"The request could not be recorded."}'
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"5"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- retention ------------------------------------------------------------------------------------


class ConnectionLogStore(DeletedWhenOld):
    """Retention of the connection log: rows are deleted once the register's period is over."""

    store_id = ACTIVITY
    noun = "the connection log"
    columns = (ConnectionLogEntry.id, ConnectionLogEntry.at)


# -- data-subject requests ------------------------------------------------------------------------

CANNOT_BE_TIED = (
    "The connection log records requests by IP address only. Without the IP address the "
    "person used, and when, its records cannot be tied to them (GDPR Art. 11(2))."
)
SHARED_ADDRESS = (
    "Matched by IP address and period: an address can be shared (a household, an office, a "
    "mobile network) or reassigned, so these requests may include other people's."
)


class ConnectionLogProvider:
    """Finds, exports and erases a person's requests by IP address, within a period if given."""

    name = ACTIVITY
    tables = frozenset({"connection_log"})

    @staticmethod
    def _mine(subject: SubjectIdentity) -> ColumnElement[bool] | None:
        if not subject.ip_address:
            return None
        lookups = blind_lookups(canonical_ip(subject.ip_address), IP_INDEX_CONTEXT, "ip")
        condition: ColumnElement[bool] = ConnectionLogEntry.ip_index.in_(lookups)
        if subject.period is not None:
            start, end = subject.period
            condition = and_(condition, ConnectionLogEntry.at >= start, ConnectionLogEntry.at < end)
        return condition

    def find(self, session: Session, subject: SubjectIdentity) -> FoundRecords:
        mine = self._mine(subject)
        if mine is None:
            return FoundRecords(self.name, {ACTIVITY: 0}, note=CANNOT_BE_TIED)
        count = session.scalar(select(func.count()).select_from(connection_log).where(mine))
        return FoundRecords(self.name, {ACTIVITY: int(count or 0)}, note=SHARED_ADDRESS)

    def export(
        self, session: Session, subject: SubjectIdentity
    ) -> dict[str, list[dict[str, JsonScalar]]]:
        mine = self._mine(subject)
        if mine is None:
            return {ACTIVITY: []}
        entries = session.scalars(
            select(ConnectionLogEntry).where(mine).order_by(ConnectionLogEntry.at)
        )
        return {
            ACTIVITY: [
                {
                    "at": entry.at.isoformat(),
                    "ip_address": entry.ip,
                    "user_agent": entry.user_agent,
                    "method": entry.method,
                    "path": entry.path,
                    "status": entry.status,
                    "latency_ms": entry.latency_ms,
                }
                for entry in entries
            ]
        }

    def erase(self, session: Session, subject: SubjectIdentity) -> ErasureOutcome:
        mine = self._mine(subject)
        if mine is None:
            return ErasureOutcome(self.name, erased=0)
        result = session.execute(delete(ConnectionLogEntry).where(mine))
        return ErasureOutcome(self.name, erased=int(getattr(result, "rowcount", 0)))

    def rectify(
        self, session: Session, subject: SubjectIdentity, corrections: Mapping[str, str]
    ) -> int:
        """Nothing to rectify: each row records what the server received, which is accurate by
        construction (Art. 16 concerns inaccurate data); editing it would falsify evidence."""
        return 0

    def restrict(self, session: Session, subject: SubjectIdentity, restricted: bool) -> int:
        """Not supported: rows have no restriction flag. They are only ever read for security
        and are gone after six months; a DPO who upholds a restriction (Art. 18) erases the
        rows instead, which ``erase`` does."""
        return 0

    def object(self, session: Session, subject: SubjectIdentity, activity_id: str) -> int:
        """Not automated: an objection to a fraud-prevention log (Art. 21(1)) is weighed by the
        DPO against compelling legitimate grounds (securing the service); when it prevails,
        the answer is ``erase``."""
        return 0


# -- abuse view -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AbuseSource:
    """One source address and what it did since the view's start; ``ip`` is decrypted for
    display, so the caller records the view in the audit trail."""

    ip_index: str
    ip: str | None
    requests: int
    errors: int
    rejected: int
    last_seen: dt.datetime


def top_sources(session: Session, since: dt.datetime, limit: int = 20) -> list[AbuseSource]:
    """The sources with the most error answers (status >= 400) since ``since``, most first.

    ``rejected`` counts the 429s (rate-limited writes). Sources are grouped by blind index, so
    while an index key is being rotated one address may briefly show as two sources.
    """
    errors = func.sum(case((ConnectionLogEntry.status >= 400, 1), else_=0))
    rejected = func.sum(case((ConnectionLogEntry.status == 429, 1), else_=0))
    last_seen = func.max(ConnectionLogEntry.at)
    rows = session.execute(
        select(
            ConnectionLogEntry.ip_index,
            func.count(),
            errors,
            rejected,
            last_seen,
            func.min(ConnectionLogEntry.id),
        )
        .where(ConnectionLogEntry.at >= since, ConnectionLogEntry.ip_index.is_not(None))
        .group_by(ConnectionLogEntry.ip_index)
        .having(errors > 0)
        .order_by(errors.desc(), last_seen.desc())
        .limit(limit)
    ).all()
    sample_ids = [row[5] for row in rows]
    addresses: dict[int, str | None] = dict(
        session.execute(
            select(ConnectionLogEntry.id, ConnectionLogEntry.ip).where(
                ConnectionLogEntry.id.in_(sample_ids)
            )
        )
        .tuples()
        .all()
    )
    return [
        AbuseSource(
            ip_index=str(index),
            ip=addresses.get(sample_id),
            requests=int(requests),
            errors=int(error_count),
            rejected=int(rejected_count or 0),
            last_seen=_utc(seen),
        )
        for index, requests, error_count, rejected_count, seen, sample_id in rows
    ]


def _utc(value: object) -> dt.datetime:
    """``max(at)`` comes back typed on every backend; this only guards the assumption."""
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
