"""Form tables: submissions (every personal field encrypted), the outbox of e-mails to send,
and the disclosure log of what was sent to whom (never the content).

A submission and its outbox messages are written in one transaction; the sender job
(``jobs.py``) delivers the outbox. Retention purges submissions and their outbox rows together
at the register's period (90 days in the seed).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gardien.security.crypto import BlindIndex, Encrypted
from gardien.storage.base import PERSONAL_DATA, Base


class FormSubmission(Base):
    """One message sent through a form. ``fields`` holds every submitted value (names,
    e-mail, phone in E.164, specialisation, company, ISO country code, message) as one
    encrypted JSON document; the e-mail and phone are also kept as blind indexes so a person's
    submissions can be found for their rights."""

    __tablename__ = "form_submission"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    form_id: Mapped[str] = mapped_column(String(64), index=True)
    activity: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(index=True)
    delete_after: Mapped[dt.datetime] = mapped_column()
    language: Mapped[str] = mapped_column(String(8))
    fields: Mapped[str] = mapped_column(Encrypted("form_submission.fields"))
    """JSON object of the submitted values, encrypted as a whole."""
    email_index: Mapped[str | None] = mapped_column(
        BlindIndex("form_submission.email_index", source="fields", normaliser="email"), index=True
    )
    phone_index: Mapped[str | None] = mapped_column(
        BlindIndex("form_submission.phone_index", source="fields"), index=True
    )
    legal_basis: Mapped[str] = mapped_column(String(32))
    consent_text_hash: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 of the consent checkbox's text as shown (``None`` when the basis is not consent)."""
    policy_version: Mapped[int | None] = mapped_column(Integer)
    duplicate_key: Mapped[str] = mapped_column(String(64), index=True)
    """Keyed hash of the form and the normalised content: an identical resubmission is noticed
    without storing anything readable."""
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    """``new``, ``answered``."""
    answered_at: Mapped[dt.datetime | None] = mapped_column()
    restricted: Mapped[bool] = mapped_column(default=False)
    """Art. 18: kept, but not e-mailed, exported or otherwise processed."""
    notes: Mapped[str | None] = mapped_column(Encrypted("form_submission.notes"))
    """Internal notes of the staff answering it, as an encrypted JSON list."""


class OutboxMessage(Base):
    """An e-mail waiting to be sent, being sent, sent, or given up on (``dead``).

    A row names what to send, not its text: the ``kind`` of message, its ``recipient``
    (encrypted: an acknowledgement goes to the visitor), its submission, and a ``message_id``
    and Date (``created_at``) fixed when the row is written, so every retry, even after a
    crash, sends the same message under the same Message-ID and a duplicate can be recognised.
    The sender builds the message from the submission when it sends it (``mail.render``)."""

    __tablename__ = "outbox_message"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    submission_id: Mapped[int | None] = mapped_column(
        ForeignKey("form_submission.id", ondelete="CASCADE"), index=True
    )
    activity: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    """``notification`` (to the operator) or ``acknowledgement`` (to the visitor)."""
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    recipient: Mapped[str] = mapped_column(Encrypted("outbox_message.recipient"))
    message: Mapped[str | None] = mapped_column(Encrypted("outbox_message.message"))
    """The complete RFC 5322 message, encrypted, for rows queued before messages were built
    at sending time; ``None`` for every row queued since."""
    created_at: Mapped[dt.datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(12), default="pending", index=True)
    """``pending``, ``sending`` (claimed), ``sent``, ``dead`` (gave up; the admin can retry),
    ``held`` (the person restricted processing, Art. 18: not sent until lifted)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(index=True)
    claimed_until: Mapped[dt.datetime | None] = mapped_column()
    sent_at: Mapped[dt.datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(120))
    """The error's type and SMTP code only, never a server message (it may quote an address)."""
    eml_path: Mapped[str | None] = mapped_column(String(300))
    """Where the message was written when no SMTP server is configured."""


class DisclosureEntry(Base):
    """One disclosure: what activity's data went to which recipient, when, under which
    Message-ID. Never the content; the recipient is encrypted (it may be the visitor)."""

    __tablename__ = "disclosure_log"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    activity: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(Encrypted("disclosure_log.recipient"))
    recipient_kind: Mapped[str] = mapped_column(String(16))
    """``operator`` (a mailbox of the operator's staff) or ``subject`` (the person)."""
    message_id: Mapped[str] = mapped_column(String(200), index=True)
    submission_id: Mapped[int | None] = mapped_column(Integer, index=True)
    channel: Mapped[str] = mapped_column(String(8))
    """``smtp`` or ``eml``."""
    details: Mapped[dict[str, object] | None] = mapped_column(JSON)
