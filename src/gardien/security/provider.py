"""Admin accounts answer data-subject requests too: a staff member may ask what Gardien holds
about them (their account), correct their e-mail, or have a closed account erased."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from gardien.register.schema import RetentionAction, RetentionTrigger
from gardien.security.crypto import blind_index, blind_lookups
from gardien.security.models import AdminUser
from gardien.storage.subjects import ErasureOutcome, FoundRecords, JsonScalar, SubjectIdentity

ACTIVITY = "admin_accounts"
EMAIL_INDEX = "admin_user.email_index"


class AdminAccountProvider:
    name = "admin_accounts"
    tables = frozenset({"admin_user"})

    def _accounts(self, session: Session, subject: SubjectIdentity) -> list[AdminUser]:
        if not subject.email:
            return []
        lookups = blind_lookups(subject.email, EMAIL_INDEX, "email")
        return list(session.scalars(select(AdminUser).where(AdminUser.email_index.in_(lookups))))

    def find(self, session: Session, subject: SubjectIdentity) -> FoundRecords:
        return FoundRecords(self.name, {ACTIVITY: len(self._accounts(session, subject))})

    def export(
        self, session: Session, subject: SubjectIdentity
    ) -> dict[str, list[dict[str, JsonScalar]]]:
        return {
            ACTIVITY: [
                {
                    "email": user.email,
                    "role": user.role,
                    "created_at": user.created_at.isoformat(),
                    "second_factor_enrolled_at": (
                        user.totp_enrolled_at.isoformat() if user.totp_enrolled_at else None
                    ),
                    "disabled_at": user.disabled_at.isoformat() if user.disabled_at else None,
                }
                for user in self._accounts(session, subject)
            ]
        }

    def rectify(
        self, session: Session, subject: SubjectIdentity, corrections: Mapping[str, str]
    ) -> int:
        new_email = corrections.get("email")
        accounts = self._accounts(session, subject)
        if not new_email:
            return 0
        for user in accounts:
            user.email = new_email.strip()
            user.email_index = blind_index(new_email, EMAIL_INDEX, "email")
        return len(accounts)

    def erase(self, session: Session, subject: SubjectIdentity) -> ErasureOutcome:
        """Closed (disabled) accounts are erased; an active one is kept until it is closed,
        since it is what lets its owner work (its actions stay in the audit trail by id)."""
        erased = kept = 0
        for user in self._accounts(session, subject):
            if user.disabled_at is None:
                kept += 1
                continue
            session.delete(user)
            erased += 1
        return ErasureOutcome(
            self.name,
            erased=erased,
            kept=kept,
            kept_reason="an active admin account is erased once it is closed" if kept else None,
        )

    def restrict(self, session: Session, subject: SubjectIdentity, restricted: bool) -> int:
        """An account is restricted by disabling it in the admin, not through this workflow."""
        return 0

    def object(self, session: Session, subject: SubjectIdentity, activity_id: str) -> int:
        """An objection to the account is settled by the DPO (the account is what gives its
        owner access to their work); nothing changes automatically."""
        return 0


class AdminAccountStore:
    """Retention of admin accounts: a closed (disabled) account goes after the period."""

    store_id = "admin_user"
    triggers = frozenset({RetentionTrigger.account_closed})
    actions = frozenset({RetentionAction.delete})

    def oldest(self, session: Session, trigger: RetentionTrigger) -> dt.datetime | None:
        return session.scalar(select(func.min(AdminUser.disabled_at)))

    def count_due(self, session: Session, trigger: RetentionTrigger, cutoff: dt.datetime) -> int:
        return int(session.scalar(select(func.count()).where(AdminUser.disabled_at < cutoff)) or 0)

    def purge_chunk(
        self,
        session: Session,
        trigger: RetentionTrigger,
        action: RetentionAction,
        cutoff: dt.datetime,
        limit: int,
    ) -> int:
        ids = list(
            session.scalars(select(AdminUser.id).where(AdminUser.disabled_at < cutoff).limit(limit))
        )
        if ids:
            session.execute(delete(AdminUser).where(AdminUser.id.in_(ids)))
        return len(ids)
