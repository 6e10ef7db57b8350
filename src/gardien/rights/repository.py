"""The queries of the rights admin: the case queue with its filters, the dashboard figures,
a repeated request's open case, a case's attachments and answers, the staff cases go to.

The queue reads no personal value: it lists references, dates and statuses; identifiers are
decrypted only on the case page, whose view is traced."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session, defer

from gardien.rights.deadlines import DEFAULT_TIME_ZONE, day_start, local_day
from gardien.rights.models import (
    EMAIL_INDEX,
    PHONE_INDEX,
    RightsAnswer,
    RightsAttachment,
    RightsCase,
)
from gardien.security.crypto import blind_lookups
from gardien.security.models import AdminUser

DUE_SOON_DAYS = 7
"""A case is due soon when its deadline is at most this many days away."""
QUEUE_LIMIT = 500
ASSIGNABLE_ROLES = ("agent", "dpo")


@dataclass(frozen=True)
class QueueFilter:
    status: str | None = None
    right: str | None = None
    channel: str | None = None
    due: str | None = None
    """``soon`` (open, due within ``DUE_SOON_DAYS``) or ``late`` (open, past its due date)."""
    assignee: str | None = None
    """``me`` or ``none`` (unassigned)."""
    received_from: dt.date | None = None
    received_to: dt.date | None = None


def queue(
    session: Session,
    chosen: QueueFilter,
    today: dt.date,
    me: int,
    time_zone: str = DEFAULT_TIME_ZONE,
) -> list[RightsCase]:
    """The cases ``chosen`` selects, the soonest due first (closed cases after open ones)."""
    query: Select[tuple[RightsCase]] = select(RightsCase)
    if chosen.status:
        query = query.where(RightsCase.status == chosen.status)
    if chosen.right:
        # ``rights`` is a sorted comma-separated list of known words: match one whole word.
        query = query.where(
            or_(
                RightsCase.rights == chosen.right,
                RightsCase.rights.like(f"{chosen.right},%"),
                RightsCase.rights.like(f"%,{chosen.right}"),
                RightsCase.rights.like(f"%,{chosen.right},%"),
            )
        )
    if chosen.channel:
        query = query.where(RightsCase.channel == chosen.channel)
    if chosen.due == "soon":
        query = query.where(
            RightsCase.status == "open",
            RightsCase.due_at >= today,
            RightsCase.due_at <= today + dt.timedelta(days=DUE_SOON_DAYS),
        )
    elif chosen.due == "late":
        query = query.where(RightsCase.status == "open", RightsCase.due_at < today)
    if chosen.assignee == "me":
        query = query.where(RightsCase.assignee_id == me)
    elif chosen.assignee == "none":
        query = query.where(RightsCase.assignee_id.is_(None))
    if chosen.received_from:
        query = query.where(RightsCase.received_at >= day_start(chosen.received_from, time_zone))
    if chosen.received_to:
        end = day_start(chosen.received_to + dt.timedelta(days=1), time_zone)
        query = query.where(RightsCase.received_at < end)
    order = (RightsCase.status.desc(), RightsCase.due_at, RightsCase.id)  # "open" > "closed"
    return list(session.scalars(query.order_by(*order).limit(QUEUE_LIMIT)))


@dataclass(frozen=True)
class Figures:
    open: int
    due_soon: int
    late: int
    closed: int
    """Cases closed within the period."""
    on_time: int
    """Of those, the ones closed on or before their due date."""

    @property
    def on_time_rate(self) -> float | None:
        return self.on_time / self.closed if self.closed else None


def figures(
    session: Session,
    today: dt.date,
    start: dt.date,
    end: dt.date,
    time_zone: str = DEFAULT_TIME_ZONE,
) -> Figures:
    """Open cases now (due soon, late) and the on-time rate of the cases closed between
    ``start`` and ``end`` (both included): answered by their due date / closed, the day of
    closing read on the controller's clock (``time_zone``), like the due date."""

    def count(*conditions: ColumnElement[bool]) -> int:
        query = select(func.count()).select_from(RightsCase).where(*conditions)
        return int(session.scalar(query) or 0)

    is_open = RightsCase.status == "open"
    soon = today + dt.timedelta(days=DUE_SOON_DAYS)
    in_period = (
        RightsCase.closed_at.is_not(None),
        RightsCase.closed_at >= day_start(start, time_zone),
        RightsCase.closed_at < day_start(end + dt.timedelta(days=1), time_zone),
    )
    closed = list(
        session.execute(select(RightsCase.closed_at, RightsCase.due_at).where(*in_period))
    )
    on_time = sum(
        1 for closed_at, due in closed if closed_at and local_day(closed_at, time_zone) <= due
    )
    return Figures(
        open=count(is_open),
        due_soon=count(is_open, RightsCase.due_at >= today, RightsCase.due_at <= soon),
        late=count(is_open, RightsCase.due_at < today),
        closed=len(closed),
        on_time=on_time,
    )


def open_due_dates(session: Session) -> list[dt.date]:
    """The due dates of the open cases, for the chart of days left."""
    return list(session.scalars(select(RightsCase.due_at).where(RightsCase.status == "open")))


def open_duplicate(
    session: Session, rights: str, email: str | None, phone: str | None
) -> RightsCase | None:
    """An open case asking the same rights for the same e-mail and phone (the same request
    again, by whatever channel): it is linked, not duplicated."""
    query = select(RightsCase).where(RightsCase.status == "open", RightsCase.rights == rights)
    if email:
        query = query.where(RightsCase.email_index.in_(blind_lookups(email, EMAIL_INDEX, "email")))
    else:
        query = query.where(RightsCase.email_index.is_(None))
    if phone:
        query = query.where(RightsCase.phone_index.in_(blind_lookups(phone, PHONE_INDEX)))
    else:
        query = query.where(RightsCase.phone_index.is_(None))
    return session.scalars(query.order_by(RightsCase.id.desc()).limit(1)).first()


def by_reference(session: Session, reference: str) -> RightsCase | None:
    return session.scalars(select(RightsCase).where(RightsCase.reference == reference[:24])).first()


def attachments(session: Session, case: RightsCase) -> list[RightsAttachment]:
    """A case's documents; their content is loaded only when one is opened."""
    return list(
        session.scalars(
            select(RightsAttachment)
            .options(defer(RightsAttachment.content))
            .where(RightsAttachment.case_id == case.id)
            .order_by(RightsAttachment.id)
        )
    )


def answers(session: Session, case: RightsCase) -> list[RightsAnswer]:
    return list(
        session.scalars(
            select(RightsAnswer).where(RightsAnswer.case_id == case.id).order_by(RightsAnswer.id)
        )
    )


def assignable(session: Session) -> list[AdminUser]:
    """The accounts a case can be assigned to: agents and DPOs not disabled."""
    return list(
        session.scalars(
            select(AdminUser)
            .where(AdminUser.role.in_(ASSIGNABLE_ROLES), AdminUser.disabled_at.is_(None))
            .order_by(AdminUser.id)
        )
    )


def staff_names(session: Session, ids: set[int]) -> dict[int, str]:
    """The e-mail addresses of the staff assigned to the listed cases, by account id."""
    if not ids:
        return {}
    rows = session.execute(select(AdminUser.id, AdminUser.email).where(AdminUser.id.in_(ids)))
    return {int(user_id): str(email) for user_id, email in rows}
