"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, and a way to put
form submissions with their outbox rows in the database without going through HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from gardien.deps import State
from gardien.forms.models import FormSubmission, OutboxMessage
from gardien.forms.provider import email_index
from gardien.forms.service import Accepted, record
from gardien.register.schema import FormSpec
from tests.support import free_port

VISITOR = {
    "first_name": "Ana-Maria",
    "last_name": "Popescu",
    "email": "ana.popescu@clinica.example.ro",
    "phone": "+40211234567",
    "specialisation": "pharmacist",
    "company": "Farmacia Centrală",
    "country": "RO",
    "message": "I would like a demo of the prescription module, please.",
}
PERSONAL = ["Ana-Maria", "Popescu", "ana.popescu", "clinica.example", "+40211234567",
            "Farmacia", "prescription module"]  # fmt: skip
"""Every visitor value that must never appear in a notice-mode e-mail or file."""


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())


@dataclass
class Mailbox:
    """The aiosmtpd handler: accepts (or refuses with ``refuse_with``) and keeps messages."""

    received: list[Received] = field(default_factory=list)
    refuse_with: str | None = None
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.refuse_with:
            return self.refuse_with
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        with self.lock:
            self.received.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), content)
            )
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        with self.lock:
            return [r.message_id for r in self.received]


@contextmanager
def smtp_server(mailbox: Mailbox, port: int | None = None, **options: Any) -> Iterator[int]:
    """Serve ``mailbox`` on 127.0.0.1 (a free port unless given) for the block."""
    port = port or free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def use_smtp(state: State, url: str | None) -> None:
    state.settings = state.settings.model_copy(update={"smtp_url": url})


def only_notification(state: State) -> None:
    """The seed form without the acknowledgement: one message per submission."""
    form = state.register.forms[0].model_copy(update={"acknowledgement": False})
    state.register = state.register.model_copy(update={"forms": [form]})


def submit(
    state: State,
    values: dict[str, str] | None = None,
    *,
    language: str = "en",
    form: FormSpec | None = None,
    restricted: bool = False,
) -> tuple[FormSubmission, list[OutboxMessage]]:
    """A stored submission and its queued e-mails, as the submission service writes them.

    A ``form`` given replaces the register's form of the same id: the sender builds the
    messages from the register, as it does in a running Gardien."""
    values = dict(VISITOR if values is None else values)
    if form is not None:
        forms = [form if f.id == form.id else f for f in state.register.forms]
        state.register = state.register.model_copy(update={"forms": forms})
    form = form or state.register.forms[0]
    now = state.clock.now()
    accepted = Accepted(
        form,
        values,
        {
            "public_id": uuid.uuid4().hex,
            "form_id": form.id,
            "activity": form.activity,
            "received_at": now,
            "delete_after": now + dt.timedelta(days=90),
            "language": language,
            "fields": json.dumps(values, ensure_ascii=False),
            "email_index": email_index(values["email"]),
            "phone_index": None,
            "legal_basis": "consent",
            "consent_text_hash": "0" * 64,
            "policy_version": None,
            "duplicate_key": uuid.uuid4().hex,
            "status": "new",
            "restricted": restricted,
        },
    )
    with state.engine.begin() as connection:
        submission_id = record(
            connection, accepted, policy_version=1, now=now, base_url=state.settings.base_url
        )
    with state.sessions() as session:
        submission = session.get_one(FormSubmission, submission_id)
        rows = list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.submission_id == submission_id)
                .order_by(OutboxMessage.id)
            )
        )
    return submission, rows
