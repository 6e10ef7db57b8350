"""Answer templates for the agent: the first draft of each message to the person, in the
person's language, which the agent edits before it is recorded (and sent).

A refusal always states its reasons, the right to complain to the supervisory authority (the
contact block comes from the register, with the person's own member state's authority, GDPR
Art. 77) and the right to a judicial remedy (Art. 79): legal-requirements §1.3.3 and §7.1. An
extension states its reasons and the new deadline (Art. 12(3)). ``REASONS_MARK`` shows where
the reasons the agent types go, so they cannot be left out by mistake; ``DUE_MARK`` where the
new due date goes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from babel.dates import format_date

from gardien.i18n import translator
from gardien.register.schema import Register

KINDS = ("acknowledgement", "extension", "refusal", "outcome")
REASONS_MARK = "[reasons]"
DUE_MARK = "[new due date]"
"""Where an extension's new due date goes: the agent chooses one or two further months when
recording it, and the date is written in then."""


def long_date(day: dt.date, language: str) -> str:
    return format_date(day, format="long", locale=language)


def judicial_remedy(language: str) -> str:
    """The sentence a refusal must contain (legal-requirements §1.3.3 (iii))."""
    _ = translator(language).gettext
    return str(
        _(
            "You also have the right to an effective judicial remedy before the competent "
            "court (GDPR Art. 79)."
        )
    )


def complaint_block(register: Register, language: str) -> str:
    """The supervisory authority's contact block from the register (§7.1), with Art. 77."""
    _ = translator(language).gettext
    authority = register.supervisory_authority
    name = authority.name.get(language) or authority.name.get("en") or authority.short_name
    address = authority.address
    lines = [
        str(
            _(
                "You have the right to lodge a complaint with the supervisory authority: "
                "%(name)s (%(short)s),"
            )
        )
        % {"name": name, "short": authority.short_name},
        ", ".join(p for p in (address.street, address.postcode, address.city, address.country)),
        " · ".join(
            p
            for p in (
                str(_("Tel. %(phone)s")) % {"phone": authority.phone},
                str(_("E-mail %(email)s")) % {"email": authority.email},
                authority.website,
            )
        ),
        str(_("Complaints: %(url)s")) % {"url": authority.complaint_url},
        str(
            _(
                "You may also complain to the supervisory authority of the member state where "
                "you live or work, or where the alleged infringement took place (GDPR Art. 77)."
            )
        ),
    ]
    return "\n".join(lines)


def draft(
    register: Register,
    kind: str,
    *,
    reference: str,
    rights: Sequence[str],
    language: str,
    received: dt.date,
    due: dt.date,
) -> str:
    """The first draft of a ``kind`` message (one of ``KINDS``) for a case."""
    _ = translator(language).gettext
    brand = register.operator.brand
    asked = ", ".join(rights)
    greeting = str(_("Hello,"))
    signature = str(_("The data protection team of %(brand)s")) % {"brand": brand}
    about = str(_("About your request %(reference)s (%(rights)s), received on %(received)s.")) % {
        "reference": reference,
        "rights": asked,
        "received": long_date(received, language),
    }
    if kind == "acknowledgement":
        body = [
            str(
                _(
                    "We have received your request and will answer it by %(due)s at the "
                    "latest. Please quote its reference in any message about it."
                )
            )
            % {"due": long_date(due, language)},
        ]
    elif kind == "extension":
        body = [
            str(
                _(
                    "We need more time to answer your request: as GDPR Art. 12(3) allows, we "
                    "extend the deadline to %(due)s, for the following reasons:"
                )
            )
            % {"due": DUE_MARK},
            REASONS_MARK,
        ]
    elif kind == "refusal":
        body = [
            str(_("We cannot act on your request, for the following reasons:")),
            REASONS_MARK,
            "",
            complaint_block(register, language),
            "",
            judicial_remedy(language),
        ]
    elif kind == "outcome":
        body = [_outcome_line(right, language) for right in rights]
    else:
        raise ValueError(f"no template for {kind!r}")
    return "\n".join([greeting, "", about, "", *body, "", signature])


def _outcome_line(right: str, language: str) -> str:
    _ = translator(language).gettext
    if right == "access":
        return str(
            _(
                "Your access request is answered: the copy of your personal data and the "
                "information about their use are in the package we provide."
            )
        )
    if right == "portability":
        return str(
            _(
                "The data you provided to us are in the package, as JSON and CSV files you can "
                "reuse."
            )
        )
    if right == "erasure":
        return str(
            _(
                "Your personal data have been erased; the receipt lists each store, what was "
                "erased and what had to be kept and why."
            )
        )
    return str(_("Your request is answered."))
