"""The messages a person receives about their request, at each step, in their language
(legal-requirements §1.1.3, §1.3.2, §1.3.3, point 7 of the rights issue): the acknowledgement
with the due date once the request is verified, an extension with its reasons, the request
for an identity document (on an agent's recorded doubt), and the outcome: the one-time link
to the access package, the erasure receipt, or a refusal with its reasons, the right to
complain to the supervisory authority (and to the person's own member state's) and the right
to a judicial remedy.

Each function queues a ``RightsNotice`` and, for an e-mail or a text message, an outbox row;
the message itself is built only when the sender sends it (``OUTBOX_KINDS``), from the case
and the notice's small encrypted parameters, the same at every attempt, so no rendered message
waits in the database. The channel follows the request (Art. 12(3), legal-requirements
§1.3.6): a request that came by post is answered by a letter the agent prints (``letter``);
otherwise by e-mail, or by text message when Gardien knows only the person's phone.

Functions flush, never commit; the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from babel.dates import format_date
from sqlalchemy import select
from sqlalchemy.orm import Session

from gardien.forms.jobs import Builder, OutboxKinds
from gardien.forms.mail import header_safe
from gardien.forms.models import OutboxMessage
from gardien.i18n import translator
from gardien.register.schema import Register
from gardien.rights import documents
from gardien.rights.answers import complaint_block, judicial_remedy
from gardien.rights.deadlines import local_day
from gardien.rights.documents import Offered
from gardien.rights.exchange import RightsNotice
from gardien.rights.models import RightsAnswer, RightsCase
from gardien.rights.provider import ACTIVITY
from gardien.rights.service import AccessPackage, Desk, add_event, export_package, subject_of
from gardien.rights.sms import SMS_CODE, sms_transport
from gardien.security.audit import Actor

PORTAL = "/rights"
EDPB_MEMBERS = "https://www.edpb.europa.eu/about-edpb/about-edpb/members_en"
"""Where a person finds their own member state's supervisory authority (GDPR Art. 77)."""
NOTIFIER = Actor.system("notify")

KINDS = ("acknowledgement", "extension", "identity", "outcome", "answer")
RESULTS = ("access", "directive", "erasure", "refusal", "rectification", "withdrawal")
EMAIL_KINDS = {
    "acknowledgement": "rights_ack",
    "extension": "rights_extension",
    "identity": "rights_identity",
    "outcome": "rights_outcome",
    "answer": "rights_answer",
}
SMS_KINDS = {kind: f"sms_{kind}" if kind != "acknowledgement" else "sms_ack" for kind in KINDS}


class NoticeError(ValueError):
    """A notice that cannot be queued as asked (the message names the problem, no value)."""


def channel_for(case: RightsCase) -> str:
    """Answer by the request's medium: a letter by post; else e-mail; else text message."""
    if case.channel == "post":
        return "letter"
    if case.email:
        return "email"
    if case.phone:
        return "sms"
    return "letter"


def _queue(
    session: Session,
    case: RightsCase,
    kind: str,
    params: dict[str, Any],
    *,
    register: Register,
    now: dt.datetime,
    actor: Actor,
) -> RightsNotice:
    channel = channel_for(case)
    outbox_id: int | None = None
    if channel != "letter":
        domain = register.rights.email.rpartition("@")[2] or "localhost"
        outbox = OutboxMessage(
            submission_id=None,
            activity=ACTIVITY,
            kind=(EMAIL_KINDS if channel == "email" else SMS_KINDS)[kind],
            message_id=make_msgid(domain=domain),
            recipient=case.email if channel == "email" else case.phone,
            created_at=now,
            status="pending",
            attempts=0,
            next_attempt_at=now,
        )
        session.add(outbox)
        session.flush()
        outbox_id = outbox.id
    notice = RightsNotice(
        case_id=case.id,
        outbox_id=outbox_id,
        kind=kind,
        channel=channel,
        created_at=now,
        params=json.dumps(params, ensure_ascii=False) if params else None,
    )
    session.add(notice)
    session.flush()
    what = kind if kind != "outcome" else f"outcome ({params.get('result')})"
    detail = f"{what} by {channel}" if channel != "letter" else f"{what}: a letter to print"
    add_event(
        session,
        case,
        now,
        actor,
        "notice_queued" if channel != "letter" else "letter_ready",
        f"{detail} (notice {notice.id}, content sha256 {digest(session, case, notice)})",
    )
    return notice


TEMPLATE_VERSION = 1
"""The version of the notices' wording (``subject_line``, ``paragraphs``, ``sms_text`` and
their catalog entries): raise it when the wording changes, so that a content digest recorded
before names the wording it was built with."""


def digest(session: Session, case: RightsCase, notice: RightsNotice) -> str:
    """The SHA-256 of everything a notice's content is built from, recorded in the case's
    timeline when the notice is queued (legal-requirements §4.1: the response sent, by hash).

    The message itself is built only when it is sent (no rendered message waits in the
    database) and from these inputs alone, so the same inputs give the same message: the
    wording version, the kind, channel and language, the case's reference, date of receipt
    and rights, its erasure receipt, the notice's parameters (a download link's token, an
    extension's reasons), the date it was queued and, for an agent's answer, the SHA-256 of
    the text recorded. ``docs/rights.md`` says why it is not the hash of the rendered e-mail."""
    facts = facts_of(session, case, notice)
    inputs = {
        "template": TEMPLATE_VERSION,
        "kind": facts.kind,
        "channel": facts.channel,
        "reference": facts.reference,
        "language": facts.language,
        "received": facts.received.isoformat(),
        "rights": list(facts.rights),
        "receipt": facts.receipt,
        "params": facts.params,
        "queued": facts.created_at.isoformat(),
        "text_sha256": hashlib.sha256(facts.text.encode()).hexdigest() if facts.text else None,
    }
    canonical = json.dumps(inputs, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def acknowledge(
    session: Session,
    case: RightsCase,
    *,
    register: Register,
    now: dt.datetime,
    actor: Actor = NOTIFIER,
) -> RightsNotice:
    """The acknowledgement: the reference and the legal due date (sent once verified)."""
    return _queue(
        session,
        case,
        "acknowledgement",
        {"due": case.due_at.isoformat()},
        register=register,
        now=now,
        actor=actor,
    )


def acknowledged(session: Session, case: RightsCase) -> bool:
    """Whether the person was already acknowledged: the automatic notice, or an agent's
    acknowledgement written from the answer template (a case is acknowledged once)."""
    notice = session.scalar(
        select(RightsNotice.id)
        .where(RightsNotice.case_id == case.id, RightsNotice.kind == "acknowledgement")
        .limit(1)
    )
    if notice is not None:
        return True
    written = session.scalar(
        select(RightsAnswer.id)
        .where(RightsAnswer.case_id == case.id, RightsAnswer.kind == "acknowledgement")
        .limit(1)
    )
    return written is not None


def acknowledge_once(
    session: Session,
    case: RightsCase,
    *,
    register: Register,
    now: dt.datetime,
    actor: Actor = NOTIFIER,
) -> RightsNotice | None:
    """The acknowledgement of a case just verified (by the portal's code, by an agent, or by
    an accepted identity document), unless the person already received one."""
    if acknowledged(session, case):
        return None
    return acknowledge(session, case, register=register, now=now, actor=actor)


def extension(
    session: Session,
    case: RightsCase,
    reasons: str,
    *,
    new_due: dt.date,
    register: Register,
    now: dt.datetime,
    actor: Actor = NOTIFIER,
) -> RightsNotice:
    """The extension notice (Art. 12(3)): the new deadline and the reasons, which are required."""
    if not reasons.strip():
        raise NoticeError("an extension must state its reasons")
    return _queue(
        session,
        case,
        "extension",
        {"due": new_due.isoformat(), "reasons": reasons.strip()},
        register=register,
        now=now,
        actor=actor,
    )


def identity(
    session: Session,
    case: RightsCase,
    upload_token: str,
    *,
    register: Register,
    now: dt.datetime,
    actor: Actor = NOTIFIER,
) -> RightsNotice:
    """The request for an identity document, with the masking advice and the upload link."""
    return _queue(
        session,
        case,
        "identity",
        {"token": upload_token, "days": register.rights.identity_document_max_days},
        register=register,
        now=now,
        actor=actor,
    )


def outcome(
    session: Session,
    case: RightsCase,
    result: str,
    *,
    register: Register,
    now: dt.datetime,
    offered: Offered | None = None,
    reasons: str | None = None,
    actor: Actor = NOTIFIER,
    details: dict[str, Any] | None = None,
) -> RightsNotice:
    """The answer: ``rectification`` and ``withdrawal`` (with ``details``: the fields
    corrected, the stores and counts), ``access`` and ``directive`` (the data a post-mortem
    directive communicates to its designated person; both with the one-time link ``offered``),
    ``erasure`` (the receipt stored in the case) or ``refusal`` (with its ``reasons``, which
    are required)."""
    params: dict[str, Any] = {"result": result}
    if result in ("access", "directive"):
        if offered is None:
            raise NoticeError("an access outcome needs the package's download link")
        params |= {"token": offered.token, "expires": offered.expires_at.isoformat()}
    elif result == "erasure":
        if not case.receipt:
            raise NoticeError("an erasure outcome needs the case's receipt")
    elif result == "refusal":
        if not reasons or not reasons.strip():
            raise NoticeError("a refusal must state its reasons")
        params["reasons"] = reasons.strip()
    elif result in ("rectification", "withdrawal"):
        params |= dict(details or {})
    else:
        raise NoticeError(f"result must be one of {', '.join(RESULTS)}")
    return _queue(session, case, "outcome", params, register=register, now=now, actor=actor)


def answer(
    session: Session,
    case: RightsCase,
    answer_id: int,
    *,
    register: Register,
    now: dt.datetime,
    actor: Actor = NOTIFIER,
) -> RightsNotice:
    """Send a message an agent wrote and recorded (``RightsAnswer``): its text, as recorded,
    is read when the message is sent."""
    found = session.get(RightsAnswer, answer_id)
    if found is None or found.case_id != case.id:
        raise NoticeError("no such answer for this case")
    return _queue(
        session,
        case,
        "answer",
        {"answer_id": answer_id, "about": found.kind},
        register=register,
        now=now,
        actor=actor,
    )


def send_package(
    session: Session,
    desk: Desk,
    case: RightsCase,
    *,
    data_dir: Path,
    secret: bytes,
    now: dt.datetime,
    actor: Actor,
) -> AccessPackage:
    """Answer an access (and portability) request the way the person receives it: build the
    package, store it encrypted behind a one-time link and send the link. An incomplete
    package (a store failed) is neither stored nor sent; the case stays open."""
    package = export_package(session, desk, case, subject_of(case), now=now, actor=actor)
    if package.failures:
        return package
    deliver(
        session,
        desk,
        case,
        package,
        "access",
        data_dir=data_dir,
        secret=secret,
        now=now,
        actor=actor,
    )
    return package


def deliver(
    session: Session,
    desk: Desk,
    case: RightsCase,
    package: AccessPackage,
    result: str,
    *,
    data_dir: Path,
    secret: bytes,
    now: dt.datetime,
    actor: Actor,
) -> Offered:
    """Store ``package`` encrypted behind a one-time link and send the link as the outcome
    ``result`` (``access``, or ``directive`` for a post-mortem directive's designee)."""
    offered = documents.offer_package(
        session,
        case,
        package,
        register=desk.register,
        data_dir=data_dir,
        secret=secret,
        now=now,
        actor=actor,
    )
    outcome(session, case, result, register=desk.register, now=now, offered=offered, actor=actor)
    return offered


# -- building the messages ----------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What a notice is built from, read from the case and the notice in one transaction."""

    kind: str
    channel: str
    reference: str
    language: str
    received: dt.datetime
    """When the request was received (UTC); its day is read on the register's clock."""
    rights: tuple[str, ...]
    receipt: dict[str, Any] | None
    params: dict[str, Any]
    created_at: dt.datetime
    text: str | None = None
    """An agent's recorded answer, for an ``answer`` notice."""


def facts_of(session: Session, case: RightsCase, notice: RightsNotice) -> Facts:
    params = json.loads(notice.params) if notice.params else {}
    text = None
    if notice.kind == "answer" and "answer_id" in params:
        recorded = session.get(RightsAnswer, params["answer_id"])
        text = recorded.body if recorded is not None else None
    return Facts(
        kind=notice.kind,
        channel=notice.channel,
        reference=case.reference,
        language=case.language,
        received=case.received_at,
        rights=tuple(r for r in case.rights.split(",") if r),
        receipt=json.loads(case.receipt) if case.receipt else None,
        params=params,
        created_at=notice.created_at,
        text=text,
    )


def _day(value: str | dt.date, language: str) -> str:
    day = dt.date.fromisoformat(value[:10]) if isinstance(value, str) else value
    return format_date(day, format="long", locale=language)


def _link(base_url: str, path: str, reference: str, token: str, language: str) -> str:
    query = urlencode({"token": token, "lang": language})
    return f"{base_url.rstrip('/')}{PORTAL}/{path}/{reference}?{query}"


def subject_line(facts: Facts, register: Register) -> str:
    _ = translator(facts.language).gettext
    names = {
        "acknowledgement": _("Your request %(reference)s: received and confirmed"),
        "extension": _("Your request %(reference)s: we need more time"),
        "identity": _("Your request %(reference)s: we need a proof of identity"),
        "outcome": _("Your request %(reference)s: our answer"),
        "answer": _("Your request %(reference)s"),
    }
    return str(names[facts.kind]) % {"reference": facts.reference}


def paragraphs(facts: Facts, register: Register, base_url: str) -> list[str]:
    """The body of an e-mail or a letter, paragraph by paragraph, in the person's language."""
    if facts.kind == "answer":
        if facts.text is None:
            raise ValueError("the recorded answer is gone")
        return facts.text.split("\n\n")
    language = facts.language
    _ = translator(language).gettext
    params = facts.params
    body: list[str] = [str(_("Hello,"))]
    if facts.kind == "acknowledgement":
        body += [
            str(
                _(
                    "We have received and confirmed your request %(reference)s, made on "
                    "%(received)s. We will answer it by %(due)s at the latest."
                )
            )
            % {
                "reference": facts.reference,
                "received": _day(local_day(facts.received, register.rights.time_zone), language),
                "due": _day(params["due"], language),
            },
            str(
                _(
                    "If we need more time (up to two further months, for complex or numerous "
                    "requests), we will tell you why before that date."
                )
            ),
        ]
    elif facts.kind == "extension":
        body += [
            str(
                _(
                    "We need more time to answer your request %(reference)s: as GDPR "
                    "Art. 12(3) allows, we extend the deadline to %(due)s, for the following "
                    "reasons:"
                )
            )
            % {"reference": facts.reference, "due": _day(params["due"], language)},
            str(params["reasons"]),
        ]
    elif facts.kind == "identity":
        body += [
            str(
                _(
                    "To answer your request %(reference)s safely, we need to be sure that you "
                    "are the person concerned: please send us a copy of an identity document "
                    "(a PDF, PNG or JPEG file; a photo of it is enough) through this page:"
                )
            )
            % {"reference": facts.reference},
            _link(base_url, "document", facts.reference, str(params.get("token", "")), language)
            if params.get("token")
            else str(_("(the link was used or is no longer valid)")),
            str(
                _(
                    "Before sending it, mask everything we do not need to recognise you: your "
                    "photo, your personal numeric code (CNP in Romania), the document's series "
                    "and number, and the machine-readable lines at the bottom. Your name must "
                    "stay readable."
                )
            ),
            str(
                _(
                    "We use the document only to check your identity, and delete it as soon as "
                    "we have decided, at the latest %(days)s days after receiving it."
                )
            )
            % {"days": params.get("days", register.rights.identity_document_max_days)},
        ]
    else:
        body += _outcome(facts, register, base_url)
    body.append(
        str(_("The data protection team of %(brand)s")) % {"brand": register.operator.brand}
    )
    return body


def _outcome(facts: Facts, register: Register, base_url: str) -> list[str]:
    language = facts.language
    _ = translator(language).gettext
    params = facts.params
    result = params.get("result")
    if result in ("access", "directive"):
        lines = [
            str(
                _(
                    "Your request %(reference)s is answered: the copy of your personal data, "
                    "with the information about how we use them, is ready."
                )
                if result == "access"
                else _(
                    "Your request %(reference)s is answered: as the post-mortem directive of "
                    "the deceased person provides, the data it asks us to communicate to you "
                    "are ready."
                )
            )
            % {"reference": facts.reference},
        ]
        if params.get("token"):
            lines += [
                str(
                    _(
                        "Download it through this link, which works once and until %(until)s "
                        "(UTC); after the download, or after that date, the copy is deleted "
                        "from our server:"
                    )
                )
                % {"until": params["expires"][:16].replace("T", " ")},
                _link(base_url, "download", facts.reference, params["token"], language),
            ]
        else:
            lines.append(str(_("The download link was used or has expired.")))
        return lines
    if result == "rectification":
        return [
            str(
                _(
                    "Your request %(reference)s is answered: we corrected %(fields)s "
                    "wherever we hold it (%(count)s record(s))."
                )
            )
            % {
                "reference": facts.reference,
                "fields": ", ".join(params.get("fields") or []) or "-",
                "count": params.get("count", 0),
            },
            str(
                _(
                    "Consent records and audience measurement hold nothing to correct: they "
                    "record what was decided or seen, and when."
                )
            ),
        ]
    if result == "withdrawal":
        return [
            str(
                _(
                    "Your request %(reference)s is answered: every consent you gave us is "
                    "withdrawn (%(count)s). Nothing more is done on the basis of it; what was "
                    "done before stays lawful."
                )
            )
            % {"reference": facts.reference, "count": params.get("count", 0)}
        ]
    if result == "erasure":
        receipt = facts.receipt or {}
        lines = [
            str(
                _(
                    "Your request %(reference)s is answered: we erased your personal data. "
                    "This receipt lists each place where we looked, what matched, what was "
                    "erased and what had to be kept, and why:"
                )
            )
            % {"reference": facts.reference}
        ]
        for store in receipt.get("stores", []):
            if store.get("status") != "done":
                lines.append(str(_("%(store)s: not completed")) % {"store": store["store"]})
                continue
            line = str(_("%(store)s: %(matched)s found, %(erased)s erased, %(kept)s kept")) % {
                "store": store["store"],
                "matched": store.get("matched", 0),
                "erased": store.get("erased", 0),
                "kept": store.get("kept", 0),
            }
            if store.get("kept") and store.get("kept_reason"):
                line += f" ({store['kept_reason']})"
            lines.append("- " + line)
        lines.append(
            str(_("A new search after the erasure found nothing left beyond what was kept."))
            if receipt.get("nothing_left")
            else str(_("The erasure is not complete yet; we will write to you again."))
        )
        return lines
    return [
        str(_("We cannot act on your request %(reference)s, for the following reasons:"))
        % {"reference": facts.reference},
        str(params.get("reasons", "")),
        complaint_block(register, language),
        str(_("The supervisory authorities of every member state are listed at %(url)s."))
        % {"url": EDPB_MEMBERS},
        judicial_remedy(language),
    ]


def sms_text(facts: Facts, register: Register, base_url: str) -> str:
    """The same notice, short enough for a text message."""
    language = facts.language
    _ = translator(language).gettext
    params = facts.params
    values = {
        "brand": register.operator.brand,
        "reference": facts.reference,
        "due": _day(params["due"], language) if "due" in params else "",
        "reasons": str(params.get("reasons", ""))[:200],
        "email": register.rights.email,
        "link": "",
    }
    if facts.kind == "acknowledgement":
        text = _("%(brand)s: request %(reference)s confirmed. We answer by %(due)s.")
    elif facts.kind == "extension":
        text = _("%(brand)s: request %(reference)s: answer postponed to %(due)s. Why: %(reasons)s")
    elif facts.kind == "identity":
        values["link"] = _link(
            base_url, "document", facts.reference, str(params.get("token", "")), language
        )
        text = _(
            "%(brand)s: request %(reference)s: please send a proof of identity, masking your "
            "CNP, photo and document number: %(link)s"
        )
    elif params.get("result") == "access" and params.get("token"):
        values["link"] = _link(base_url, "download", facts.reference, params["token"], language)
        text = _("%(brand)s: request %(reference)s answered. Your data (one download): %(link)s")
    elif params.get("result") == "directive" and params.get("token"):
        values["link"] = _link(base_url, "download", facts.reference, params["token"], language)
        text = _(
            "%(brand)s: request %(reference)s answered. The data the directive communicates "
            "to you (one download): %(link)s"
        )
    elif params.get("result") == "erasure":
        text = _("%(brand)s: request %(reference)s answered: your data were erased.")
    elif facts.kind == "answer" and facts.text and len(facts.text) <= 300:
        return facts.text
    elif facts.kind == "answer":
        text = _(
            "%(brand)s: we wrote to you about request %(reference)s; write to %(email)s to "
            "receive our message."
        )
    else:
        text = _(
            "%(brand)s: request %(reference)s: we cannot act on it. Write to %(email)s for the "
            "reasons and your remedies."
        )
    return str(text) % values


def email_text(
    facts: Facts, register: Register, base_url: str, *, to: str, message_id: str, date: dt.datetime
) -> str:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = Address(
        display_name=header_safe(register.operator.brand), addr_spec=register.rights.email
    )
    message["To"] = Address(addr_spec=to)
    message["Subject"] = header_safe(subject_line(facts, register))
    message["Date"] = format_datetime(date.astimezone(dt.UTC))
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        "\n\n".join(paragraphs(facts, register, base_url)) + "\n", cte="quoted-printable"
    )
    return message.as_string()


def _prepare(session: Session, rows: Sequence[OutboxMessage]) -> dict[int, Builder]:
    """The sender's hook: read each claimed notice's facts now, build its text when sent."""
    found = session.execute(
        select(RightsNotice, RightsCase)
        .join(RightsCase, RightsCase.id == RightsNotice.case_id)
        .where(RightsNotice.outbox_id.in_([row.id for row in rows]))
    ).all()
    by_outbox = {notice.outbox_id: facts_of(session, case, notice) for notice, case in found}
    builders: dict[int, Builder] = {}
    for row in rows:
        facts = by_outbox.get(row.id)
        if facts is None:
            continue
        if row.kind.startswith("sms_"):
            builders[row.id] = _sms_builder(facts)
        else:
            builders[row.id] = _email_builder(facts, row.recipient, row.message_id, row.created_at)
    return builders


def _sms_builder(facts: Facts) -> Builder:
    return lambda register, base_url: sms_text(facts, register, base_url)


def _email_builder(facts: Facts, to: str, message_id: str, date: dt.datetime) -> Builder:
    return lambda register, base_url: email_text(
        facts, register, base_url, to=to, message_id=message_id, date=date
    )


OUTBOX_KINDS = (
    OutboxKinds(frozenset(EMAIL_KINDS.values()), _prepare),
    OutboxKinds(frozenset([*SMS_KINDS.values(), SMS_CODE]), _prepare, sms_transport),
)
"""Declared to the outbox sender by the composition root (``runtime``)."""


def letters(session: Session, case: RightsCase) -> list[RightsNotice]:
    """The notices of a case to be printed and posted, newest first."""
    return list(
        session.scalars(
            select(RightsNotice)
            .where(RightsNotice.case_id == case.id, RightsNotice.channel == "letter")
            .order_by(RightsNotice.id.desc())
        )
    )
