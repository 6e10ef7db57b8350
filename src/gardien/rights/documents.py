"""Files that pass between Gardien and the person: the access package, delivered once through
an expiring link, and an identity document, asked only on an agent's recorded doubt.

Both are written to ``DATA_DIR/rights/`` encrypted (AES-256-GCM) under a random key of their
own, which is kept in the database row (itself encrypted under the data key), and deleted as
soon as they have served: the package at its download or when its link expires, the document
when the verification decision is taken or at the latest after the register's limit
(``rights.identity_document_max_days``). What stays is what the case file needs: when, how
big, which decision, by whom (EDPB Guidelines 01/2022 §78; legal-requirements §1.2.4, §1.2.6).

Tokens (download, upload) are random and stored only as keyed hashes bound to the case.
Functions flush, never commit.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from gardien.errors import N_, BadRequest
from gardien.register.schema import Register
from gardien.rights.deadlines import EXTENDED_MONTHS, ONE_MONTH, counted_pause, due_date, local_day
from gardien.rights.exchange import RightsDocument, RightsDownload, RightsNotice, shred
from gardien.rights.models import RightsCase
from gardien.rights.service import AccessPackage, add_event
from gardien.security.audit import Actor, record
from gardien.security.uploads import CheckedUpload, check_upload

PERSON = Actor("portal", "subject")
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
MIN_REASON, MAX_REASON = 10, 2000
FILE_FORMAT = b"GRF1"


class DocumentError(BadRequest):
    """A step of the identity-document flow that cannot be taken now (the message says why)."""


# -- encrypted files ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredFile:
    path: str
    key: str
    """The file's own key, base64: stored in an ``Encrypted`` column, never on disk."""


def write_encrypted(directory: Path, content: bytes, purpose: str) -> StoredFile:
    """Write ``content`` sealed under a new key, privately (0600 in a 0700 directory)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    sealed = FILE_FORMAT + nonce + AESGCM(key).encrypt(nonce, content, purpose.encode())
    path = (directory / f"{secrets.token_hex(16)}.bin").resolve()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, sealed)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return StoredFile(str(path), base64.b64encode(key).decode())


def read_encrypted(path: str, key: str, purpose: str) -> bytes | None:
    """The file's content, or ``None`` when it is gone or does not authenticate."""
    try:
        sealed = Path(path).read_bytes()
    except OSError:
        return None
    if not sealed.startswith(FILE_FORMAT):
        return None
    nonce, body = sealed[4:16], sealed[16:]
    try:
        return AESGCM(base64.b64decode(key)).decrypt(nonce, body, purpose.encode())
    except (InvalidTag, ValueError):
        return None


def _drop_file(row: RightsDownload | RightsDocument, now: dt.datetime) -> None:
    """Delete a row's file and its key; the row stays, as evidence, without the content."""
    if row.path:
        shred(row.path)
    row.path = row.file_key = None
    row.deleted_at = now


def keyed(secret: bytes, purpose: str, reference: str, token: str) -> str:
    return hmac.new(secret, f"{purpose}\0{reference}\0{token}".encode(), hashlib.sha256).hexdigest()


def files_dir(data_dir: Path, kind: str) -> Path:
    return data_dir / "rights" / kind


# -- the access package -------------------------------------------------------------------------

PACKAGE_PURPOSE = "rights_download"


@dataclass(frozen=True)
class Offered:
    token: str
    expires_at: dt.datetime


def offer_package(
    session: Session,
    case: RightsCase,
    package: AccessPackage,
    *,
    register: Register,
    data_dir: Path,
    secret: bytes,
    now: dt.datetime,
    actor: Actor,
) -> Offered:
    """Store the package encrypted and open a one-time link to it, valid for the register's
    ``rights.download_link_days``. Returns the token (given once, stored hashed)."""
    stored = write_encrypted(files_dir(data_dir, "packages"), package.content, PACKAGE_PURPOSE)
    token = secrets.token_urlsafe(18)
    expires = now + dt.timedelta(days=register.rights.download_link_days)
    session.add(
        RightsDownload(
            case_id=case.id,
            token_hash=keyed(secret, "download", case.reference, token),
            created_at=now,
            expires_at=expires,
            size=len(package.content),
            sha256=package.sha256,
            path=stored.path,
            file_key=stored.key,
        )
    )
    add_event(
        session,
        case,
        now,
        actor,
        "link_created",
        f"one-time download link, valid until {expires:%Y-%m-%d %H:%M} UTC "
        f"(package sha256 {package.sha256})",
    )
    return Offered(token, expires)


class Download(StrEnum):
    ok = "ok"
    used = "used"
    expired = "expired"
    unknown = "unknown"


DOWNLOAD_MESSAGES = {
    Download.used: N_(
        "This link was already used: a download link works once. If you did not download "
        "your data yourself, contact us."
    ),
    Download.expired: N_(
        "This link has expired and your data were deleted from the download area. Contact us "
        "to receive a new link."
    ),
    Download.unknown: N_("This download link is not valid."),
}
DOWNLOAD_STATUS = {Download.used: 410, Download.expired: 410, Download.unknown: 404}


@dataclass(frozen=True)
class Fetched:
    outcome: Download
    content: bytes | None = None
    reference: str = ""


def download(
    session: Session, *, secret: bytes, reference: str, token: str, now: dt.datetime
) -> Fetched:
    """Hand the package over once: the file is read, then deleted with its key; the download
    is written to the timeline and the audit log. A second use or a late one is refused."""
    if not token or len(token) > 64:
        return Fetched(Download.unknown)
    row = session.scalars(
        select(RightsDownload)
        .join(RightsCase, RightsCase.id == RightsDownload.case_id)
        .where(
            RightsCase.reference == reference,
            RightsDownload.token_hash == keyed(secret, "download", reference, token),
        )
        .with_for_update()
    ).first()
    if row is None:
        return Fetched(Download.unknown)
    if row.downloaded_at is not None:
        return Fetched(Download.used)
    if now >= row.expires_at or row.path is None or row.file_key is None:
        return Fetched(Download.expired)
    content = read_encrypted(row.path, row.file_key, PACKAGE_PURPOSE)
    if content is None:
        return Fetched(Download.expired)
    case = session.get_one(RightsCase, row.case_id)
    _drop_file(row, now)
    row.downloaded_at = now
    add_event(
        session,
        case,
        now,
        PERSON,
        "downloaded",
        f"the package was downloaded ({row.size} bytes, sha256 {row.sha256}), then deleted",
    )
    record(
        session,
        PERSON,
        "rights.download",
        now,
        target_type="rights_case",
        target_id=case.reference,
    )
    _forget_link(session, case)
    session.flush()
    return Fetched(Download.ok, content, case.reference)


def _forget_link(session: Session, case: RightsCase) -> None:
    """The outcome notices' parameters hold the link's token: useless once it cannot open."""
    for notice in session.scalars(
        select(RightsNotice).where(RightsNotice.case_id == case.id, RightsNotice.kind == "outcome")
    ):
        if notice.params and '"token"' in notice.params:
            notice.params = None


def expired_packages(now: dt.datetime) -> ColumnElement[bool]:
    """The packages still stored whose link expired unused."""
    return and_(RightsDownload.deleted_at.is_(None), RightsDownload.expires_at <= now)


def expire_packages(session: Session, now: dt.datetime, limit: int) -> int:
    """Delete up to ``limit`` packages whose link expired unused (the sweep's chunk)."""
    rows = session.scalars(
        select(RightsDownload).where(expired_packages(now)).order_by(RightsDownload.id).limit(limit)
    ).all()
    for row in rows:
        _drop_file(row, now)
        case = session.get_one(RightsCase, row.case_id)
        add_event(
            session,
            case,
            now,
            Actor.system("retention"),
            "package_expired",
            "the download link expired unused: the package was deleted",
        )
        _forget_link(session, case)
    session.flush()
    return len(rows)


# -- the identity document ----------------------------------------------------------------------

DOCUMENT_PURPOSE = "rights_document"
DOCUMENT_DECISIONS = frozenset({"accepted", "rejected"})


def pending_document(session: Session, case: RightsCase) -> RightsDocument | None:
    """The document request of the case still awaiting a decision, if any."""
    return session.scalars(
        select(RightsDocument)
        .where(RightsDocument.case_id == case.id, RightsDocument.decision.is_(None))
        .order_by(RightsDocument.id.desc())
        .limit(1)
    ).first()


def record_doubt(
    session: Session,
    case: RightsCase,
    *,
    reason: str,
    secret: bytes,
    now: dt.datetime,
    actor: Actor,
) -> str:
    """An agent records a reasonable doubt about the requester's identity (Art. 12(6)): the
    reason is required; a document is then asked. Returns the upload token (for the notice)."""
    reason = " ".join(reason.split())
    if not MIN_REASON <= len(reason) <= MAX_REASON:
        raise DocumentError(
            N_("give the reason for the doubt (%(low)s to %(high)s characters)"),
            low=MIN_REASON,
            high=MAX_REASON,
        )
    if case.status != "open":
        raise DocumentError(N_("the case is closed"))
    if pending_document(session, case) is not None:
        raise DocumentError(N_("a document was already asked for this case"))
    token = secrets.token_urlsafe(18)
    if case.verified_at is not None:
        # The doubt outweighs the earlier check: nothing is done until the document decides.
        case.verified_at = None
    session.add(
        RightsDocument(
            case_id=case.id,
            requested_at=now,
            requested_by=actor.id,
            reason=reason,
            upload_token_hash=keyed(secret, "upload", case.reference, token),
        )
    )
    add_event(
        session,
        case,
        now,
        actor,
        "identity_doubt",
        "reasonable doubt recorded (reason kept encrypted): an identity document asked; the "
        "case counts as unverified until the decision",
    )
    record(
        session,
        actor,
        "rights.identity_doubt",
        now,
        target_type="rights_case",
        target_id=case.reference,
    )
    session.flush()
    return token


def document_for_upload(
    session: Session, *, secret: bytes, reference: str, token: str
) -> RightsDocument | None:
    """The pending document request the upload ``token`` opens, or ``None``."""
    if not token or len(token) > 64:
        return None
    return session.scalars(
        select(RightsDocument)
        .join(RightsCase, RightsCase.id == RightsDocument.case_id)
        .where(
            RightsCase.reference == reference,
            RightsDocument.upload_token_hash == keyed(secret, "upload", reference, token),
            RightsDocument.decision.is_(None),
        )
    ).first()


def receive_document(
    session: Session,
    case: RightsCase,
    document: RightsDocument,
    content: bytes,
    *,
    register: Register,
    data_dir: Path,
    now: dt.datetime,
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> CheckedUpload:
    """Check the upload (size, type by content: PDF, PNG, JPEG) and store it encrypted. A new
    upload replaces one not yet examined. Raises ``BadRequest`` saying why it is refused."""
    if len(content) > max_bytes:
        raise DocumentError(N_("the file is larger than %(size)s KB"), size=max_bytes // 1024)
    checked = check_upload(content, max_bytes=max_bytes)
    if document.path:
        shred(document.path)
    stored = write_encrypted(files_dir(data_dir, "documents"), checked.content, DOCUMENT_PURPOSE)
    document.path, document.file_key = stored.path, stored.key
    document.media_type, document.size = checked.media_type, len(checked.content)
    first = document.uploaded_at is None
    document.uploaded_at = now
    if first:
        _pause_clock(session, case, register, now)
    add_event(
        session,
        case,
        now,
        PERSON,
        "document_received",
        f"identity document received ({checked.media_type}, {len(checked.content)} bytes), "
        "stored encrypted until the decision",
    )
    session.flush()
    return checked


def _pause_clock(session: Session, case: RightsCase, register: Register, now: dt.datetime) -> None:
    """When the register stops the clock while awaiting identity (``pause_while_verifying``,
    off by default), move the due date by the days every document of the case was awaited."""
    rights = register.rights
    waited = sum(
        (uploaded.date() - asked.date()).days
        for asked, uploaded in session.execute(
            select(RightsDocument.requested_at, RightsDocument.uploaded_at).where(
                RightsDocument.case_id == case.id, RightsDocument.uploaded_at.is_not(None)
            )
        )
        if uploaded is not None
    )
    paused = counted_pause(waited, pause_while_verifying=rights.pause_while_verifying)
    if not paused:
        return
    months = EXTENDED_MONTHS if case.extended_on else ONE_MONTH
    received = local_day(case.received_at, rights.time_zone)
    due = due_date(received, rights.holidays_country, months, paused)
    if due != case.due_at:
        case.due_at = due
        add_event(
            session,
            case,
            now,
            PERSON,
            "clock_paused",
            f"{paused} day(s) awaiting the identity document: due {due.isoformat()}",
        )


def view_document(
    session: Session, case: RightsCase, *, now: dt.datetime, actor: Actor
) -> tuple[bytes, str]:
    """The document of the pending request, for the agent's check: traced in the audit log
    (a view changes nothing in the case). Raises ``DocumentError`` when there is none to show."""
    document = pending_document(session, case)
    if document is None or not document.path or not document.file_key:
        raise DocumentError(N_("no identity document is waiting to be checked"))
    content = read_encrypted(document.path, document.file_key, DOCUMENT_PURPOSE)
    if content is None:
        raise DocumentError(N_("the document could not be read (it may have been deleted)"))
    record(
        session,
        actor,
        "rights.identity_view",
        now,
        target_type="rights_case",
        target_id=case.reference,
    )
    session.flush()
    return content, document.media_type or "application/octet-stream"


def decide(
    session: Session, case: RightsCase, decision: str, *, now: dt.datetime, actor: Actor
) -> RightsDocument:
    """The verification decision on the document: the file and its key are deleted at once,
    the row keeps the type, the decision, who took it and when. ``accepted`` verifies the
    case."""
    if decision not in DOCUMENT_DECISIONS:
        raise DocumentError(N_("the decision must be accepted or rejected"))
    document = pending_document(session, case)
    if document is None or document.uploaded_at is None:
        raise DocumentError(N_("no identity document is waiting to be checked"))
    _drop_file(document, now)
    document.decision, document.decided_by = decision, actor.id
    document.decided_at = now
    add_event(
        session,
        case,
        now,
        actor,
        "identity_" + decision,
        f"identity document {decision}, then deleted (only the decision is kept)",
    )
    if decision == "accepted" and case.verified_at is None:
        case.verified_at = now
        add_event(session, case, now, actor, "verified", "identity checked: an identity document")
    record(
        session,
        actor,
        "rights.identity_decision",
        now,
        target_type="rights_case",
        target_id=case.reference,
        outcome=decision,
    )
    session.flush()
    return document


def overdue_documents(cutoff: dt.datetime) -> ColumnElement[bool]:
    """The documents still stored that arrived before ``cutoff``."""
    return and_(
        RightsDocument.deleted_at.is_(None),
        RightsDocument.uploaded_at.is_not(None),
        RightsDocument.uploaded_at < cutoff,
    )


def expire_documents(session: Session, cutoff: dt.datetime, now: dt.datetime, limit: int) -> int:
    """Delete up to ``limit`` documents received before ``cutoff`` and still on disk (the
    sweep's chunk): the limit passed without a decision."""
    rows = session.scalars(
        select(RightsDocument)
        .where(overdue_documents(cutoff))
        .order_by(RightsDocument.id)
        .limit(limit)
    ).all()
    for row in rows:
        _drop_file(row, now)
        row.decision = "expired"
        row.decided_at = now
        case = session.get_one(RightsCase, row.case_id)
        add_event(
            session,
            case,
            now,
            Actor.system("retention"),
            "document_expired",
            "identity document deleted unexamined: its time limit passed",
        )
    session.flush()
    return len(rows)
