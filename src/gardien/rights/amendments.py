"""The tables of the rights that change what Gardien holds rather than hand it over:
a rectification proposed by the person and decided by an agent (Art. 16), and the person's
post-mortem directives (French LIL Art. 84-86; the rule is ``rights.postmortem``).

A rectification keeps the proposed values encrypted only until it is decided; the case file
then keeps which fields changed and a SHA-256 of the new values, never a value in clear
(legal-requirements §2.2.3: the old value stays in the store's own history, not here).
A directive is encrypted as a whole; its revocation empties it at once.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gardien.security.crypto import BlindIndex, Encrypted
from gardien.storage.base import PERSONAL_DATA, Base

DIRECTIVE_EMAIL_INDEX = "rights_directive.email_index"
DIRECTIVE_PHONE_INDEX = "rights_directive.phone_index"


class RightsRectification(Base):
    """One proposal of corrections in a case: ``proposed`` (field → new value, and a free
    description) until an agent approves (``applied``) or refuses it, with reasons."""

    __tablename__ = "rights_rectification"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("rights_case.id", ondelete="CASCADE"), index=True
    )
    proposed_at: Mapped[dt.datetime]
    proposal: Mapped[str | None] = mapped_column(Encrypted("rights_rectification.proposal"))
    """JSON ``{"fields": {...}, "description": "..."}``, dropped once decided."""
    fields: Mapped[str] = mapped_column(String(400))
    """Comma-separated names of the fields to correct (no value)."""
    digest: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the proposal's JSON: what the case file can name without the values."""
    status: Mapped[str] = mapped_column(String(12), default="proposed")
    """``proposed``, ``applied`` or ``refused``."""
    decided_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    decided_by: Mapped[str | None] = mapped_column(String(80), default=None)
    reasons: Mapped[str | None] = mapped_column(
        Encrypted("rights_rectification.reasons"), default=None
    )
    changed: Mapped[int] = mapped_column(Integer, default=0)
    """How many records the providers changed."""


class RightsDirective(Base):
    """A person's particular post-mortem directive, recorded through the portal's dedicated
    action with its own consent, found by the blind index of the e-mail address they verified
    (or, for a person known only by phone, of their phone number)."""

    __tablename__ = "rights_directive"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("rights_case.id", ondelete="SET NULL"), index=True, default=None
    )
    email: Mapped[str | None] = mapped_column(Encrypted("rights_directive.email"), default=None)
    email_index: Mapped[str | None] = mapped_column(
        BlindIndex(DIRECTIVE_EMAIL_INDEX, source="email", normaliser="email"),
        index=True,
        default=None,
    )
    phone: Mapped[str | None] = mapped_column(Encrypted("rights_directive.phone"), default=None)
    """The verified phone number (E.164) of a person who gave no e-mail address."""
    phone_index: Mapped[str | None] = mapped_column(
        BlindIndex(DIRECTIVE_PHONE_INDEX, source="phone"), index=True, default=None
    )
    body: Mapped[str | None] = mapped_column(Encrypted("rights_directive.body"), default=None)
    """JSON: the instructions per category and the designated person; emptied on revocation."""
    consent_text_hash: Mapped[str] = mapped_column(String(64))
    consented_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    death_recorded_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    death_document_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    executed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    outcome: Mapped[str | None] = mapped_column(String(200), default=None)
    """What was done (categories erased or communicated), no personal value."""
