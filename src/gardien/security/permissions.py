"""Roles and what each may do: the permission matrix of docs/security.md, as code.

auditor: read-only, audit log included · agent: forms inbox and rights cases · dpo: everything
privacy (register, exports, abuse view) · admin: users and settings (and the abuse view).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    admin = "admin"
    dpo = "dpo"
    agent = "agent"
    auditor = "auditor"


class Permission(StrEnum):
    view_dashboard = "view_dashboard"
    view_audit_log = "view_audit_log"
    view_personal_data = "view_personal_data"
    handle_forms = "handle_forms"
    handle_rights = "handle_rights"
    manage_register = "manage_register"
    export_data = "export_data"
    view_abuse = "view_abuse"
    manage_users = "manage_users"
    manage_settings = "manage_settings"
    manage_own_tokens = "manage_own_tokens"
    view_reports = "view_reports"
    import_analytics = "import_analytics"
    """Send tracking requests on someone else's behalf: ``cip``/``cdt`` with ``token_auth``."""


P = Permission
MATRIX: dict[Role, frozenset[Permission]] = {
    Role.auditor: frozenset(
        {P.view_dashboard, P.view_audit_log, P.view_reports, P.manage_own_tokens}
    ),
    Role.agent: frozenset(
        {
            P.view_dashboard,
            P.view_personal_data,
            P.handle_forms,
            P.handle_rights,
            P.view_reports,
            P.manage_own_tokens,
        }
    ),
    Role.dpo: frozenset(
        {
            P.view_dashboard,
            P.view_audit_log,
            P.view_personal_data,
            P.handle_forms,
            P.handle_rights,
            P.manage_register,
            P.export_data,
            P.view_abuse,
            P.view_reports,
            P.manage_own_tokens,
            P.import_analytics,
        }
    ),
    Role.admin: frozenset(
        {
            P.view_dashboard,
            P.view_audit_log,
            P.manage_users,
            P.manage_settings,
            P.view_abuse,
            P.view_reports,
            P.manage_own_tokens,
            P.import_analytics,
        }
    ),
}


def allowed(role: str, permission: Permission) -> bool:
    try:
        return permission in MATRIX[Role(role)]
    except ValueError:
        return False


def can_grant(granter: str, role: str) -> bool:
    """A token or account never gets more than its creator's own role allows."""
    return MATRIX.get(Role(role), frozenset()) <= MATRIX.get(Role(granter), frozenset())
