"""The public rights portal: a person asks for their rights, then proves they hold the e-mail
address with a one-time code (EDPB Guidelines 01/2022: proportionate verification, by the
channel Gardien already knows, and nothing more).

Intake never looks at what Gardien holds: the case is opened, the code is queued in the
outbox and the same answer is given whether or not the address is known anywhere, so the
portal's answer and its timing cannot tell. A repeated identical request still awaiting
verification is linked to its case (a timeline event and a new code), not duplicated.

Only keyed hashes of the code and of the status-page token are stored; the code is single
use, expires after ``CODE_TTL`` and is locked after ``MAX_ATTEMPTS`` wrong tries. The e-mail
carrying it is an outbox row with its complete text (encrypted); that text is dropped once the
code is used. Errors name the field and the reason, never the value.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from enum import StrEnum
from urllib.parse import urlencode

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gardien.errors import N_, localise
from gardien.forms.mail import header_safe, message_domain
from gardien.forms.models import OutboxMessage
from gardien.i18n import translator
from gardien.register.schema import Register
from gardien.rights.models import EMAIL_INDEX, PHONE_INDEX, RightsCase, RightsVerification
from gardien.rights.phones import e164
from gardien.rights.provider import ACTIVITY
from gardien.rights.service import RIGHTS, Desk, add_event, open_case
from gardien.rights.sms import SMS_CODE
from gardien.security.audit import Actor
from gardien.security.crypto import blind_lookups
from gardien.storage.subjects import SubjectIdentity

CODE_DIGITS = 8
CODE_TTL = dt.timedelta(minutes=30)
MAX_ATTEMPTS = 5
OUTBOX_KIND = "rights_code"
PORTAL = "/rights"
PORTAL_ACTOR = Actor("portal", "subject")
MAX_LENGTH = 254
CONSENT_ID = re.compile(r"[0-9a-f]{32}")
VISITOR_ID = re.compile(r"[0-9a-f]{16}")
FIELDS = frozenset({"rights", "email", "phone", "consent_id", "visitor_id", "lang"})

RIGHT_LABELS = {
    "access": N_("Access: a copy of the personal data you hold about me"),
    "portability": N_("Portability: the data I provided, in a reusable format"),
    "erasure": N_("Erasure: delete the personal data you hold about me"),
    "rectification": N_("Rectification: correct inaccurate data about me"),
    "restriction": N_("Restriction: keep my data stored but do not otherwise use them"),
    "objection": N_("Objection: stop using my data on the basis of your legitimate interests"),
    "withdraw_consent": N_("Withdraw every consent I gave (cookies, contact forms)"),
    "post_mortem": N_("Post-mortem directives: what happens to my data after my death"),
}
MESSAGES = {
    "rights": N_("Choose at least one of the rights offered."),
    "required": N_("This field is required."),
    "too_long": N_("At most %(limit)s characters."),
    "email": N_("Enter a valid e-mail address, such as name@example.org."),
    "phone": N_("Enter a valid phone number, with its country code, such as +40 21 123 4567."),
    "characters": N_("This field contains characters that are not allowed."),
    "unknown": N_("This field is not part of the form."),
    "consent_id": N_("A consent id is the 32 characters shown in the cookie panel."),
    "visitor_id": N_(
        "A visitor id is the 16 letters and digits at the start of the _pk_id cookie's value."
    ),
    "contact": N_(
        "Give your e-mail address, or, if we know only your phone number, that number: the "
        "code is then sent by text message."
    ),
}


@dataclass(frozen=True)
class Problem:
    field: str
    code: str
    params: Mapping[str, str | int] = dataclasses.field(default_factory=dict)

    def text(self, language: str) -> str:
        return localise(MESSAGES[self.code], dict(self.params), language)


class Invalid(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(", ".join(f"{p.field}: {p.code}" for p in problems))


@dataclass(frozen=True)
class Intake:
    rights: tuple[str, ...]
    email: str | None
    """``None`` when the person gave only a phone: the code then goes by text message."""
    phone: str | None
    language: str
    consent_id: str | None = None
    """The cookie banner's consent id (read from the person's consent cookie, or typed from
    the cookie panel): what ties their consent records and measurement to them (Art. 11(2))."""
    visitor_id: str | None = None
    """The audience measurement's visitor id (read from the browser's ``_pk_id`` cookie when
    the visitor consented to measurement): what ties their measured visits to them. Like the
    consent id, a random value only that browser holds."""

    @property
    def by_sms(self) -> bool:
        return self.email is None


@dataclass(frozen=True)
class Submitted:
    reference: str
    token: str
    """The status page's token, given once, stored only hashed."""
    linked: bool


def offered(register: Register) -> list[str]:
    """The rights the portal handles, as the register offers them and in its order."""
    return [str(r.value) for r in register.rights.offered if str(r.value) in RIGHTS]


def check(register: Register, raw: Mapping[str, object], language: str) -> Intake:
    """A parsed form or JSON body: the rights asked, the e-mail, the phone (one of the two
    at least; the e-mail is preferred for the code)."""
    problems: list[Problem] = [Problem(name[:64], "unknown") for name in sorted(set(raw) - FIELDS)]
    wanted = raw.get("rights")
    if isinstance(wanted, str):
        wanted = [wanted]
    choices = offered(register)
    if (
        not isinstance(wanted, list)
        or not wanted
        or not all(isinstance(w, str) and w in choices for w in wanted)
    ):
        problems.append(Problem("rights", "rights"))
        rights: tuple[str, ...] = ()
    else:
        rights = tuple(sorted({str(w) for w in wanted}))
    email = _text(raw, "email", problems, required=False)
    if email is not None:
        try:
            email = validate_email(email, check_deliverability=False).normalized
        except EmailNotValidError:
            problems.append(Problem("email", "email"))
    phone = _text(raw, "phone", problems, required=False)
    if phone is not None:
        number = e164(phone, register.operator.addresses[0].country)
        if number is None:
            problems.append(Problem("phone", "phone"))
        else:
            phone = number
    if email is None and phone is None and not {"email", "phone"} & {p.field for p in problems}:
        problems.append(Problem("email", "contact"))
    consent_id = _text(raw, "consent_id", problems, required=False)
    if consent_id is not None:
        consent_id = consent_id.lower()
        if not CONSENT_ID.fullmatch(consent_id):
            problems.append(Problem("consent_id", "consent_id"))
    visitor_id = _text(raw, "visitor_id", problems, required=False)
    if visitor_id is not None:
        visitor_id = visitor_id.lower()
        if not VISITOR_ID.fullmatch(visitor_id):
            problems.append(Problem("visitor_id", "visitor_id"))
    if problems:
        raise Invalid(problems)
    return Intake(rights, email, phone, language, consent_id, visitor_id)


def _text(
    raw: Mapping[str, object], name: str, problems: list[Problem], *, required: bool
) -> str | None:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            problems.append(Problem(name, "required"))
        return None
    if not isinstance(value, str) or not value.isprintable():
        problems.append(Problem(name, "characters"))
        return None
    value = value.strip()
    if len(value) > MAX_LENGTH:
        problems.append(Problem(name, "too_long", {"limit": MAX_LENGTH}))
        return None
    return value


# -- intake ---------------------------------------------------------------------------------


def keyed(secret: bytes, purpose: str, reference: str, value: str) -> str:
    return hmac.new(secret, f"{purpose}\0{reference}\0{value}".encode(), hashlib.sha256).hexdigest()


def new_code() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))


def _pending_duplicate(session: Session, intake: Intake) -> RightsCase | None:
    """An open portal case with the same identifiers and rights, still awaiting verification."""
    query = select(RightsCase).where(
        RightsCase.channel == "portal",
        RightsCase.status == "open",
        RightsCase.verified_at.is_(None),
        RightsCase.rights == ",".join(intake.rights),
    )
    if intake.email:
        query = query.where(
            RightsCase.email_index.in_(blind_lookups(intake.email, EMAIL_INDEX, "email"))
        )
    else:
        query = query.where(RightsCase.email_index.is_(None))
    if intake.phone:
        query = query.where(RightsCase.phone_index.in_(blind_lookups(intake.phone, PHONE_INDEX)))
    else:
        query = query.where(RightsCase.phone_index.is_(None))
    return session.scalars(query.order_by(RightsCase.id.desc()).limit(1)).first()


def submit(
    session: Session,
    desk: Desk,
    intake: Intake,
    *,
    secret: bytes,
    base_url: str,
    now: dt.datetime,
) -> Submitted:
    """Open (or link) the case, issue a code and a status token, queue the code's e-mail.
    Flushes; the caller commits. Reads nothing but the rights cases themselves."""
    case = _pending_duplicate(session, intake)
    linked = case is not None
    if case is None:
        subject = SubjectIdentity(
            email=intake.email,
            phone=intake.phone,
            consent_id=intake.consent_id,
            visitor_id=intake.visitor_id,
        )
        case = open_case(
            session,
            desk,
            subject,
            intake.rights,
            channel="portal",
            now=now,
            actor=PORTAL_ACTOR,
            language=intake.language,
        )
    else:
        add_event(
            session, case, now, PORTAL_ACTOR, "linked", "the same request again: a new code sent"
        )
    code, token = new_code(), secrets.token_urlsafe(24)
    recipient = intake.email or intake.phone
    assert recipient is not None
    outbox = OutboxMessage(
        submission_id=None,
        activity=ACTIVITY,
        kind=SMS_CODE if intake.by_sms else OUTBOX_KIND,
        message_id=make_msgid(domain=message_domain(base_url)),
        recipient=recipient,
        created_at=now,
        status="pending",
        next_attempt_at=now,
    )
    if intake.by_sms:
        outbox.message = code_sms(
            desk.register, reference=case.reference, code=code, language=intake.language
        )
    else:
        outbox.message = code_message(
            desk.register,
            to=recipient,
            reference=case.reference,
            code=code,
            language=intake.language,
            base_url=base_url,
            message_id=outbox.message_id,
            now=now,
        )
    session.add(outbox)
    session.flush()
    session.add(
        RightsVerification(
            case_id=case.id,
            created_at=now,
            expires_at=now + CODE_TTL,
            code_hash=keyed(secret, "code", case.reference, code),
            token_hash=keyed(secret, "token", case.reference, token),
            attempts=0,
            outbox_id=outbox.id,
        )
    )
    add_event(
        session,
        case,
        now,
        PORTAL_ACTOR,
        "code_sent",
        "a one-time code by text message to the phone number"
        if intake.by_sms
        else "a one-time code to the e-mail address",
    )
    session.flush()
    return Submitted(case.reference, token, linked)


def verify_url(base_url: str, reference: str, language: str, code: str | None = None) -> str:
    query = {"code": code, "lang": language} if code else {"lang": language}
    return f"{base_url.rstrip('/')}{PORTAL}/verify/{reference}?{urlencode(query)}"


def status_url(base_url: str, reference: str, token: str, language: str) -> str:
    query = urlencode({"token": token, "lang": language})
    return f"{base_url.rstrip('/')}{PORTAL}/status/{reference}?{query}"


def code_message(
    register: Register,
    *,
    to: str,
    reference: str,
    code: str,
    language: str,
    base_url: str,
    message_id: str,
    now: dt.datetime,
) -> str:
    """The e-mail carrying the code, in the person's language, built with the e-mail API."""
    _ = translator(language).gettext
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = Address(
        display_name=header_safe(register.operator.brand),
        addr_spec=register.operator.contact_email,
    )
    message["To"] = Address(addr_spec=to)
    message["Subject"] = header_safe(
        _("Your request %(reference)s: your verification code") % {"reference": reference}
    )
    message["Date"] = format_datetime(now.astimezone(dt.UTC))
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    minutes = int(CODE_TTL.total_seconds() // 60)
    lines = [
        _("We received a request about your personal data (reference %(reference)s).")
        % {"reference": reference},
        "",
        _("To confirm that this e-mail address is yours, enter this code: %(code)s")
        % {"code": code},
        "",
        _("Or open this link:"),
        verify_url(base_url, reference, language, code),
        "",
        _("The code is valid for %(minutes)s minutes and can be used once.") % {"minutes": minutes},
        _("If you did not make this request, ignore this message: nothing will be done."),
        "",
        register.operator.brand,
    ]
    message.set_content("\n".join(lines))
    return message.as_string()


def code_sms(register: Register, *, reference: str, code: str, language: str) -> str:
    """The text message carrying the code, in the person's language."""
    _ = translator(language).gettext
    minutes = int(CODE_TTL.total_seconds() // 60)
    return _(
        "%(brand)s: your code for request %(reference)s is %(code)s (valid %(minutes)s min, "
        "one use). Not you? Ignore this message."
    ) % {"brand": register.operator.brand, "reference": reference, "code": code, "minutes": minutes}


# -- verification ---------------------------------------------------------------------------


class Outcome(StrEnum):
    verified = "verified"
    wrong = "wrong"
    expired = "expired"
    used = "used"
    locked = "locked"
    unknown = "unknown"


VERIFY_MESSAGES = {
    Outcome.wrong: N_("This code is not the one we sent. Attempts left: %(left)s."),
    Outcome.expired: N_("This code has expired. Send your request again to receive a new one."),
    Outcome.used: N_("This code was already used. Your request is confirmed."),
    Outcome.locked: N_("Too many wrong codes. Send your request again to receive a new one."),
    Outcome.unknown: N_("There is no request awaiting confirmation with this reference."),
}
VERIFY_STATUS = {
    Outcome.wrong: 422,
    Outcome.expired: 410,
    Outcome.used: 409,
    Outcome.locked: 429,
    Outcome.unknown: 404,
}


@dataclass(frozen=True)
class Verification:
    outcome: Outcome
    case: RightsCase | None = None
    left: int = 0

    def text(self, language: str) -> str:
        return localise(VERIFY_MESSAGES[self.outcome], {"left": self.left}, language)


def normalised_code(code: str) -> str:
    return "".join(c for c in code if not c.isspace() and c != "-")


def verify(
    session: Session, *, secret: bytes, reference: str, code: str, now: dt.datetime
) -> Verification:
    """Check ``code`` against the case's latest code; counts a wrong try, uses a right one."""
    case = session.scalars(
        select(RightsCase).where(RightsCase.reference == reference, RightsCase.channel == "portal")
    ).first()
    if case is None:
        return Verification(Outcome.unknown)
    row = session.scalars(
        select(RightsVerification)
        .where(RightsVerification.case_id == case.id)
        .order_by(RightsVerification.id.desc())
        .limit(1)
        .with_for_update()
    ).first()
    if row is None:
        return Verification(Outcome.unknown)
    if row.used_at is not None or case.verified_at is not None:
        return Verification(Outcome.used, case)
    if row.attempts >= MAX_ATTEMPTS:
        return Verification(Outcome.locked, case)
    if now >= row.expires_at:
        return Verification(Outcome.expired, case)
    expected = keyed(secret, "code", case.reference, normalised_code(code)[:32])
    if not hmac.compare_digest(expected, row.code_hash):
        row.attempts += 1
        add_event(session, case, now, PORTAL_ACTOR, "code_wrong", f"attempt {row.attempts}")
        if row.attempts >= MAX_ATTEMPTS:
            return Verification(Outcome.locked, case)
        return Verification(Outcome.wrong, case, MAX_ATTEMPTS - row.attempts)
    row.used_at = now
    case.verified_at = now
    add_event(
        session,
        case,
        now,
        PORTAL_ACTOR,
        "verified",
        "identity checked: the one-time code sent to the e-mail address"
        if case.email
        else "identity checked: the one-time code sent by text message to the phone number",
    )
    # The codes' e-mails already sent need not keep their text (which holds the code).
    outboxes = session.scalars(
        select(RightsVerification.outbox_id).where(RightsVerification.case_id == case.id)
    ).all()
    ids = [i for i in outboxes if i is not None]
    if ids:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids), OutboxMessage.status == "sent")
            .values(message=None)
        )
    session.flush()
    return Verification(Outcome.verified, case)


def case_for_token(
    session: Session, *, secret: bytes, reference: str, token: str
) -> RightsCase | None:
    """The case whose status page ``token`` opens, or ``None`` (unknown reference or token)."""
    if not token or len(token) > 64:
        return None
    digest = keyed(secret, "token", reference, token)
    return session.scalars(
        select(RightsCase)
        .join(RightsVerification, RightsVerification.case_id == RightsCase.id)
        .where(RightsCase.reference == reference, RightsVerification.token_hash == digest)
    ).first()


STATUS_TEXTS = {
    "awaiting": N_("Awaiting your confirmation: enter the code we sent to your e-mail address."),
    "verified": N_("Confirmed: we are handling your request."),
    "identity": N_("Awaiting a proof of identity from you (see below)."),
    "closed": N_("Answered."),
}


def status_of(case: RightsCase) -> str:
    if case.status == "closed":
        return "closed"
    return "verified" if case.verified_at is not None else "awaiting"


def rights_of(case: RightsCase) -> Sequence[str]:
    return [r for r in case.rights.split(",") if r]
