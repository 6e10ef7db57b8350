"""The e-mails a form submission causes, built and queued in the submission's transaction.

Messages are built only with the standard library's e-mail API (``EmailMessage``,
``headerregistry.Address``): a visitor's name goes into an address object, never into header
text, and control characters are folded to spaces first, so a name carrying CR/LF cannot start
a header. The Message-ID is fixed here, so every retry of a row sends the same one.

By default (``email_content: notice``) the operator's notification says only that a submission
arrived, with a link into the admin: the mailbox then holds no personal data and the register's
period stays true. The acknowledgement to the visitor names the operator, the deletion period
and the policy, and never echoes what they wrote.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from gardien.forms.models import FormSubmission, OutboxMessage
from gardien.i18n import translator
from gardien.policy.document import duration_words
from gardien.register.schema import EmailContent, FieldType, FormSpec, Register, Text

NOTIFICATION = "notification"
ACKNOWLEDGEMENT = "acknowledgement"


def header_safe(text: str) -> str:
    """Fold every control character (CR, LF, tab, NUL...) and run of spaces into one space."""
    cleaned = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    return " ".join(cleaned.split())


def message_domain(base_url: str) -> str:
    """The host of the public address, the right-hand side of every Message-ID."""
    return urlsplit(base_url).hostname or "localhost"


def _text(text: Text, language: str, register: Register) -> str:
    return text.get(language) or text[register.languages.default]


def _new_message(
    register: Register, recipient: Address, subject: str, now: dt.datetime, base_url: str
) -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = Address(
        display_name=header_safe(register.operator.brand),
        addr_spec=register.operator.contact_email,
    )
    message["To"] = recipient
    message["Subject"] = header_safe(subject)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=message_domain(base_url))
    message["Auto-Submitted"] = "auto-generated"
    return message


def _visitor(values: dict[str, str]) -> Address:
    name = header_safe(f"{values.get('first_name', '')} {values.get('last_name', '')}")
    return Address(display_name=name, addr_spec=values["email"].strip())


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
    *,
    submission: FormSubmission,
    form: FormSpec,
    register: Register,
    values: dict[str, str],
    recipient: str,
    now: dt.datetime,
    base_url: str,
) -> EmailMessage:
    """The operator's e-mail, in the register's default language."""
    language = register.languages.default
    t = translator(language)
    title = _text(form.title, language, register)
    link = f"{base_url.rstrip('/')}/admin/inbox/{submission.public_id}"
    message = _new_message(
        register,
        Address(addr_spec=recipient),
        t.gettext("New submission on the form “%(form)s”") % {"form": title},
        now,
        base_url,
    )
    intro = t.gettext("A new submission arrived on the form “%(form)s” on %(date)s (UTC).") % {
        "form": title,
        "date": now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M"),
    }
    if form.email_content is EmailContent.full:
        if values.get("email"):
            message["Reply-To"] = _visitor(values)
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
    *,
    form: FormSpec,
    register: Register,
    values: dict[str, str],
    language: str,
    now: dt.datetime,
    base_url: str,
) -> EmailMessage:
    """The visitor's receipt, in their language: who, how long, where the policy is."""
    if language not in register.languages.available:
        language = register.languages.default
    t = translator(language)
    operator = register.operator.legal_name
    title = _text(form.title, language, register)
    activity = next(a for a in register.activities if a.id == form.activity)
    period = duration_words(activity.retention.period, t)
    message = _new_message(
        register,
        _visitor(values),
        t.gettext("We received your message (%(operator)s)") % {"operator": operator},
        now,
        base_url,
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


def _outbox_row(
    submission: FormSubmission,
    form: FormSpec,
    kind: str,
    recipient: str,
    message: EmailMessage,
    now: dt.datetime,
) -> OutboxMessage:
    return OutboxMessage(
        submission_id=submission.id,
        activity=form.activity,
        kind=kind,
        message_id=str(message["Message-ID"]),
        recipient=recipient,
        message=message.as_string(),
        created_at=now,
        status="held" if submission.restricted else "pending",
        attempts=0,
        next_attempt_at=now,
    )


def enqueue(
    session: Session,
    *,
    submission: FormSubmission,
    form: FormSpec,
    register: Register,
    values: dict[str, str],
    language: str,
    now: dt.datetime,
    base_url: str,
) -> list[OutboxMessage]:
    """Queue the operator's notifications (one per ``notify`` mailbox) and, when the form
    asks for it, the visitor's acknowledgement, in the caller's transaction (flushes only).

    A restricted submission's messages are queued ``held``: not sent until lifted."""
    session.add(submission)
    session.flush()  # the submission's id, which the outbox rows point to
    rows = [
        _outbox_row(
            submission,
            form,
            NOTIFICATION,
            mailbox,
            notification(
                submission=submission,
                form=form,
                register=register,
                values=values,
                recipient=mailbox,
                now=now,
                base_url=base_url,
            ),
            now,
        )
        for mailbox in form.notify
    ]
    if form.acknowledgement and values.get("email"):
        message = acknowledgement(
            form=form,
            register=register,
            values=values,
            language=language,
            now=now,
            base_url=base_url,
        )
        rows.append(
            _outbox_row(submission, form, ACKNOWLEDGEMENT, values["email"].strip(), message, now)
        )
    session.add_all(rows)
    session.flush()
    return rows
