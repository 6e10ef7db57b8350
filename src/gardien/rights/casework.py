"""An agent's work on a case: record a request that came by letter or e-mail, verify it on a
recorded basis, assign it, keep internal notes, answer (acknowledgement, extension, refusal,
outcome) and close it.

Rules only (framework-free, flushes, never commits). Every step is an event of the case's
timeline and an entry of the audit trail; neither holds a personal value: free text (notes,
the verification basis, the messages) is stored encrypted on the case and its answers, and the
timeline names an answer by its SHA-256.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import unicodedata
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from gardien.errors import N_, BadRequest, Conflict
from gardien.register.schema import Register
from gardien.rights import answers as drafts
from gardien.rights import notify, repository
from gardien.rights.deadlines import EXTENDED_MONTHS, ONE_MONTH, can_extend, due_date, local_day
from gardien.rights.models import RightsAnswer, RightsAttachment, RightsCase
from gardien.rights.portal import rights_of
from gardien.rights.service import Desk, add_event, close_case, open_case
from gardien.security.audit import Actor, record
from gardien.security.models import AdminUser
from gardien.security.uploads import CheckedUpload
from gardien.storage.subjects import SubjectIdentity

INTAKE_CHANNELS = ("email", "post", "other")
"""How a request recorded by an agent arrived (the portal and the CLI open their own)."""
OUTCOMES = ("fulfilled", "refused", "withdrawn")
NOTE_LIMIT = 2000
BASIS_LIMIT = 500
MESSAGE_LIMIT = 10000
REASONS_LIMIT = 4000


def free_text(value: str, field: str, limit: int) -> str:
    """Trimmed, bounded text; line breaks allowed, other control characters refused."""
    value = value.replace("\r\n", "\n").strip()
    if not value or len(value) > limit:
        raise BadRequest(N_("%(field)s needs 1 to %(limit)s characters"), field=field, limit=limit)
    if any(c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        raise BadRequest(N_("%(field)s must not contain control characters"), field=field)
    return value


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def is_verified(case: RightsCase) -> bool:
    """The person's identity was checked: by the portal's code, by an agent on a recorded
    basis, or by the operator who ran the CLI (which opens only verified requests)."""
    return case.verified_at is not None or case.channel == "cli"


def days_left(case: RightsCase, today: dt.date) -> int:
    """Calendar days until the due date (the deadline's last day counts): 0 on the due date,
    negative once it has passed."""
    return (case.due_at - today).days


DAYS_LEFT_BUCKETS: tuple[tuple[str, int | None, int | None], ...] = (
    ("late", None, -1),
    ("0–7", 0, 7),
    ("8–14", 8, 14),
    ("15–31", 15, 31),
    ("32+", 32, None),
)
"""The bars of the open cases' chart: (label, first day left, last day left)."""


def by_days_left(due_dates: list[dt.date], today: dt.date) -> list[tuple[str, int]]:
    """How many open cases fall in each ``DAYS_LEFT_BUCKETS`` bar."""
    counts = dict.fromkeys((label for label, _, _ in DAYS_LEFT_BUCKETS), 0)
    for due in due_dates:
        left = (due - today).days
        for label, low, high in DAYS_LEFT_BUCKETS:
            if (low is None or left >= low) and (high is None or left <= high):
                counts[label] += 1
                break
    return list(counts.items())


def received_day(register: Register, case: RightsCase) -> dt.date:
    """The day the request was received on the controller's clock (``rights.time_zone``),
    from which its deadline runs."""
    return local_day(case.received_at, register.rights.time_zone)


def today(register: Register, now: dt.datetime) -> dt.date:
    """Today on the controller's clock: what a deadline's days left are counted from."""
    return local_day(now, register.rights.time_zone)


def one_month_due(register: Register, case: RightsCase) -> dt.date:
    """The ordinary due date, the last day an extension may be notified (Art. 12(3))."""
    return due_date(received_day(register, case), register.rights.holidays_country, ONE_MONTH)


def extended_due(register: Register, case: RightsCase, further: int = 2) -> dt.date:
    """The due date extended by ``further`` months (1 or 2), counted from receipt like the
    first month (``deadlines.deadline``): at most receipt + 3 months."""
    if further not in (1, 2):
        raise BadRequest(N_("a deadline is extended by one or two further months"))
    months = ONE_MONTH + further
    assert months <= EXTENDED_MONTHS
    return due_date(received_day(register, case), register.rights.holidays_country, months)


def _trace(session: Session, case: RightsCase, now: dt.datetime, actor: Actor, action: str) -> None:
    record(session, actor, action, now, target_type="rights_case", target_id=case.reference)


def _open_only(case: RightsCase) -> None:
    if case.status != "open":
        raise Conflict(N_("this case is closed"))


# -- intake ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letter:
    """A request an agent records from a letter, an e-mail or another channel."""

    channel: str
    received: dt.date
    rights: tuple[str, ...]
    email: str | None
    phone: str | None
    language: str
    ip_address: str | None = None
    """An address the person says they used, searched in the connection log within
    ``period`` (both or neither)."""
    period: tuple[dt.datetime, dt.datetime] | None = None


@dataclass(frozen=True)
class Recorded:
    case: RightsCase
    linked: bool
    """The same request was already open: it was linked to that case, not duplicated."""


def record_letter(
    session: Session,
    desk: Desk,
    letter: Letter,
    scan: CheckedUpload | None,
    *,
    now: dt.datetime,
    actor: Actor,
) -> Recorded:
    """Open a case for a request received on ``letter.received`` (its deadline counts from
    that day), or link it to the same request already open; attach the scanned letter."""
    if letter.channel not in INTAKE_CHANNELS:
        raise BadRequest(N_("choose how the request arrived"))
    if letter.received > today(desk.register, now):
        raise BadRequest(N_("the date of receipt cannot be in the future"))
    if not letter.email and not letter.phone:
        raise BadRequest(N_("give at least an e-mail address or a phone number"))
    rights = ",".join(sorted(set(letter.rights)))
    case = repository.open_duplicate(session, rights, letter.email, letter.phone)
    linked = case is not None
    if case is None:
        # noon on the controller's clock: the day of receipt is the same on every clock
        office = ZoneInfo(desk.register.rights.time_zone)
        received = dt.datetime.combine(letter.received, dt.time(12), office).astimezone(dt.UTC)
        case = open_case(
            session,
            desk,
            SubjectIdentity(
                email=letter.email,
                phone=letter.phone,
                ip_address=letter.ip_address,
                period=letter.period,
            ),
            letter.rights,
            channel=letter.channel,
            now=now,
            actor=actor,
            language=letter.language,
            received=min(received, now),
        )
    else:
        add_event(
            session,
            case,
            now,
            actor,
            "linked",
            f"the same request again, by {letter.channel}, received {letter.received.isoformat()}",
        )
        _trace(session, case, now, actor, "rights.linked")
    if scan is not None:
        attach(session, case, scan, now=now, actor=actor)
    return Recorded(case, linked)


def attach(
    session: Session, case: RightsCase, scan: CheckedUpload, *, now: dt.datetime, actor: Actor
) -> RightsAttachment:
    digest = hashlib.sha256(scan.content).hexdigest()
    attachment = RightsAttachment(
        case_id=case.id,
        added_at=now,
        media_type=scan.media_type,
        size=len(scan.content),
        sha256=digest,
        content=base64.b64encode(scan.content).decode("ascii"),
    )
    session.add(attachment)
    session.flush()
    add_event(
        session,
        case,
        now,
        actor,
        "attached",
        f"document {attachment.id}: {scan.media_type}, {len(scan.content)} bytes, sha256 {digest}",
    )
    _trace(session, case, now, actor, "rights.attached")
    return attachment


def content_of(attachment: RightsAttachment) -> bytes:
    return base64.b64decode(attachment.content)


# -- case steps -----------------------------------------------------------------------------


def verify_by_agent(
    session: Session,
    register: Register,
    case: RightsCase,
    basis: str,
    *,
    now: dt.datetime,
    actor: Actor,
) -> None:
    """An agent takes the verification decision on a recorded basis (EDPB 01/2022: a letter
    signed with an address that matches what is held needs no identity document); the person
    is then acknowledged with the due date, as after the portal's code, unless they already
    were (``notify.acknowledge_once``)."""
    _open_only(case)
    if is_verified(case):
        raise Conflict(N_("this case is already verified"))
    case.verification_basis = free_text(basis, "basis", BASIS_LIMIT)
    case.verified_at = now
    add_event(
        session, case, now, actor, "verified", "identity checked by an agent (basis recorded)"
    )
    _trace(session, case, now, actor, "rights.verified")
    notify.acknowledge_once(session, case, register=register, now=now, actor=actor)


def assign(
    session: Session,
    case: RightsCase,
    user: AdminUser | None,
    *,
    now: dt.datetime,
    actor: Actor,
) -> None:
    if user is not None and (
        user.role not in repository.ASSIGNABLE_ROLES or user.disabled_at is not None
    ):
        raise BadRequest(N_("a case can be assigned only to an agent or a DPO"))
    case.assignee_id = user.id if user is not None else None
    detail = f"to user:{user.id}" if user is not None else "unassigned"
    add_event(session, case, now, actor, "assigned", detail)
    _trace(session, case, now, actor, "rights.assigned")


def notes_of(case: RightsCase) -> list[dict[str, str]]:
    return list(json.loads(case.notes)) if case.notes else []


def add_note(
    session: Session, case: RightsCase, text: str, *, now: dt.datetime, actor: Actor
) -> None:
    """Internal notes live encrypted on the case; the timeline only says one was added."""
    notes = notes_of(case)
    notes.append(
        {"at": now.isoformat(), "by": actor.id, "text": free_text(text, "note", NOTE_LIMIT)}
    )
    case.notes = json.dumps(notes, ensure_ascii=False)
    add_event(session, case, now, actor, "noted", f"internal note {len(notes)}")
    _trace(session, case, now, actor, "rights.noted")


def record_answer(
    session: Session,
    register: Register,
    case: RightsCase,
    kind: str,
    body: str,
    *,
    now: dt.datetime,
    actor: Actor,
) -> RightsAnswer:
    """Keep a message to the person (encrypted) and its SHA-256 in the timeline
    (legal-requirements §4.1: the response sent, by hash), and send it as recorded
    (``notify.answer``: by e-mail, by text message, or as a letter to print for a request that
    came by post)."""
    answer = RightsAnswer(
        case_id=case.id,
        at=now,
        actor=actor.id,
        kind=kind,
        language=case.language,
        body=body,
        sha256=sha256(body),
    )
    session.add(answer)
    session.flush()
    add_event(
        session,
        case,
        now,
        actor,
        "answered",
        f"{kind} (answer {answer.id}, {case.channel}), sha256 {answer.sha256}",
    )
    notify.answer(session, case, answer.id, register=register, now=now, actor=actor)
    return answer


def acknowledge(
    session: Session,
    register: Register,
    case: RightsCase,
    message: str,
    *,
    now: dt.datetime,
    actor: Actor,
) -> RightsAnswer:
    _open_only(case)
    if notify.acknowledged(session, case):
        raise Conflict(N_("the person was already acknowledged: a case is acknowledged once"))
    answer = record_answer(
        session,
        register,
        case,
        "acknowledgement",
        free_text(message, "message", MESSAGE_LIMIT),
        now=now,
        actor=actor,
    )
    _trace(session, case, now, actor, "rights.acknowledged")
    return answer


def _with_reasons(message: str, reasons: str) -> str:
    """The message with the reasons where ``REASONS_MARK`` stands; refused when the agent
    removed the mark and the reasons are not in the text either."""
    if drafts.REASONS_MARK in message:
        return message.replace(drafts.REASONS_MARK, reasons)
    if reasons not in message:
        raise BadRequest(
            N_("the message must state the reasons: keep %(mark)s where they go"),
            mark=drafts.REASONS_MARK,
        )
    return message


def extend(
    session: Session,
    register: Register,
    case: RightsCase,
    reasons: str,
    message: str,
    *,
    now: dt.datetime,
    actor: Actor,
    further: int = 2,
) -> RightsAnswer:
    """Extend the deadline by up to two further months (at most receipt + 3 months, Art.
    12(3)), only while the first month runs and only once; the notice with the reasons is the
    answer recorded."""
    _open_only(case)
    if case.extended_on is not None:
        raise Conflict(N_("the deadline was already extended"))
    country = register.rights.holidays_country
    if not can_extend(received_day(register, case), today(register, now), country):
        raise Conflict(
            N_(
                "an extension must be notified within the first month, which ended on "
                "%(due)s: it can no longer be extended"
            ),
            due=one_month_due(register, case).isoformat(),
        )
    reasons = free_text(reasons, "reasons", REASONS_LIMIT)
    text = _with_reasons(free_text(message, "message", MESSAGE_LIMIT), reasons)
    new_due = extended_due(register, case, further)
    text = text.replace(drafts.DUE_MARK, drafts.long_date(new_due, case.language))
    before = case.due_at
    case.due_at = new_due
    case.extended_on = today(register, now)
    answer = record_answer(session, register, case, "extension", text, now=now, actor=actor)
    add_event(
        session,
        case,
        now,
        actor,
        "extended",
        f"due {case.due_at.isoformat()} (was {before.isoformat()}), reasons in answer {answer.id}",
    )
    _trace(session, case, now, actor, "rights.extended")
    return answer


def close(
    session: Session,
    register: Register,
    case: RightsCase,
    outcome: str,
    reasons: str,
    message: str,
    *,
    now: dt.datetime,
    actor: Actor,
) -> RightsAnswer | None:
    """Close with ``fulfilled``, ``refused`` (reasons required; the message must keep the
    complaint block and the judicial-remedy sentence) or ``withdrawn``."""
    _open_only(case)
    if outcome not in OUTCOMES:
        raise BadRequest(N_("choose an outcome"))
    if outcome == "fulfilled" and not is_verified(case):
        raise Conflict(N_("verify the person's identity before fulfilling the request"))
    answer: RightsAnswer | None = None
    if outcome == "refused":
        if not reasons.strip():
            raise BadRequest(N_("a refusal must state its reasons"))
        reasons = free_text(reasons, "reasons", REASONS_LIMIT)
        text = _with_reasons(free_text(message, "message", MESSAGE_LIMIT), reasons)
        authority = register.supervisory_authority
        if authority.email not in text or drafts.judicial_remedy(case.language) not in text:
            raise BadRequest(
                N_(
                    "a refusal must tell the person they may complain to %(authority)s "
                    "(its contact block) and seek a judicial remedy: keep those paragraphs"
                ),
                authority=authority.short_name,
            )
        answer = record_answer(session, register, case, "refusal", text, now=now, actor=actor)
    elif message.strip():
        answer = record_answer(
            session,
            register,
            case,
            "outcome",
            free_text(message, "message", MESSAGE_LIMIT),
            now=now,
            actor=actor,
        )
    close_case(session, case, now, actor, outcome)
    _trace(session, case, now, actor, "rights.closed")
    return answer


def draft(register: Register, case: RightsCase, kind: str) -> str:
    return drafts.draft(
        register,
        kind,
        reference=case.reference,
        rights=rights_of(case),
        language=case.language,
        received=received_day(register, case),
        due=case.due_at,
    )
