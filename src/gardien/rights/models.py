"""The case file of a data-subject request (legal-requirements §4.1) and its timeline.

A case names the person only through encrypted identifiers and their blind indexes (under
contexts of their own, so a case's index never equals another store's); the timeline records
each step with counts and store names, never a personal value.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gardien.security.crypto import BlindIndex, Encrypted
from gardien.storage.base import PERSONAL_DATA, Base

EMAIL_INDEX = "rights_case.email_index"
PHONE_INDEX = "rights_case.phone_index"
CONSENT_ID_INDEX = "rights_case.consent_id_index"
VISITOR_ID_INDEX = "rights_case.visitor_id_index"
IP_INDEX = "rights_case.ip_index"


class RightsCase(Base):
    """One request: what was asked, through which channel, its legal due date, its outcome."""

    __tablename__ = "rights_case"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(24), unique=True)
    rights: Mapped[str] = mapped_column(String(200))
    """Comma-separated rights requested (``access``, ``portability``, ``erasure``...)."""
    channel: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(12), index=True)
    """``open`` until answered; ``closed`` once answered in full."""
    language: Mapped[str] = mapped_column(String(8))
    received_at: Mapped[dt.datetime]
    due_at: Mapped[dt.date]
    email: Mapped[str | None] = mapped_column(Encrypted("rights_case.email"), default=None)
    email_index: Mapped[str | None] = mapped_column(
        BlindIndex(EMAIL_INDEX, source="email", normaliser="email"), index=True, default=None
    )
    phone: Mapped[str | None] = mapped_column(Encrypted("rights_case.phone"), default=None)
    phone_index: Mapped[str | None] = mapped_column(
        BlindIndex(PHONE_INDEX, source="phone"), index=True, default=None
    )
    consent_id: Mapped[str | None] = mapped_column(
        Encrypted("rights_case.consent_id"), default=None
    )
    consent_id_index: Mapped[str | None] = mapped_column(
        BlindIndex(CONSENT_ID_INDEX, source="consent_id"), index=True, default=None
    )
    visitor_id: Mapped[str | None] = mapped_column(
        Encrypted("rights_case.visitor_id"), default=None
    )
    visitor_id_index: Mapped[str | None] = mapped_column(
        BlindIndex(VISITOR_ID_INDEX, source="visitor_id"), index=True, default=None
    )
    ip_address: Mapped[str | None] = mapped_column(
        Encrypted("rights_case.ip_address"), default=None
    )
    ip_index: Mapped[str | None] = mapped_column(
        BlindIndex(IP_INDEX, source="ip_address", normaliser="ip"), index=True, default=None
    )
    period_start: Mapped[dt.datetime | None] = mapped_column(default=None)
    period_end: Mapped[dt.datetime | None] = mapped_column(default=None)
    closed_at: Mapped[dt.datetime | None] = mapped_column(index=True, default=None)
    outcome: Mapped[str | None] = mapped_column(String(40), default=None)
    receipt: Mapped[str | None] = mapped_column(Text, default=None)
    """The erasure receipt as JSON (store names and counts, no personal value)."""
    verified_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    """When the person proved they hold the e-mail address (the portal's one-time code);
    ``None`` for a portal case still awaiting it (and for cases verified by the operator)."""
    verification_basis: Mapped[str | None] = mapped_column(
        Encrypted("rights_case.verification_basis"), default=None
    )
    """For a case an agent verified by hand (a letter, an e-mail), what the decision rested
    on ("letter signed, address matches"): free text, so encrypted."""
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("admin_user.id", ondelete="SET NULL"), index=True, default=None
    )
    notes: Mapped[str | None] = mapped_column(Encrypted("rights_case.notes"), default=None)
    """Internal notes of the staff handling the case, as an encrypted JSON list."""
    extended_on: Mapped[dt.date | None] = mapped_column(default=None)
    """The day the person was told of the extension (Art. 12(3)); ``due_at`` is then the
    extended deadline."""


class RightsEvent(Base):
    """One step of a case's timeline: who did what, when; ``detail`` holds no personal value."""

    __tablename__ = "rights_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("rights_case.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text, default=None)


class RightsAttachment(Base):
    """A document of a case (the scanned letter of a request that came by post), encrypted;
    typed by its content, its SHA-256 kept so the timeline can name it without its content."""

    __tablename__ = "rights_attachment"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("rights_case.id", ondelete="CASCADE"), index=True
    )
    added_at: Mapped[dt.datetime]
    media_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Encrypted("rights_attachment.content"))
    """The file's bytes, base64-encoded then encrypted (the column type seals text)."""


class RightsAnswer(Base):
    """A message written to the person (acknowledgement, extension, refusal, outcome): its
    text as the agent sent it, encrypted, and its SHA-256 for the case file (§4.1)."""

    __tablename__ = "rights_answer"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("rights_case.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(8))
    body: Mapped[str] = mapped_column(Encrypted("rights_answer.body"))
    sha256: Mapped[str] = mapped_column(String(64))


class RightsVerification(Base):
    """One one-time code sent for a portal case (a repeated request sends a new one).

    Only keyed hashes are kept: of the code, and of the status-page token given at submission.
    The code is single use, expires, and is locked after ``MAX_ATTEMPTS`` wrong tries."""

    __tablename__ = "rights_verification"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("rights_case.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    code_hash: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    outbox_id: Mapped[int | None] = mapped_column(Integer, default=None)
    """The outbox row that carries the code (its text is dropped once the code is used)."""
