"""The outbox sender: delivers queued e-mails over SMTP, or as ``.eml`` files without one.

Rows are claimed in one short transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several instances share the work without sending a row twice; SQLite's single writer gives the
same on one machine), marked ``sending`` for ``CLAIM_TTL``, and sent outside any transaction.
The claim also reads the submissions the messages are about; each message is built from its
submission just before it is handed over (``mail.render``), so the visitor's round trip never
pays for it, and every attempt builds the same message. Each outcome is then recorded in its
own transaction. A sender that dies leaves its rows ``sending`` until the claim expires, and
another sender takes them over: delivery is at-least-once, and a duplicate (same Message-ID)
can only follow a crash between the server's acceptance and the commit.

Failures wait ``FIRST_RETRY × 2^(attempts-1)`` (at most ``LONGEST_WAIT``) and the row is
``dead`` after ``MAX_ATTEMPTS``; the admin can send it again (``retry_dead``). Logs and
``last_error`` carry the error's type and SMTP code only, never an address or a server message.

Other domains queue messages of their own kinds in the same outbox (the rights notices, the
SMS codes): they declare them with ``add_kinds``, saying how a claimed row is built (read in
the claiming transaction, built when sent, like a submission's) and, when it is not an
e-mail, how it is delivered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import os
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from gardien.deps import State
from gardien.forms.mail import (
    NOTIFICATION,
    Queued,
    Submitted,
    Unrenderable,
    message_domain,
    render,
)
from gardien.forms.models import DisclosureEntry, FormSubmission, OutboxMessage
from gardien.register.schema import FieldType, Register
from gardien.storage.database import unit_of_work
from gardien.storage.restriction import any_active, is_restricted, processing_point

log = logging.getLogger("gardien.forms.outbox")

CLAIM_TTL = dt.timedelta(minutes=5)
FIRST_RETRY = dt.timedelta(minutes=1)
LONGEST_WAIT = dt.timedelta(hours=6)
MAX_ATTEMPTS = 8
SMTP_TIMEOUT = 30.0
SCHEDULE_SECONDS = 5.0
BATCH = 50
OPERATOR_KINDS = frozenset({NOTIFICATION, "rights_reminder"})
"""Kinds sent to the operator's own staff (the disclosure log's ``operator``): the forms'
notification and the rights deadline reminder (rights/reminders.py)."""


@dataclass
class SendReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    released: int = 0
    """Claimed but given back untried: the run used up its time budget."""


Builder = Callable[[Register, str], str]
"""Builds one claimed message (given the register and the public base URL) when it is sent."""


@dataclass(frozen=True)
class ClaimedMessage:
    """What sending needs, read while the row was claimed (no ORM object leaves the
    claiming transaction)."""

    id: int
    message_id: str
    recipient: str
    activity: str
    kind: str
    submission_id: int | None
    queued_at: dt.datetime
    """The row's ``created_at``: the message's Date, whenever it is sent."""
    submitted: Submitted | None = None
    """The submission the message is built from (``None`` once it was erased)."""
    message: str | None = None
    """The stored message of a row queued before messages were built when sent."""
    build: Builder | None = None
    """How a message of another domain's kind is built (see ``add_kinds``)."""

    def text(self, register: Register, base_url: str) -> str:
        """The message as it goes out: built now, the same at every attempt."""
        if self.message is not None:
            return self.message
        if self.build is not None:
            return self.build(register, base_url)
        if self.submitted is None:
            raise Unrenderable("the submission is gone")
        return render(
            self.kind,
            register=register,
            submitted=self.submitted,
            queued=Queued(self.recipient, self.message_id, self.queued_at),
            base_url=base_url,
        )


# --- SMTP configuration -------------------------------------------------------------------


class SmtpUrlError(ValueError):
    """``GARDIEN_SMTP_URL`` cannot be used; the message names the part that is wrong."""


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = None


def parse_smtp_url(url: str) -> SmtpTarget:
    """``smtp://[user:password@]host[:port]`` (STARTTLS when offered, port 25) or
    ``smtps://...`` (TLS from the first byte, port 465). Credentials are percent-encoded."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise SmtpUrlError("GARDIEN_SMTP_URL must start with smtp:// or smtps://")
    if not parts.hostname:
        raise SmtpUrlError("GARDIEN_SMTP_URL names no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise SmtpUrlError("GARDIEN_SMTP_URL has an invalid port") from exc
    implicit_tls = parts.scheme == "smtps"
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if implicit_tls else 25),
        implicit_tls=implicit_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- transports ---------------------------------------------------------------------------


class InsecureLogin(Exception):
    """The server offers no TLS and the URL carries credentials for a non-loopback host."""


class ServerUnavailable(Exception):
    """An earlier message of the batch could not reach the server; the rest are not tried."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def describe(exc: BaseException) -> str:
    """The error's type and SMTP code: never its message, which may quote an address."""
    if isinstance(exc, ServerUnavailable):
        return exc.cause
    code: int | None = None
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
    elif isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        code = next(iter(exc.recipients.values()))[0]
    name = type(exc).__name__
    return (f"{name} {code}" if code is not None else name)[:120]


class Transport(Protocol):
    channel: str

    def deliver(self, sender: str, item: ClaimedMessage, text: str) -> str | None:
        """Hand ``text``, the message of ``item``, over; returns the ``.eml`` path when one
        was written."""

    def close(self) -> None: ...


class SmtpTransport:
    """One connection per batch, opened at the first message. After a failure to reach or
    keep the server, the batch's other messages fail at once instead of each waiting for a
    timeout (their claim must not expire while the batch runs)."""

    channel = "smtp"

    def __init__(self, target: SmtpTarget, local_hostname: str, tls: ssl.SSLContext) -> None:
        self.target = target
        self.local_hostname = local_hostname
        self.tls = tls
        self._smtp: smtplib.SMTP | None = None
        self._unavailable: str | None = None

    def _connect(self) -> smtplib.SMTP:
        target = self.target
        smtp: smtplib.SMTP
        if target.implicit_tls:
            smtp = smtplib.SMTP_SSL(
                target.host,
                target.port,
                local_hostname=self.local_hostname,
                timeout=SMTP_TIMEOUT,
                context=self.tls,
            )
        else:
            smtp = smtplib.SMTP(
                target.host, target.port, local_hostname=self.local_hostname, timeout=SMTP_TIMEOUT
            )
        try:
            smtp.ehlo()
            if not target.implicit_tls and smtp.has_extn("starttls"):
                smtp.starttls(context=self.tls)
                smtp.ehlo()
            elif not target.implicit_tls and target.username and not _loopback(target.host):
                raise InsecureLogin("no STARTTLS offered")
            if target.username:
                smtp.login(target.username, target.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def deliver(self, sender: str, item: ClaimedMessage, text: str) -> str | None:
        if self._unavailable:
            raise ServerUnavailable(self._unavailable)
        try:
            if self._smtp is None:
                self._smtp = self._connect()
            data = text.encode("utf-8")
            options = [] if data.isascii() else ["SMTPUTF8"]
            # The envelope names the one recipient: whatever the headers say, nobody else
            # receives the message.
            self._smtp.sendmail(sender, [item.recipient], data, mail_options=options)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPSenderRefused):
            self._reset()
            raise
        except (OSError, smtplib.SMTPException, InsecureLogin) as exc:
            self._unavailable = describe(exc)
            self.close()
            raise
        return None

    def _reset(self) -> None:
        """After a refused message the connection stays usable for the next one."""
        if self._smtp is not None:
            try:
                self._smtp.rset()
            except (OSError, smtplib.SMTPException):
                self.close()

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None


_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]")


def eml_name(message_id: str) -> str:
    """A file name from the Message-ID: only letters, digits and ``._@-`` survive."""
    return _UNSAFE.sub("_", message_id.strip("<>"))[:200] + ".eml"


class EmlTransport:
    """No SMTP server configured: each message becomes a private file (0600 in a 0700
    directory), written whole and then renamed, so a reader never sees half a message."""

    channel = "eml"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def deliver(self, sender: str, item: ClaimedMessage, text: str) -> str | None:
        return write_private(self.directory, eml_name(item.message_id), text)

    def close(self) -> None:
        return None


def write_private(directory: Path, name: str, text: str) -> str:
    """Write ``text`` to ``directory/name`` privately (0600 in a 0700 directory), whole and
    then renamed, so a reader never sees half a message; returns the path."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = (directory / name).resolve()
    partial = path.with_name(path.name + ".part")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, text.encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(partial, path)
    return str(path)


@dataclass(frozen=True)
class OutboxKinds:
    """Kinds of outbox messages another domain queues: ``prepare`` reads, in the claiming
    transaction, what building its claimed rows needs and returns a builder per row id (a row
    without one fails and is retried); ``transport`` delivers them when they are not e-mails."""

    kinds: frozenset[str]
    prepare: Callable[[Session, Sequence[OutboxMessage]], dict[int, Builder]]
    transport: Callable[[State], Transport] | None = None


_EXTRA_KINDS: dict[str, OutboxKinds] = {}


def add_kinds(kinds: OutboxKinds) -> None:
    """Declare another domain's kinds (done once by the composition root; idempotent)."""
    for kind in kinds.kinds:
        _EXTRA_KINDS[kind] = kinds


def transport_for(state: State, tls: ssl.SSLContext | None = None) -> Transport:
    settings = state.settings
    if settings.smtp_url:
        return SmtpTransport(
            parse_smtp_url(settings.smtp_url),
            local_hostname=message_domain(settings.base_url),
            tls=tls or ssl.create_default_context(),
        )
    return EmlTransport(settings.data_dir / "outbox")


# --- the job ------------------------------------------------------------------------------


def _due(now: dt.datetime) -> ColumnElement[bool]:
    """Pending rows whose time has come, and rows whose sender's claim ran out (it died)."""
    return or_(
        and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now),
        and_(OutboxMessage.status == "sending", OutboxMessage.claimed_until < now),
    )


def claim(state: State, now: dt.datetime, limit: int) -> list[ClaimedMessage]:
    """Mark up to ``limit`` due rows ``sending`` and commit, so no other sender takes them."""
    with unit_of_work(state.sessions) as session:
        # SKIP LOCKED on PostgreSQL: rows another sender is claiming are passed over, not
        # waited for. SQLite ignores it; its BEGIN IMMEDIATE already admits one writer.
        rows = session.scalars(
            select(OutboxMessage)
            .where(_due(now))
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        submitted = _submitted(session, {row.submission_id for row in rows if row.message is None})
        builders: dict[int, Builder] = {}
        for kinds in {id(k): k for k in _EXTRA_KINDS.values()}.values():
            mine = [row for row in rows if row.kind in kinds.kinds and row.message is None]
            if mine:
                builders.update(kinds.prepare(session, mine))
        held = hold_restricted(session, state.register, rows, submitted)
        claimed = []
        for row in rows:
            if row.id in held:
                continue
            row.status = "sending"
            row.claimed_until = now + CLAIM_TTL
            claimed.append(
                ClaimedMessage(
                    id=row.id,
                    message_id=row.message_id,
                    recipient=row.recipient,
                    activity=row.activity,
                    kind=row.kind,
                    submission_id=row.submission_id,
                    queued_at=row.created_at,
                    submitted=submitted.get(row.submission_id or -1),
                    message=row.message,
                    build=builders.get(row.id),
                )
            )
    return claimed


IDENTIFYING = {FieldType.email: "email", FieldType.phone: "phone"}
"""The form fields a restriction is matched on, by the identifier kind they carry."""


def identifiers_of(register: Register, form_id: str, values: dict[str, Any]) -> dict[str, str]:
    """The e-mail address and phone number a submission carries, by identifier kind."""
    form = next((f for f in register.forms if f.id == form_id), None)
    if form is None:
        return {}
    return {
        IDENTIFYING[field.type]: str(values[field.name])
        for field in form.fields
        if field.type in IDENTIFYING and values.get(field.name)
    }


def withheld(session: Session, register: Register, submission: FormSubmission) -> bool:
    """Whether a submission is only to be stored: flagged restricted, or from a person whose
    restriction (or objection to its activity) the sender has not met yet."""
    if submission.restricted:
        return True
    found = identifiers_of(register, submission.form_id, json.loads(submission.fields))
    return bool(found) and is_restricted(session, submission.activity, **found)


@processing_point("forms.outbox")
def hold_restricted(
    session: Session,
    register: Register,
    rows: Sequence[OutboxMessage],
    submitted: dict[int, Submitted],
) -> set[int]:
    """Hold (``held``, not sent) the messages of submissions from a person who restricted
    processing or objected to the form's activity, and flag the submission ``restricted`` so
    the inbox shows it and exports leave it out (GDPR Art. 18(2): storage only). Returns the
    ids of the rows held."""
    held: set[int] = set()
    if not submitted or not any_active(session):
        return held
    for row in rows:
        item = submitted.get(row.submission_id or -1)
        if item is None:
            continue
        found = identifiers_of(register, item.form_id, item.values)
        if found and is_restricted(session, row.activity, **found):
            row.status = "held"
            held.add(row.id)
            session.execute(
                update(FormSubmission)
                .where(FormSubmission.id == row.submission_id)
                .values(restricted=True)
            )
    return held


def _submitted(session: Session, ids: set[int | None]) -> dict[int, Submitted]:
    """The submissions the claimed messages are built from, decrypted, by id."""
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    rows = session.execute(
        select(
            FormSubmission.id,
            FormSubmission.public_id,
            FormSubmission.form_id,
            FormSubmission.language,
            FormSubmission.received_at,
            FormSubmission.fields,
        ).where(FormSubmission.id.in_(wanted))
    )
    return {
        row.id: Submitted(
            public_id=row.public_id,
            form_id=row.form_id,
            language=row.language,
            received_at=row.received_at,
            values=json.loads(row.fields),
        )
        for row in rows
    }


def _record_sent(
    session: Session, item: ClaimedMessage, channel: str, eml_path: str | None, now: dt.datetime
) -> bool:
    row = session.get(OutboxMessage, item.id, with_for_update=True)
    if row is None:
        # Erased or purged while in flight: keep no trace of the recipient either.
        return False
    if row.status != "sent":
        row.status = "sent"
        row.sent_at = now
        row.claimed_until = None
        row.last_error = None
        row.eml_path = eml_path
        session.add(
            DisclosureEntry(
                at=now,
                activity=item.activity,
                recipient=item.recipient,
                recipient_kind="operator" if item.kind in OPERATOR_KINDS else "subject",
                message_id=item.message_id,
                submission_id=item.submission_id,
                channel=channel,
                details={"kind": item.kind},
            )
        )
    return True


def _record_failure(
    session: Session, item: ClaimedMessage, error: str, now: dt.datetime
) -> str | None:
    row = session.get(OutboxMessage, item.id, with_for_update=True)
    if row is None or row.status != "sending":
        return None  # gone, or another sender got it through meanwhile
    row.attempts += 1
    row.last_error = error
    row.claimed_until = None
    if row.attempts >= MAX_ATTEMPTS:
        row.status = "dead"
    else:
        row.status = "pending"
        row.next_attempt_at = now + backoff(row.attempts)
    return row.status


def backoff(attempts: int) -> dt.timedelta:
    """The wait after the ``attempts``-th failure: 1, 2, 4... minutes, at most 6 hours."""
    wait: dt.timedelta = FIRST_RETRY * (2 ** min(max(attempts - 1, 0), 20))
    return min(wait, LONGEST_WAIT)


def _release(state: State, items: list[ClaimedMessage]) -> None:
    """Give claimed rows back untried (no attempt counted), for the next run."""
    with unit_of_work(state.sessions) as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_([i.id for i in items]), OutboxMessage.status == "sending")
            .values(status="pending", claimed_until=None)
        )


def send_due(
    state: State,
    *,
    now: dt.datetime,
    limit: int = BATCH,
    tls: ssl.SSLContext | None = None,
    budget: dt.timedelta = CLAIM_TTL / 2,
) -> SendReport:
    """Claim the due messages, deliver them, record each outcome. ``tls`` overrides the
    system's trust store (tests with their own certificate authority).

    A slow server must not make a claim outlive ``CLAIM_TTL`` (another sender would take the
    rows over and send them again): past ``budget`` of real time, the rest of the batch is
    given back untried."""
    report = SendReport()
    transport = transport_for(state, tls)  # a bad SMTP_URL fails here, before any claim
    others: dict[int, Transport] = {}

    def transport_of(item: ClaimedMessage) -> Transport:
        kinds = _EXTRA_KINDS.get(item.kind)
        if kinds is None or kinds.transport is None:
            return transport
        if id(kinds) not in others:
            others[id(kinds)] = kinds.transport(state)
        return others[id(kinds)]

    claimed = claim(state, now, limit)
    report.claimed = len(claimed)
    if not claimed:
        return report
    register = state.register
    sender = register.operator.contact_email
    base_url = state.settings.base_url
    started = time.monotonic()
    try:
        for position, item in enumerate(claimed):
            if time.monotonic() - started > budget.total_seconds():
                _release(state, claimed[position:])
                report.released = len(claimed) - position
                break
            carrier = transport_of(item)
            try:
                eml_path = carrier.deliver(sender, item, item.text(register, base_url))
            except Exception as exc:  # noqa: BLE001 - every failure is retried, none lost
                error = describe(exc)
                with unit_of_work(state.sessions) as session:
                    outcome = _record_failure(session, item, error, now)
                if outcome == "dead":
                    report.dead += 1
                elif outcome == "pending":
                    report.retrying += 1
                log.warning("outbox delivery failed", extra={"outbox": item.id, "error": error})
                continue
            with unit_of_work(state.sessions) as session:
                if _record_sent(session, item, carrier.channel, eml_path, now):
                    report.sent += 1
    finally:
        transport.close()
        for other in others.values():
            other.close()
    log.info(
        "outbox run",
        extra={
            "sent": report.sent,
            "retrying": report.retrying,
            "dead": report.dead,
            "released": report.released,
        },
    )
    return report


def retry_dead(session: Session, outbox_id: int, now: dt.datetime) -> bool:
    """The admin's "retry": a dead message is queued again with a fresh set of attempts (held
    instead when its submission is restricted). False when it is not dead (any more)."""
    row = session.get(OutboxMessage, outbox_id, with_for_update=True)
    if row is None or row.status != "dead":
        return False
    restricted = row.submission_id is not None and bool(
        session.scalar(
            select(FormSubmission.restricted).where(FormSubmission.id == row.submission_id)
        )
    )
    row.status = "held" if restricted else "pending"
    row.attempts = 0
    row.next_attempt_at = now
    row.claimed_until = None
    session.flush()
    return True


async def outbox_schedule(state: State, interval: float = SCHEDULE_SECONDS) -> None:
    """``serve``'s sender loop: a full batch is followed at once by the next one."""
    while True:
        claimed = 0
        try:
            report = await asyncio.to_thread(send_due, state, now=state.clock.now())
            claimed = report.claimed
        except Exception as exc:  # noqa: BLE001 - a failed run must not stop the schedule
            log.error("outbox run failed", extra={"error": type(exc).__name__})
        if claimed < BATCH:
            await asyncio.sleep(interval)
