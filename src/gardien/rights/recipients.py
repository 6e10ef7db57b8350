"""Telling recipients of a rectification, erasure or restriction (GDPR Art. 19).

For a case, ``notify`` takes the activities that hold (or held) the person's data, and for
each recipient the register lists for them: with a ``contact`` address, an e-mail through the
outbox carrying a one-time acknowledgement link (only the token's SHA-256 is stored); without
one, an open notification an agent closes with its reason (impossible or disproportionate),
kept in the case's encrypted notes.
Every step is an event of the case, and the person can learn who the recipients are
(``of_case``, shown on the case page and in the evidence pack).

Functions flush, never commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Sequence
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from gardien.errors import N_, BadRequest, Conflict, NotFound
from gardien.forms.models import OutboxMessage
from gardien.i18n import translator
from gardien.register.schema import Register
from gardien.rights import casework
from gardien.rights.models import RightsCase, RightsEvent
from gardien.rights.provider import ACTIVITY
from gardien.rights.service import Desk, add_event, subject_of
from gardien.security.audit import Actor
from gardien.storage.base import Base
from gardien.storage.subjects import SubjectIdentity

OPERATIONS = ("rectification", "erasure", "restriction")
ACK_PATH = "/rights/recipient-ack"
REASON_LIMIT = 1000


class RightsRecipientNotice(Base):
    """One recipient told (or not) of one operation on a case's data."""

    __tablename__ = "rights_recipient_notice"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("rights_case.id", ondelete="CASCADE"), index=True
    )
    operation: Mapped[str] = mapped_column(String(16))
    activity: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(64))
    """The recipient's id in the register."""
    status: Mapped[str] = mapped_column(String(12))
    """``sent`` (queued in the outbox), ``acknowledged``, ``open`` (no address: an agent
    closes it) or ``closed`` (with ``reason``)."""
    created_at: Mapped[dt.datetime]
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    outbox_id: Mapped[int | None] = mapped_column(Integer, default=None)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    closed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    """When an agent closed it; the reason is in the case's encrypted notes (free text)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def involved(session: Session, desk: Desk, case: RightsCase) -> list[str]:
    """Activities that hold the person's data now, or held it before an erasure (receipt)."""
    names: set[str] = set()
    subject = subject_of(case)
    for provider in desk.providers.providers:
        if provider.find(session, subject).total:
            names.add(provider.name)
    if case.receipt:
        for item in json.loads(case.receipt).get("stores", []):
            if item.get("erased") or item.get("kept"):
                names.add(str(item.get("store")))
    return [a.id for a in desk.register.activities if a.id in names]


def _message(
    desk: Desk,
    case: RightsCase,
    notice: RightsRecipientNotice,
    to: str,
    link: str,
    message_id: str,
    now: dt.datetime,
    subject: SubjectIdentity,
) -> str:
    register = desk.register
    _ = translator(register.languages.default).gettext
    activity = next(a for a in register.activities if a.id == notice.activity)
    name = activity.name.get(register.languages.default) or next(iter(activity.name.values()))
    identifiers = ", ".join(
        f"{kind}: {getattr(subject, kind)}"
        for kind in ("email", "phone", "consent_id", "visitor_id")
        if getattr(subject, kind)
    )
    what = {
        "rectification": _("rectified"),
        "erasure": _("erased"),
        "restriction": _("restricted (keep it stored, do not otherwise process it)"),
    }[notice.operation]
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = register.rights.email
    message["To"] = to
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    message["Subject"] = _("Data-subject request %(reference)s: please apply it") % {
        "reference": case.reference
    }
    message.set_content(
        "\n\n".join(
            [
                _(
                    "The personal data of a person that you received for %(activity)s were "
                    "%(what)s at their request (GDPR Art. 19). Please do the same with your "
                    "copies."
                )
                % {"activity": name, "what": what},
                _("The person is known by: %(identifiers)s") % {"identifiers": identifiers},
                _("Please acknowledge by opening this link once: %(link)s") % {"link": link},
            ]
        )
    )
    return message.as_string()


def notify(
    session: Session,
    desk: Desk,
    case: RightsCase,
    operation: str,
    *,
    base_url: str,
    now: dt.datetime,
    actor: Actor,
    by_agent: bool = True,
    activities: Sequence[str] | None = None,
    subject: SubjectIdentity | None = None,
) -> list[RightsRecipientNotice]:
    """Notify every recipient of the activities involved of ``operation``: the admin's button
    (``by_agent``), or ``automatic`` where an erasure, an approved rectification or a
    restriction is carried out (already authorised there). ``activities`` and ``subject``
    default to the case's (``involved``, ``subject_of``); a post-mortem directive names the
    deceased and the stores it erased, an upheld objection the one activity it erased."""
    if operation not in OPERATIONS:
        raise BadRequest(N_("unknown operation"))
    if by_agent and not casework.is_verified(case):
        raise Conflict(N_("the requester's identity is not verified yet"))
    if by_agent and already(session, case, operation):
        raise Conflict(N_("the recipients were already notified of this operation"))
    person = subject if subject is not None else subject_of(case)
    made: list[RightsRecipientNotice] = []
    declared = {a.id: a for a in desk.register.activities}
    targets = involved(session, desk, case) if activities is None else activities
    for activity_id in [a for a in targets if a in declared]:
        for recipient in declared[activity_id].recipients:
            notice = RightsRecipientNotice(
                case_id=case.id,
                operation=operation,
                activity=activity_id,
                recipient=recipient.id,
                status="open",
                created_at=now,
            )
            session.add(notice)
            session.flush()
            if recipient.contact:
                token = secrets.token_urlsafe(32)
                link = f"{base_url.rstrip('/')}{ACK_PATH}?token={token}"
                domain = desk.register.rights.email.rpartition("@")[2] or "localhost"
                message_id = make_msgid(domain=domain)
                text = _message(
                    desk, case, notice, recipient.contact, link, message_id, now, person
                )
                outbox = OutboxMessage(
                    submission_id=None,
                    activity=ACTIVITY,
                    kind="rights_recipient",
                    message_id=message_id,
                    recipient=recipient.contact,
                    message=text,
                    created_at=now,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                )
                session.add(outbox)
                session.flush()
                notice.status = "sent"
                notice.token_hash = token_hash(token)
                notice.outbox_id = outbox.id
            add_event(
                session,
                case,
                now,
                actor,
                "recipient_notified" if notice.status == "sent" else "recipient_open",
                f"{operation}: {recipient.id} ({activity_id})",
            )
            made.append(notice)
    if not made and not already(session, case, operation):
        add_event(session, case, now, actor, "recipients_none", f"{operation}: no recipient")
    session.flush()
    return made


def already(session: Session, case: RightsCase, operation: str) -> bool:
    """Whether the recipients were told (or found to be none) of ``operation`` in this case."""
    if session.scalar(
        select(RightsRecipientNotice.id)
        .where(
            RightsRecipientNotice.case_id == case.id,
            RightsRecipientNotice.operation == operation,
        )
        .limit(1)
    ):
        return True
    return (
        session.scalar(
            select(RightsEvent.id)
            .where(
                RightsEvent.case_id == case.id,
                RightsEvent.kind == "recipients_none",
                RightsEvent.detail == f"{operation}: no recipient",
            )
            .limit(1)
        )
        is not None
    )


def automatic(
    session: Session,
    desk: Desk,
    case: RightsCase,
    operation: str,
    *,
    now: dt.datetime,
    actor: Actor,
    activities: Sequence[str] | None = None,
    subject: SubjectIdentity | None = None,
) -> list[RightsRecipientNotice]:
    """Art. 19 without an agent's gesture: called wherever the operation is carried out
    (``service.erase``, an approved rectification, a restriction, a post-mortem directive's
    erasure, the erasure that follows an upheld objection). Idempotent per case, operation
    and activity: an activity whose recipients were already told of ``operation`` in this
    case is left out, so a second run sends nothing twice, while a later erasure of other
    activities in the same case still tells theirs."""
    targets = involved(session, desk, case) if activities is None else list(activities)
    told = set(
        session.scalars(
            select(RightsRecipientNotice.activity).where(
                RightsRecipientNotice.case_id == case.id,
                RightsRecipientNotice.operation == operation,
            )
        )
    )
    pending = [a for a in targets if a not in told]
    declared = {a.id: a for a in desk.register.activities}
    if already(session, case, operation) and not any(
        a in declared and declared[a].recipients for a in pending
    ):
        return []
    return notify(
        session,
        desk,
        case,
        operation,
        base_url=desk.base_url,
        now=now,
        actor=actor,
        by_agent=False,
        activities=pending,
        subject=subject,
    )


def acknowledge(session: Session, token: str, now: dt.datetime) -> RightsRecipientNotice:
    """A recipient's acknowledgement: the token works once."""
    notice = session.scalar(
        select(RightsRecipientNotice).where(RightsRecipientNotice.token_hash == token_hash(token))
    )
    if notice is None:
        raise NotFound(N_("this link is not valid (it may have been used already)"))
    if notice.status != "sent":
        raise Conflict(N_("this notification was already acknowledged"))
    notice.status, notice.acknowledged_at = "acknowledged", now
    case = session.get(RightsCase, notice.case_id)
    if case is not None:
        add_event(
            session,
            case,
            now,
            Actor.system("recipient"),
            "recipient_acknowledged",
            f"{notice.operation}: {notice.recipient} ({notice.activity})",
        )
    session.flush()
    return notice


def close(
    session: Session,
    case: RightsCase,
    notice_id: int,
    reason: str,
    *,
    now: dt.datetime,
    actor: Actor,
) -> RightsRecipientNotice:
    """Close an open notification as impossible or disproportionate, with the reason."""
    notice = session.get(RightsRecipientNotice, notice_id)
    if notice is None or notice.case_id != case.id:
        raise NotFound(N_("no such recipient notification for this case"))
    if notice.status != "open":
        raise Conflict(N_("only an open notification can be closed"))
    text = casework.free_text(reason, "reason", REASON_LIMIT)
    casework.add_note(
        session,
        case,
        f"Recipient {notice.recipient} ({notice.activity}) not notified of the "
        f"{notice.operation}: {text}",
        now=now,
        actor=actor,
    )
    notice.status, notice.closed_at = "closed", now
    add_event(
        session,
        case,
        now,
        actor,
        "recipient_closed",
        f"{notice.operation}: {notice.recipient} ({notice.activity}), reason recorded",
    )
    session.flush()
    return notice


def named(
    register: Register, told: list[tuple[str, str, str, str]], language: str
) -> list[dict[str, str | bool]]:
    """The recipients told, as the person reads them: the register's names in ``language``
    (recipient, activity), the operation, and whether they acknowledged it."""
    _ = translator(language).gettext
    labels = {
        "rectification": _("the correction of your data"),
        "erasure": _("the erasure of your data"),
        "restriction": _("the restriction of the processing of your data"),
    }
    activities = {a.id: a for a in register.activities}
    rows: list[dict[str, str | bool]] = []
    for recipient_id, activity_id, operation, status in told:
        activity = activities.get(activity_id)
        if activity is None:
            continue
        recipient = next((r for r in activity.recipients if r.id == recipient_id), None)
        if recipient is None:
            continue
        rows.append(
            {
                "recipient": _pick(recipient.name, language),
                "activity": _pick(activity.name, language),
                "operation": labels.get(operation, operation),
                "acknowledged": status == "acknowledged",
            }
        )
    return rows


def _pick(text: dict[str, str], language: str) -> str:
    return text.get(language) or next(iter(text.values()), "")


def of_case(session: Session, case: RightsCase) -> list[RightsRecipientNotice]:
    return list(
        session.scalars(
            select(RightsRecipientNotice)
            .where(RightsRecipientNotice.case_id == case.id)
            .order_by(RightsRecipientNotice.id)
        )
    )
