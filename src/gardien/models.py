"""Every table of Gardien, imported once so Alembic and the coverage test see them all."""

from __future__ import annotations

from gardien.analytics.models import AnalyticsHit, AnalyticsSalt
from gardien.consent.models import ConsentRecord, ConsentRevision
from gardien.forms.models import DisclosureEntry, FormSubmission, OutboxMessage
from gardien.policy.models import PolicyVersion
from gardien.retention.models import PurgeReceipt
from gardien.rights.amendments import RightsDirective, RightsRectification
from gardien.rights.exchange import RightsDocument, RightsDownload, RightsNotice
from gardien.rights.models import (
    RightsAnswer,
    RightsAttachment,
    RightsCase,
    RightsEvent,
    RightsVerification,
)
from gardien.rights.recipients import RightsRecipientNotice
from gardien.rights.reminders import RightsReminder
from gardien.security.connection_log import ConnectionLogEntry
from gardien.security.models import (
    AdminSession,
    AdminUser,
    ApiToken,
    AuditEntry,
    AuthThrottle,
    EncryptionKey,
    RateLimitBucket,
    RecoveryCode,
)
from gardien.storage.base import Base
from gardien.storage.models import JobLock
from gardien.storage.restriction import SubjectRestriction

metadata = Base.metadata

__all__ = [
    "AnalyticsHit",
    "AnalyticsSalt",
    "AdminSession",
    "AdminUser",
    "ApiToken",
    "AuditEntry",
    "AuthThrottle",
    "ConsentRecord",
    "ConsentRevision",
    "ConnectionLogEntry",
    "RecoveryCode",
    "DisclosureEntry",
    "EncryptionKey",
    "FormSubmission",
    "JobLock",
    "SubjectRestriction",
    "OutboxMessage",
    "PolicyVersion",
    "PurgeReceipt",
    "RateLimitBucket",
    "RightsAnswer",
    "RightsAttachment",
    "RightsCase",
    "RightsDirective",
    "RightsDocument",
    "RightsDownload",
    "RightsNotice",
    "RightsRecipientNotice",
    "RightsReminder",
    "RightsEvent",
    "RightsRectification",
    "RightsVerification",
    "metadata",
]
