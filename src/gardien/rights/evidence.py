"""The evidence pack: what a supervisory authority asks for, as one printable HTML page.

For a case: the request, its verification, every step of the timeline, the decisions (the
encrypted notes, decrypted here: grounds of an objection, reasons a recipient was not told),
what was done (the erasure receipt, restrictions, recipients told and their
acknowledgements), the communications with their SHA-256 (recomputed from the stored text and
compared), the documents by hash, and whether the legal deadline was met. For the whole
system on a date: the policy version in force and its register's hash, the rights cases
received by then with their deadlines met or missed, the purge receipts, and the audit and
consent chain heads as they stood.

No PDF library is installed (none pure-Python in the environment's package lists), so the
pack is HTML with a print stylesheet: "Print to PDF" in any browser gives the PDF. Building a
pack is traced in the audit log by the caller (admin route or CLI).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
from collections.abc import Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gardien.consent.models import ConsentRecord
from gardien.i18n import translator
from gardien.policy.models import PolicyVersion
from gardien.retention.models import PurgeReceipt
from gardien.rights import casework, recipients
from gardien.rights.deadlines import day_start, local_day
from gardien.rights.exchange import RightsNotice
from gardien.rights.models import RightsAnswer, RightsAttachment, RightsCase, RightsEvent
from gardien.security.models import AuditEntry
from gardien.storage.restriction import SubjectRestriction

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#111;font-size:14px}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem;border-bottom:1px solid #999}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border:1px solid #bbb;padding:.25rem .4rem;text-align:left;vertical-align:top}
code{font-size:.8rem;word-break:break-all}.missed{color:#a00;font-weight:bold}
@media print{body{margin:0}h2{break-after:avoid}tr{break-inside:avoid}}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _when(value: dt.datetime | dt.date | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return value.isoformat()


def _h2(title: str) -> str:
    return f"<h2>{_e(title)}</h2>"


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _document(title: str, language: str, sections: list[str], generated: str) -> str:
    return (
        f'<!doctype html><html lang="{_e(language)}"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1><p>{_e(generated)}</p>{''.join(sections)}</body></html>"
    )


def deadline_met(case: RightsCase, today: dt.date, time_zone: str) -> bool | None:
    """``True``/``False`` once known (closed, or open past its due date); ``None`` while open
    and still in time. The day of closing is read on the controller's clock (``time_zone``),
    like the due date: a case closed at 23:30 UTC on its due date is closed the next day in
    Bucharest, too late."""
    if case.closed_at is not None:
        return local_day(case.closed_at, time_zone) <= case.due_at
    return False if today > case.due_at else None


def case_pack(
    session: Session, case: RightsCase, *, now: dt.datetime, language: str, time_zone: str
) -> str:
    _ = translator(language).gettext
    met = deadline_met(case, local_day(now, time_zone), time_zone)
    verdict = {True: _("met"), False: _("missed"), None: _("open, still in time")}[met]
    sections = [
        _h2(_("Request"))
        + _table(
            (_("Field"), _("Value")),
            [
                (_e(_("Reference")), _e(case.reference)),
                (_e(_("Rights requested")), _e(case.rights)),
                (_e(_("Channel")), _e(case.channel)),
                (_e(_("Received")), _e(_when(case.received_at))),
                (_e(_("Legal due date")), _e(_when(case.due_at))),
                (_e(_("Extension notified on")), _e(_when(case.extended_on))),
                (_e(_("Status")), _e(case.status)),
                (_e(_("Closed")), _e(_when(case.closed_at))),
                (_e(_("Outcome")), _e(case.outcome)),
                (
                    _e(_("Deadline")),
                    f'<span class="{"missed" if met is False else ""}">{_e(verdict)}</span>',
                ),
            ],
        ),
        _h2(_("Verification"))
        + _table(
            (_("Field"), _("Value")),
            [
                (_e(_("Verified by one-time code at")), _e(_when(case.verified_at))),
                (_e(_("Verified by an agent on")), _e(case.verification_basis or "—")),
            ],
        ),
        _h2(_("Timeline"))
        + _table(
            (_("When"), _("Who"), _("What"), _("Detail")),
            [
                (_e(_when(e.at)), _e(e.actor), _e(e.kind), _e(e.detail))
                for e in session.scalars(
                    select(RightsEvent)
                    .where(RightsEvent.case_id == case.id)
                    .order_by(RightsEvent.id)
                )
            ],
        ),
        _h2(_("Decisions and internal notes"))
        + _table(
            (_("When"), _("Who"), _("Text")),
            [
                (_e(n.get("at")), _e(n.get("by")), _e(n.get("text")))
                for n in casework.notes_of(case)
            ],
        ),
    ]
    answers = []
    for answer in session.scalars(
        select(RightsAnswer).where(RightsAnswer.case_id == case.id).order_by(RightsAnswer.id)
    ):
        intact = hashlib.sha256(answer.body.encode()).hexdigest() == answer.sha256
        answers.append(
            (
                _e(_when(answer.at)),
                _e(answer.kind),
                _e(answer.language),
                f"<code>{_e(answer.sha256)}</code>",
                _e(_("matches") if intact else _("DOES NOT MATCH")),
                _e(answer.body),
            )
        )
    sections.append(
        _h2(_("Communications"))
        + _table(
            (_("When"), _("Kind"), _("Language"), "SHA-256", _("Hash check"), _("Text")),
            answers,
        )
    )
    sections.append(
        _h2(_("Notices queued"))
        + _table(
            (_("When"), _("Kind"), _("Channel")),
            [
                (_e(_when(n.created_at)), _e(n.kind), _e(n.channel))
                for n in session.scalars(
                    select(RightsNotice)
                    .where(RightsNotice.case_id == case.id)
                    .order_by(RightsNotice.id)
                )
            ],
        )
    )
    sections.append(
        _h2(_("Documents"))
        + _table(
            (_("Added"), _("Type"), _("Bytes"), "SHA-256"),
            [
                (
                    _e(_when(a.added_at)),
                    _e(a.media_type),
                    _e(a.size),
                    f"<code>{_e(a.sha256)}</code>",
                )
                for a in session.scalars(
                    select(RightsAttachment)
                    .where(RightsAttachment.case_id == case.id)
                    .order_by(RightsAttachment.id)
                )
            ],
        )
    )
    sections.append(
        _h2(_("Restrictions and objections"))
        + _table(
            (_("Reason"), _("Scope"), _("Identifier"), _("From"), _("Lifted")),
            [
                (
                    _e(r.reason),
                    _e(r.activity or _("every activity")),
                    _e(r.kind),
                    _e(_when(r.created_at)),
                    _e(_when(r.lifted_at)),
                )
                for r in session.scalars(
                    select(SubjectRestriction)
                    .where(SubjectRestriction.case_id == case.id)
                    .order_by(SubjectRestriction.id)
                )
            ],
        )
    )
    sections.append(
        _h2(_("Recipients told (Art. 19)"))
        + _table(
            (_("Operation"), _("Activity"), _("Recipient"), _("Status"), _("Acknowledged")),
            [
                (
                    _e(n.operation),
                    _e(n.activity),
                    _e(n.recipient),
                    _e(n.status),
                    _e(_when(n.acknowledged_at)),
                )
                for n in recipients.of_case(session, case)
            ],
        )
    )
    receipt = json.dumps(json.loads(case.receipt), indent=2) if case.receipt else "—"
    sections.append(_h2(_("Erasure receipt")) + f"<pre>{_e(receipt)}</pre>")
    return _document(
        _("Evidence pack of case %(reference)s") % {"reference": case.reference},
        language,
        sections,
        _("Generated %(when)s") % {"when": _when(now)},
    )


def system_pack(
    session: Session, on: dt.date, *, now: dt.datetime, language: str, time_zone: str
) -> str:
    """The state of the system at the end of ``on`` on the controller's clock (``time_zone``,
    the register's ``rights.time_zone``)."""
    _ = translator(language).gettext
    end = day_start(on + dt.timedelta(days=1), time_zone)
    policy = session.scalar(
        select(PolicyVersion)
        .where(PolicyVersion.effective_at < end)
        .order_by(PolicyVersion.effective_at.desc(), PolicyVersion.number.desc())
        .limit(1)
    )
    register_hash = (
        hashlib.sha256(policy.register_snapshot.encode()).hexdigest() if policy else None
    )
    sections = [
        _h2(_("Register and policy in force"))
        + _table(
            (_("Field"), _("Value")),
            [
                (_e(_("Policy version")), _e(policy.number if policy else "—")),
                (_e(_("In force since")), _e(_when(policy.effective_at) if policy else "—")),
                (
                    _e(_("Policy content SHA-256")),
                    f"<code>{_e(policy and policy.content_hash)}</code>",
                ),
                (_e(_("Register snapshot SHA-256")), f"<code>{_e(register_hash)}</code>"),
            ],
        )
    ]
    rows = []
    counts = {True: 0, False: 0, None: 0}
    for case in session.scalars(
        select(RightsCase).where(RightsCase.received_at < end).order_by(RightsCase.received_at)
    ):
        closed = case.closed_at if case.closed_at and case.closed_at < end else None
        if closed is not None:
            met: bool | None = local_day(closed, time_zone) <= case.due_at
        else:
            met = False if on > case.due_at else None
        counts[met] += 1
        verdict = {True: _("met"), False: _("missed"), None: _("open, still in time")}[met]
        rows.append(
            (
                _e(case.reference),
                _e(case.rights),
                _e(_when(case.received_at)),
                _e(_when(case.due_at)),
                _e(_when(closed)),
                f'<span class="{"missed" if met is False else ""}">{_e(verdict)}</span>',
            )
        )
    summary = _("%(met)d met, %(missed)d missed, %(open)d open in time") % {
        "met": counts[True],
        "missed": counts[False],
        "open": counts[None],
    }
    sections.append(
        _h2(_("Rights cases"))
        + f"<p>{_e(summary)}</p>"
        + _table(
            (_("Reference"), _("Rights"), _("Received"), _("Due"), _("Closed"), _("Deadline")),
            rows,
        )
    )
    sections.append(
        _h2(_("Purge receipts"))
        + _table(
            (
                _("Finished"),
                _("Activity"),
                _("Store"),
                _("Action"),
                _("Cutoff"),
                _("Rows"),
                _("Status"),
            ),
            [
                (
                    _e(_when(r.finished_at)),
                    _e(r.activity),
                    _e(r.store),
                    _e(r.action),
                    _e(_when(r.cutoff)),
                    _e(r.rows_affected),
                    _e(r.status),
                )
                for r in session.scalars(
                    select(PurgeReceipt)
                    .where(PurgeReceipt.finished_at < end)
                    .order_by(PurgeReceipt.finished_at)
                )
            ],
        )
    )
    audit = session.scalar(
        select(AuditEntry).where(AuditEntry.at < end).order_by(AuditEntry.seq.desc()).limit(1)
    )
    consent = session.scalar(
        select(ConsentRecord)
        .where(ConsentRecord.occurred_at < end)
        .order_by(ConsentRecord.seq.desc())
        .limit(1)
    )
    audit_count = session.scalar(select(func.count()).where(AuditEntry.at < end))
    sections.append(
        _h2(_("Chain heads"))
        + _table(
            (_("Chain"), _("Entries"), _("Last sequence"), _("Last hash")),
            [
                (
                    _e(_("Audit log")),
                    _e(audit_count),
                    _e(audit.seq if audit else "—"),
                    f"<code>{_e(audit.hash if audit else '—')}</code>",
                ),
                (
                    _e(_("Consent records")),
                    "",
                    _e(consent.seq if consent else "—"),
                    f"<code>{_e(consent.hash if consent else '—')}</code>",
                ),
            ],
        )
    )
    return _document(
        _("Evidence pack of the system on %(date)s") % {"date": on.isoformat()},
        language,
        sections,
        _("Generated %(when)s") % {"when": _when(now)},
    )
