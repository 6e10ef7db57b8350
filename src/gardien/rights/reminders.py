"""Deadline reminders: staff are e-mailed when an open case's legal due date comes near or
passes.

A scheduled job (``reminder_schedule``, every ``GARDIEN_RIGHTS_REMINDER_SECONDS``) takes the
``rights.reminders`` lease, so one instance at a time runs it, and looks for open cases whose
due date (``RightsCase.due_at``, counted by ``deadlines``) is at most the register's
``rights.reminder_days`` ahead on the operator's clock (``rights.time_zone``), or is past.
Each case gets one reminder per threshold (``due_soon``, ``overdue``) and due date (an
extension moves the due date, so the new one is reminded of too): a ``RightsReminder`` row
whose unique key (case, threshold, due date) lets only one transaction ever record it, even
if two instances raced past the lease. The same transaction queues the e-mails in the outbox
(retried, each with a Message-ID fixed at queueing) and adds a timeline event.

The reminder goes to the case's assignee when the case has an active one who may handle rights
cases, else to every active account whose role handles rights cases (``agent``, ``dpo``;
docs/security.md). It names the case reference, the rights asked, the due date and the link to
the case in the admin, never anything about the requester. A portal request the person never
confirmed with their code is not reminded of: the person, not the staff, has to act (the
``rights_unverified`` sweep closes it).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from babel.dates import format_date
from sqlalchemy import (
    ColumnElement,
    Date,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    and_,
    exists,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from gardien.deps import State
from gardien.errors import N_
from gardien.forms.models import OutboxMessage
from gardien.i18n import translator
from gardien.register.schema import Register
from gardien.rights.deadlines import local_day
from gardien.rights.models import RightsCase
from gardien.rights.provider import ACTIVITY
from gardien.rights.service import add_event
from gardien.security.audit import Actor
from gardien.security.models import AdminUser
from gardien.security.permissions import MATRIX, Permission
from gardien.storage.base import Base
from gardien.storage.clock import Clock
from gardien.storage.database import unit_of_work
from gardien.storage.locks import LockBusy, job_lease
from gardien.storage.schedule import every

log = logging.getLogger("gardien.rights.reminders")

JOB_NAME = "rights.reminders"
KIND = "rights_reminder"
"""The outbox kind of a reminder (a message to the operator's staff)."""
DUE_SOON = "due_soon"
OVERDUE = "overdue"
REMINDER = Actor.system("reminders")
LEASE_TTL = dt.timedelta(minutes=10)
HANDLERS = tuple(
    sorted(role.value for role, can in MATRIX.items() if Permission.handle_rights in can)
)
"""The roles that handle rights cases (``agent``, ``dpo``)."""

RIGHT_NAMES = {
    "access": N_("access"),
    "portability": N_("portability"),
    "erasure": N_("erasure"),
    "rectification": N_("rectification"),
    "restriction": N_("restriction"),
    "objection": N_("objection"),
    "withdraw_consent": N_("withdrawal of consent"),
    "post_mortem": N_("post-mortem directives"),
}


class RightsReminder(Base):
    """One reminder of one case's due date, at one threshold; at most one ever per key."""

    __tablename__ = "rights_reminder"
    __table_args__ = (
        UniqueConstraint("case_id", "threshold", "due_on", name="uq_rights_reminder_once"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("rights_case.id", ondelete="CASCADE"))
    threshold: Mapped[str] = mapped_column(String(12))
    """``due_soon`` or ``overdue``."""
    due_on: Mapped[dt.date] = mapped_column(Date)
    """The due date reminded of (an extension gives a new one)."""
    sent_at: Mapped[dt.datetime]
    recipients: Mapped[int] = mapped_column(Integer)
    """How many staff members it was queued for (their addresses are in the outbox)."""


@dataclass(frozen=True)
class Due:
    """A reminder to send: which case, at which threshold, about which due date."""

    case_id: int
    threshold: str
    due_on: dt.date


@dataclass
class ReminderReport:
    sent: list[Due] = field(default_factory=list)
    already: int = 0
    """Reminders another transaction recorded first (the unique key refused ours)."""


def _not_reminded(threshold: str) -> ColumnElement[bool]:
    return ~exists().where(
        RightsReminder.case_id == RightsCase.id,
        RightsReminder.threshold == threshold,
        RightsReminder.due_on == RightsCase.due_at,
    )


def due_reminders(session: Session, register: Register, now: dt.datetime) -> list[Due]:
    """The reminders owed at ``now``: open cases due within ``rights.reminder_days`` of today
    on the operator's clock (``due_soon``) or past due (``overdue``), not reminded yet."""
    today = local_day(now, register.rights.time_zone)
    horizon = today + dt.timedelta(days=register.rights.reminder_days)
    staff_must_act = and_(
        RightsCase.status == "open",
        ~and_(RightsCase.channel == "portal", RightsCase.verified_at.is_(None)),
    )
    found: list[Due] = []
    for threshold, window in (
        (OVERDUE, RightsCase.due_at < today),
        (DUE_SOON, and_(RightsCase.due_at >= today, RightsCase.due_at <= horizon)),
    ):
        rows = session.execute(
            select(RightsCase.id, RightsCase.due_at)
            .where(staff_must_act, window, _not_reminded(threshold))
            .order_by(RightsCase.due_at, RightsCase.id)
        ).all()
        found += [Due(case_id, threshold, due_at) for case_id, due_at in rows]
    return found


def staff_for(session: Session, case: RightsCase) -> list[str]:
    """The addresses to remind: the active assignee who handles rights cases, else every
    active account of a role that does."""
    if case.assignee_id is not None:
        assignee = session.get(AdminUser, case.assignee_id)
        if assignee is not None and assignee.disabled_at is None and assignee.role in HANDLERS:
            return [assignee.email]
    users = session.scalars(
        select(AdminUser)
        .where(AdminUser.role.in_(HANDLERS), AdminUser.disabled_at.is_(None))
        .order_by(AdminUser.id)
    ).all()
    return [user.email for user in users]


def message(
    register: Register,
    case: RightsCase,
    due: Due,
    today: dt.date,
    *,
    to: str,
    message_id: str,
    now: dt.datetime,
    base_url: str,
) -> str:
    """The reminder, in the register's default language, as the staff e-mails are."""
    language = register.languages.default
    t = translator(language)
    _ = t.gettext
    day = format_date(due.due_on, format="long", locale=language)
    rights = ", ".join(_(RIGHT_NAMES.get(r, r)) for r in case.rights.split(","))
    values = {"reference": case.reference, "due": day}
    if due.threshold == OVERDUE:
        subject = _("Rights case %(reference)s is overdue (due %(due)s)") % values
        lead = (
            _(
                "The legal deadline of rights case %(reference)s passed on %(due)s and the case "
                "is still open. Please answer the request, or record why it is late."
            )
            % values
        )
    else:
        days = (due.due_on - today).days
        subject = t.ngettext(
            "Rights case %(reference)s is due in %(days)s day (%(due)s)",
            "Rights case %(reference)s is due in %(days)s days (%(due)s)",
            days,
        ) % {**values, "days": days}
        lead = (
            _(
                "Rights case %(reference)s is still open and its legal deadline is %(due)s. "
                "Please answer the request in time, or extend the deadline if the law allows it."
            )
            % values
        )
    link = f"{base_url.rstrip('/')}/admin/rights/{case.reference}"
    email = EmailMessage(policy=policy.SMTP)
    email["From"] = register.rights.email
    email["To"] = to
    email["Date"] = format_datetime(now.astimezone(dt.UTC))
    email["Message-ID"] = message_id
    email["Subject"] = subject
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(
        "\n\n".join(
            [
                lead,
                _("Reference: %(reference)s") % values,
                _("Rights asked: %(rights)s") % {"rights": rights},
                _("Due date: %(due)s") % values,
                _("The case: %(link)s") % {"link": link},
            ]
        )
        + "\n"
    )
    return email.as_string()


def remind(
    session: Session,
    register: Register,
    due: Due,
    *,
    now: dt.datetime,
    base_url: str,
) -> RightsReminder:
    """Record the reminder ``due`` and queue its e-mails, in the caller's transaction.

    The reminder row is flushed first: when another transaction recorded the same reminder,
    the unique key raises ``IntegrityError`` here, before anything is queued. Flushes, never
    commits."""
    reminder = RightsReminder(
        case_id=due.case_id, threshold=due.threshold, due_on=due.due_on, sent_at=now, recipients=0
    )
    session.add(reminder)
    session.flush()
    case = session.get(RightsCase, due.case_id)
    assert case is not None  # the foreign key holds it
    today = local_day(now, register.rights.time_zone)
    domain = register.rights.email.rpartition("@")[2] or "localhost"
    addresses = staff_for(session, case)
    for address in addresses:
        message_id = make_msgid(domain=domain)
        session.add(
            OutboxMessage(
                submission_id=None,
                activity=ACTIVITY,
                kind=KIND,
                message_id=message_id,
                recipient=address,
                message=message(
                    register,
                    case,
                    due,
                    today,
                    to=address,
                    message_id=message_id,
                    now=now,
                    base_url=base_url,
                ),
                created_at=now,
                status="pending",
                attempts=0,
                next_attempt_at=now,
            )
        )
    reminder.recipients = len(addresses)
    add_event(
        session,
        case,
        now,
        REMINDER,
        "reminder_sent",
        f"{due.threshold} (due {due.due_on.isoformat()}): e-mailed to {len(addresses)} staff",
    )
    session.flush()
    return reminder


def send_due(
    sessions: sessionmaker[Session], register: Register, now: dt.datetime, base_url: str
) -> ReminderReport:
    """Send every reminder owed at ``now``, each in a transaction of its own."""
    report = ReminderReport()
    with sessions() as session:
        owed = due_reminders(session, register, now)
    for due in owed:
        try:
            with unit_of_work(sessions) as session:
                remind(session, register, due, now=now, base_url=base_url)
        except IntegrityError:
            report.already += 1
            continue
        report.sent.append(due)
    return report


def run_reminders(
    sessions: sessionmaker[Session], register: Register, clock: Clock, base_url: str
) -> ReminderReport:
    """One run under the ``rights.reminders`` lease; raises ``LockBusy`` when another
    instance holds it."""
    with job_lease(sessions, JOB_NAME, clock, ttl=LEASE_TTL):
        return send_due(sessions, register, clock.now(), base_url)


def remind_once(state: State) -> int:
    """One run; the number of reminders sent (0 when another instance holds the lease)."""
    try:
        report = run_reminders(state.sessions, state.register, state.clock, state.settings.base_url)
    except LockBusy:
        return 0
    if report.sent:
        log.info("rights deadline reminders queued", extra={"reminders": len(report.sent)})
    return len(report.sent)


async def reminder_schedule(state: State) -> None:
    """Run every ``settings.rights_reminder_seconds`` until cancelled."""
    await every(
        state.settings.rights_reminder_seconds,
        lambda: remind_once(state),
        log,
        "rights reminders failed",
    )
