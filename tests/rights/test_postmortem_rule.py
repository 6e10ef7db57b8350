"""The post-mortem directive rule (legal-requirements §2.9), in plain Python."""

from __future__ import annotations

import datetime as dt

import pytest

from gardien.rights import postmortem
from gardien.rights.postmortem import (
    ALL,
    DirectiveRefused,
    HeirAction,
    Instruction,
    Requester,
)

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
CONSENT = "I consent to Gardien keeping these directives about my data after my death."
CATEGORIES = ("contact_forms", "consent_records", "audience_measurement")


def _directive(**kw: object) -> postmortem.Directive:
    args: dict[str, object] = {
        "instructions": {ALL: "erase", "contact_forms": "communicate"},
        "designee_name": "Ioana Popescu",
        "designee_contact": "ioana@example.org",
        "directive_consent": True,
        "consent_text": CONSENT,
        "now": T0,
    }
    args.update(kw)
    return postmortem.record(**args)  # type: ignore[arg-type]


def test_a_directive_needs_its_own_consent_never_the_terms_checkbox() -> None:
    with pytest.raises(DirectiveRefused, match="own explicit consent"):
        _directive(directive_consent=False, terms_accepted=True)
    directive = _directive()
    assert directive.consent_text_hash == postmortem.consent_hash(CONSENT)
    assert directive.in_force(T0)


def test_revocation_takes_effect_at_once() -> None:
    directive = postmortem.revoke(_directive(), T0 + dt.timedelta(minutes=5))
    assert directive.in_force(T0 + dt.timedelta(minutes=4))
    assert not directive.in_force(T0 + dt.timedelta(minutes=5))
    # the designee can no longer have it applied: nothing designates them any more
    with pytest.raises(DirectiveRefused, match="no directive in force"):
        postmortem.plan(
            directive,
            requester=Requester.designee,
            death_proven=True,
            categories=CATEGORIES,
            at=T0 + dt.timedelta(minutes=5),
        )


def test_a_directive_in_force_is_applied_as_directed_by_its_designee_after_proof() -> None:
    directive = _directive()
    with pytest.raises(DirectiveRefused, match="proven"):
        postmortem.plan(
            directive, requester=Requester.designee, death_proven=False, categories=(), at=T0
        )
    with pytest.raises(DirectiveRefused, match="designates a person"):
        postmortem.plan(
            directive, requester=Requester.heir, death_proven=True, categories=CATEGORIES, at=T0
        )
    plan = postmortem.plan(
        directive, requester=Requester.designee, death_proven=True, categories=CATEGORIES, at=T0
    )
    assert plan.communicate == ("contact_forms",)
    assert plan.erase == ("consent_records", "audience_measurement")
    assert not plan.heir_actions


def test_heirs_without_a_directive_get_only_close_object_update_estate_information() -> None:
    plan = postmortem.plan(
        None, requester=Requester.heir, death_proven=True, categories=CATEGORIES, at=T0
    )
    assert plan.heir_actions == {
        HeirAction.close_account,
        HeirAction.object,
        HeirAction.update,
        HeirAction.estate_information,
    }
    assert plan.erase == plan.communicate == ()
    for beyond in ("access", "portability", "communicate", "erasure"):
        with pytest.raises(DirectiveRefused, match="heirs may only"):
            postmortem.plan(
                None,
                requester=Requester.heir,
                death_proven=True,
                categories=CATEGORIES,
                asked=frozenset({beyond}),
                at=T0,
            )
    with pytest.raises(DirectiveRefused, match="no directive"):
        postmortem.plan(None, requester=Requester.designee, death_proven=True, categories=(), at=T0)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"instructions": {}}, "at least one instruction"),
        ({"instructions": {ALL: "sell"}}, "one of: retain, erase, communicate"),
        ({"designee_name": "x" * 300}, "at most"),
        ({"designee_contact": None}, "both a name and a contact"),
        (
            {"designee_name": None, "designee_contact": None, "instructions": {ALL: "communicate"}},
            "needs a designated person",
        ),
    ],
)
def test_bad_directives_are_refused_with_a_reason(change: dict[str, object], reason: str) -> None:
    with pytest.raises(DirectiveRefused, match=reason):
        _directive(**change)


def test_an_unlisted_category_falls_back_to_the_general_instruction_then_retain() -> None:
    general = _directive()
    assert general.instruction_for("connection_log") is Instruction.erase
    particular = _directive(
        instructions={"contact_forms": "erase"}, designee_name=None, designee_contact=None
    )
    assert particular.instruction_for("connection_log") is Instruction.retain
