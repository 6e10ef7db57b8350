"""The tables of what passes between Gardien and the person during a case: the notices sent
to them, the one-time download of an access package, and an identity document asked on a
recorded doubt.

They live apart from ``models.py`` (the case file itself) because they are working data with
short lives: a notice's parameters are dropped once it is sent and no longer needed, a
package and a document are deleted as soon as they have served (and at the latest after a
short, configured time), leaving only the facts the case file needs (when, how big, which
decision), never the content.

Files (packages, documents) are kept on disk encrypted with a key of their own (AES-256-GCM);
that key is stored here in an ``Encrypted`` column, so the file is unreadable without the
database row and the master key, and deleting the row shreds the file even before it is
unlinked. Key rotation re-encrypts the column like any other.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gardien.security.crypto import Encrypted
from gardien.storage.base import PERSONAL_DATA, Base


class RightsNotice(Base):
    """One message to the person about their case, queued in the outbox (``outbox_id``) and
    built when it is sent from the case and ``params`` (a small JSON object, encrypted: an
    extension's reasons, a refusal's, the download link's token)."""

    __tablename__ = "rights_notice"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("rights_case.id", ondelete="CASCADE"), index=True
    )
    outbox_id: Mapped[int | None] = mapped_column(Integer, unique=True, default=None)
    """The outbox row that carries it; ``None`` for a letter (printed by an agent)."""
    kind: Mapped[str] = mapped_column(String(16))
    """``acknowledgement``, ``extension``, ``outcome``, ``identity``."""
    channel: Mapped[str] = mapped_column(String(8))
    """``email``, ``sms`` or ``letter`` (a request that came by post is answered by post)."""
    created_at: Mapped[dt.datetime]
    params: Mapped[str | None] = mapped_column(Encrypted("rights_notice.params"), default=None)


class RightsDownload(Base):
    """An access package waiting to be downloaded once, through a link whose token is stored
    only as a keyed hash. The encrypted file is deleted at the download or at expiry."""

    __tablename__ = "rights_download"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("rights_case.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str | None] = mapped_column(String(300), default=None)
    """The encrypted file, until it is downloaded or expires (then ``None``)."""
    file_key: Mapped[str | None] = mapped_column(
        Encrypted("rights_download.file_key"), default=None
    )
    downloaded_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class RightsDocument(Base):
    """A proof of identity asked because an agent recorded a reasonable doubt (Art. 12(6)).

    Once the decision is taken, or at the latest after the register's short limit, the file
    and its key are deleted; the row keeps only what the case file needs (EDPB 01/2022 §78):
    when it was asked and received, its type and size, the decision, who took it, when."""

    __tablename__ = "rights_document"
    __table_args__ = {"info": {PERSONAL_DATA: True}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("rights_case.id", ondelete="CASCADE"), index=True
    )
    requested_at: Mapped[dt.datetime]
    requested_by: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Encrypted("rights_document.reason"))
    """The agent's reason for doubt: free text, so encrypted."""
    upload_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """Keyed hash of the token of the upload link sent to the person."""
    uploaded_at: Mapped[dt.datetime | None] = mapped_column(default=None, index=True)
    media_type: Mapped[str | None] = mapped_column(String(40), default=None)
    size: Mapped[int | None] = mapped_column(Integer, default=None)
    path: Mapped[str | None] = mapped_column(String(300), default=None)
    file_key: Mapped[str | None] = mapped_column(
        Encrypted("rights_document.file_key"), default=None
    )
    decision: Mapped[str | None] = mapped_column(String(12), default=None)
    """``accepted``, ``rejected``, or ``expired`` (deleted unexamined at the limit)."""
    decided_by: Mapped[str | None] = mapped_column(String(80), default=None)
    decided_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)


def shred(path: str) -> None:
    """Delete an encrypted file of this module's tables (its key goes with the row)."""
    Path(path).unlink(missing_ok=True)
