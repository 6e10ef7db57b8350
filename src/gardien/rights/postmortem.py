"""Post-mortem directives (French Loi Informatique et Libertés Art. 84-86, legal-requirements
§2.9): the rule, in plain Python, with no storage and no I/O.

A person may leave *particular directives* with us: for all their data or for some
categories, an instruction per category (retain, erase, communicate) and, optionally, a person
designated to carry them out. The directive needs its **own** consent, given by a dedicated
action: accepting terms and conditions never creates one. It is modifiable and revocable at
any time, and a revocation takes effect at once.

After death (proven), the designated person (or, failing one, the heirs) asks us to apply the
directive. Without a directive in force, the heirs may only have the death taken into account
(close the account, object to further processing, update the data) and obtain the
information needed to settle the estate (§2.9.4).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from gardien.errors import N_

ALL = "all"
"""The scope key of a general instruction covering every category of data."""
MAX_TEXT = 254


class Instruction(StrEnum):
    retain = "retain"
    erase = "erase"
    communicate = "communicate"


class Requester(StrEnum):
    designee = "designee"
    heir = "heir"


class HeirAction(StrEnum):
    """What heirs may ask without a directive (LIL Art. 85, II; legal-requirements §2.9.4)."""

    close_account = "close_account"
    object = "object"
    update = "update"
    estate_information = "estate_information"


HEIR_ACTIONS = frozenset(HeirAction)


class DirectiveRefused(ValueError):
    """A directive (or a request under it) that the law does not allow; the message is a
    reason to show, never a personal value."""


@dataclass(frozen=True, slots=True)
class Directive:
    instructions: Mapping[str, Instruction]
    """Category (or ``ALL``) → instruction."""
    designee_name: str | None
    designee_contact: str | None
    consent_text_hash: str
    """SHA-256 of the dedicated consent sentence the person ticked (never the terms')."""
    consented_at: dt.datetime
    revoked_at: dt.datetime | None = None

    def in_force(self, at: dt.datetime) -> bool:
        return self.consented_at <= at and (self.revoked_at is None or at < self.revoked_at)

    def instruction_for(self, category: str) -> Instruction:
        """The instruction for ``category``: its own, else the general one, else retain."""
        return self.instructions.get(category) or self.instructions.get(ALL) or Instruction.retain


def consent_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def record(
    *,
    instructions: Mapping[str, str],
    designee_name: str | None,
    designee_contact: str | None,
    directive_consent: bool,
    consent_text: str,
    terms_accepted: bool = False,
    now: dt.datetime,
) -> Directive:
    """A directive from what the person sent through the dedicated action.

    ``directive_consent`` is the directive's own checkbox; ``terms_accepted`` (any acceptance
    of general terms) is deliberately not enough (LIL Art. 85, I: the consent must be
    specific)."""
    if not directive_consent:
        raise DirectiveRefused(
            N_(
                "a post-mortem directive needs its own explicit consent (the dedicated checkbox); "
                "accepting terms and conditions is not enough"
            )
        )
    del terms_accepted  # named so callers can pass it and see it changes nothing
    if not instructions:
        raise DirectiveRefused(N_("a directive needs at least one instruction"))
    parsed: dict[str, Instruction] = {}
    for category, value in instructions.items():
        if not category or len(category) > 64:
            raise DirectiveRefused(N_("a category name is empty or too long"))
        try:
            parsed[category] = Instruction(value)
        except ValueError:
            raise DirectiveRefused(
                N_("an instruction must be one of: retain, erase, communicate")
            ) from None
    for text in (designee_name, designee_contact):
        if text is not None and (len(text) > MAX_TEXT or not text.isprintable()):
            raise DirectiveRefused(N_("the designated person's details: at most 254 characters"))
    if bool(designee_name) != bool(designee_contact):
        raise DirectiveRefused(N_("a designated person needs both a name and a contact"))
    if Instruction.communicate in parsed.values() and not designee_contact:
        raise DirectiveRefused(N_("communicating data after death needs a designated person"))
    return Directive(
        instructions=parsed,
        designee_name=designee_name or None,
        designee_contact=designee_contact or None,
        consent_text_hash=consent_hash(consent_text),
        consented_at=now,
    )


def revoke(directive: Directive, now: dt.datetime) -> Directive:
    """The directive, revoked from ``now`` on (at once)."""
    if directive.revoked_at is not None:
        return directive
    return dataclasses.replace(directive, revoked_at=now)


@dataclass(frozen=True, slots=True)
class Plan:
    """What may be done on a request after death."""

    erase: tuple[str, ...] = ()
    communicate: tuple[str, ...] = ()
    retain: tuple[str, ...] = ()
    heir_actions: frozenset[HeirAction] = frozenset()
    reason: str = ""


def plan(
    directive: Directive | None,
    *,
    requester: Requester,
    death_proven: bool,
    categories: tuple[str, ...],
    asked: frozenset[str] = frozenset(),
    at: dt.datetime,
) -> Plan:
    """What a request after death may lead to (legal-requirements §2.9.3-2.9.6).

    - Nothing before the death is proven.
    - A directive in force is applied as directed, at the request of its designee, or of the
      heirs when it names none.
    - Otherwise heirs are limited to ``HEIR_ACTIONS``: ``asked`` beyond them is refused.
    """
    if not death_proven:
        raise DirectiveRefused(N_("the death must be proven (a death certificate) first"))
    if directive is not None and directive.in_force(at):
        if requester is Requester.heir and directive.designee_contact:
            raise DirectiveRefused(
                N_("the directive designates a person to carry it out: the request is theirs")
            )
        erase: list[str] = []
        communicate: list[str] = []
        retain: list[str] = []
        for category in categories:
            {
                Instruction.erase: erase,
                Instruction.communicate: communicate,
                Instruction.retain: retain,
            }[directive.instruction_for(category)].append(category)
        return Plan(
            erase=tuple(erase),
            communicate=tuple(communicate),
            retain=tuple(retain),
            reason="applied as the directive says",
        )
    if requester is Requester.designee:
        raise DirectiveRefused(N_("there is no directive in force designating anyone"))
    beyond = sorted(set(asked) - {a.value for a in HEIR_ACTIONS})
    if beyond:
        raise DirectiveRefused(
            N_(
                "without a directive, heirs may only close the account, object to further "
                "processing, update the data or obtain the information needed for the estate"
            )
        )
    return Plan(
        heir_actions=frozenset(HeirAction(a) for a in asked) if asked else HEIR_ACTIONS,
        reason="no directive: the heirs' limited rights (LIL Art. 85, II)",
    )
