"""The e-mails a form submission causes: queued with the submission, built when they are sent.

A submission's transaction queues one outbox row per message (``outbox_rows``): its kind, its
recipient, and the Message-ID and Date fixed there and then, so that every retry of a row,
even after a crash, sends the same message under the same Message-ID. The sender builds the
message itself (``render``) from the stored submission when it sends it: the round trip of a
visitor does not pay for MIME headers, and no copy of the message waits in the database.

Messages are built only with the standard library's e-mail API (``EmailMessage``,
``headerregistry.Address``): a visitor's name goes into an address object, never into header
text, and control characters are folded to spaces first, so a name carrying CR/LF cannot start
a header.

By default (``email_content: notice``) the operator's notification says only that a submission
arrived, with a link into the admin: the mailbox then holds no personal data and the register's
period stays true. The acknowledgement to the visitor names the operator, the deletion period
and the policy, and never echoes what they wrote.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import urlsplit

from gardien.i18n import translator
from gardien.policy.document import duration_words
from gardien.register.schema import EmailContent, FieldType, FormSpec, Register, Text

NOTIFICATION = "notification"
ACKNOWLEDGEMENT = "acknowledgement"


class Unrenderable(Exception):
    """The message cannot be built: its form is no longer in the register."""


def header_safe(text: str) -> str:
    """Fold every control character (CR, LF, tab, NUL...) and run of spaces into one space."""
    cleaned = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    return " ".join(cleaned.split())


def message_domain(base_url: str) -> str:
    """The host of the public address, the right-hand side of every Message-ID."""
    return urlsplit(base_url).hostname or "localhost"


# --- queued with the submission -----------------------------------------------------------


def outbox_rows(
    *,
    submission_id: int,
    form: FormSpec,
    values: dict[str, str],
    restricted: bool,
    now: dt.datetime,
    base_url: str,
) -> list[dict[str, object]]:
    """The ``outbox_message`` rows of one submission: the operator's notifications (one per
    ``notify`` mailbox) and, when the form asks for it, the visitor's acknowledgement.

    A restricted submission's messages are queued ``held``: not sent until lifted."""
    domain = message_domain(base_url)
    recipients = [(NOTIFICATION, mailbox) for mailbox in form.notify]
    if form.acknowledgement and values.get("email"):
        recipients.append((ACKNOWLEDGEMENT, values["email"].strip()))
    return [
        {
            "submission_id": submission_id,
            "activity": form.activity,
            "kind": kind,
            "message_id": make_msgid(domain=domain),
            "recipient": recipient,
            "created_at": now,
            "status": "held" if restricted else "pending",
            "attempts": 0,
            "next_attempt_at": now,
        }
        for kind, recipient in recipients
    ]


# --- built when sent ----------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    """What a message is built from: the stored submission, read by the sender."""

    public_id: str
    form_id: str
    language: str
    received_at: dt.datetime
    values: dict[str, str]


@dataclass(frozen=True)
class Queued:
    """What the outbox row fixed when it was written: to whom, under which Message-ID, and
    the Date, the same at every attempt."""

    recipient: str
    message_id: str
    date: dt.datetime


def render(
    kind: str, *, register: Register, submitted: Submitted, queued: Queued, base_url: str
) -> str:
    """The complete message of one outbox row, as sent (RFC 5322 text)."""
    form = next((f for f in register.forms if f.id == submitted.form_id), None)
    if form is None:
        raise Unrenderable(submitted.form_id)
    build = acknowledgement if kind == ACKNOWLEDGEMENT else notification
    message = build(form, register, submitted, queued, base_url)
    return message.as_string()


def _text(text: Text, language: str, register: Register) -> str:
    return text.get(language) or text[register.languages.default]


def _new_message(
    register: Register, recipient: Address, subject: str, queued: Queued
) -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = Address(
        display_name=header_safe(register.operator.brand),
        addr_spec=register.operator.contact_email,
    )
    message["To"] = recipient
    message["Subject"] = header_safe(subject)
    message["Date"] = format_datetime(queued.date.astimezone(dt.UTC))
    message["Message-ID"] = queued.message_id
    message["Auto-Submitted"] = "auto-generated"
    return message


def _visitor(values: dict[str, str], address: str) -> Address:
    name = header_safe(f"{values.get('first_name', '')} {values.get('last_name', '')}")
    return Address(display_name=name, addr_spec=address.strip())


def _field_lines(form: FormSpec, register: Register, values: dict[str, str]) -> list[str]:
    language = register.languages.default
    lines = []
    for spec in form.fields:
        value = values.get(spec.name, "")
        if spec.type is FieldType.choice:
            labels = {o.value: _text(o.label, language, register) for o in spec.options}
            value = labels.get(value, value)
        label = _text(spec.label, language, register)
        if spec.type is FieldType.textarea:
            lines.append(f"{label}:\n{value}\n")
        else:
            lines.append(f"{label}: {value}")
    return lines


def notification(
    form: FormSpec, register: Register, submitted: Submitted, queued: Queued, base_url: str
) -> EmailMessage:
    """The operator's e-mail, in the register's default language."""
    language = register.languages.default
    t = translator(language)
    title = _text(form.title, language, register)
    link = f"{base_url.rstrip('/')}/admin/inbox/{submitted.public_id}"
    message = _new_message(
        register,
        Address(addr_spec=queued.recipient),
        t.gettext("New submission on the form “%(form)s”") % {"form": title},
        queued,
    )
    intro = t.gettext("A new submission arrived on the form “%(form)s” on %(date)s (UTC).") % {
        "form": title,
        "date": submitted.received_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M"),
    }
    values = submitted.values
    if form.email_content is EmailContent.full:
        if values.get("email"):
            message["Reply-To"] = _visitor(values, values["email"])
        body = [intro, "", *_field_lines(form, register, values), "", link]
    else:
        body = [
            intro,
            "",
            t.gettext("Read it and answer it in Gardien's inbox:"),
            link,
            "",
            t.gettext(
                "This e-mail holds no personal data on purpose: the submission stays in "
                "Gardien, where it is deleted when the register's period ends."
            ),
        ]
    message.set_content("\n".join(body) + "\n", cte="quoted-printable")
    return message


def acknowledgement(
    form: FormSpec, register: Register, submitted: Submitted, queued: Queued, base_url: str
) -> EmailMessage:
    """The visitor's receipt, in their language: who, how long, where the policy is."""
    language = submitted.language
    if language not in register.languages.available:
        language = register.languages.default
    t = translator(language)
    operator = register.operator.legal_name
    title = _text(form.title, language, register)
    activity = next(a for a in register.activities if a.id == form.activity)
    period = duration_words(activity.retention.period, t)
    message = _new_message(
        register,
        # The envelope's recipient, so that headers and envelope always agree.
        _visitor(submitted.values, queued.recipient),
        t.gettext("We received your message (%(operator)s)") % {"operator": operator},
        queued,
    )
    body = [
        t.gettext("Hello,"),
        "",
        t.gettext(
            "%(operator)s received the message you sent through the form “%(form)s”. "
            "We will answer you as soon as possible."
        )
        % {"operator": operator, "form": title},
        "",
        t.gettext(
            "The details you gave are used only to answer your request and are deleted "
            "%(period)s after we received them."
        )
        % {"period": period},
        "",
        t.gettext("How we process your data, and your rights:"),
        f"{base_url.rstrip('/')}/privacy?lang={language}",
        "",
        t.gettext("This is an automatic message; you do not need to reply to it."),
    ]
    message.set_content("\n".join(body) + "\n", cte="quoted-printable")
    return message
