"""Rectification offers only the fields of the activities that hold the person's data (found by
the providers for the case's identity): a person Gardien holds no form message of is offered
no form field, and a proposal for one is refused with the reason, nothing stored. Contesting
accuracy restricts the data until the proposal is decided (Art. 18(1)(a)), then the person is
told and the restriction lifted, unless they asked for a restriction themselves."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gardien.deps import State
from gardien.rights import rectification
from gardien.rights.amendments import RightsRectification
from gardien.rights.models import RightsAnswer
from gardien.rights.rectification import CONTESTED
from gardien.rights.service import Desk, open_case, timeline
from gardien.security.audit import Actor
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from gardien.storage.restriction import is_restricted
from tests.rights.conftest import EMAIL, Seeded
from tests.rights.test_amendments import _token, _verified_case
from tests.rights.test_notices import case_of
from tests.rights.test_portal import deliver_code, reference_of, status_link, verify
from tests.security.signin import new_client

STRANGER = "nobody.here@example.org"
AGENT = Actor.system("test")


def test_only_the_fields_of_activities_holding_the_persons_data_are_offered(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    person = new_client(client)
    asked = person.post(
        "/rights", data={"rights": ["rectification"], "email": STRANGER, "lang": "en"}
    )
    assert asked.status_code == 200
    reference, status = reference_of(asked), status_link(asked)
    code, _ = deliver_code(seeded.state, clock)
    assert verify(person, reference, code).status_code == 200
    token = _token(status)
    form = person.get(f"/rights/rectify/{reference}?token={token}")
    assert form.status_code == 200
    assert re.findall(r'name="field\.', form.text) == []  # no form message of theirs
    refused = person.post(
        f"/rights/rectify/{reference}",
        data={"token": token, "field.email": "new@example.org"},
    )
    assert refused.status_code == 422 and "email is not a field we hold" in refused.text
    with seeded.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RightsRectification)) == 0
    # the seeded person, whose contact message is held, is offered the form's fields
    other = new_client(client)
    mine, my_status = _verified_case(other, seeded, clock, ["rectification"])
    offered = other.get(f"/rights/rectify/{mine}?token={_token(my_status)}")
    assert 'name="field.email"' in offered.text and 'name="field.last_name"' in offered.text


def contested(
    state: State, seeded: Seeded, clock: FrozenClock, rights: list[str], desk: Desk | None = None
) -> str:
    """A verified case of ``rights`` where the person proposed a correction (not decided)."""
    desk = desk or Desk(state.register, state.providers)
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            desk,
            seeded.subject,
            rights,
            channel="email",
            now=clock.now(),
            actor=AGENT,
            language="fr",
        )
        case.verified_at = clock.now()
        rectification.propose(
            session, desk, case, {"last_name": "Popescu-Ionescu"}, "", now=clock.now(), actor=AGENT
        )
        return case.reference


def _decide(state: State, clock: FrozenClock, reference: str, approve: bool) -> list[str]:
    desk = Desk(state.register, state.providers)
    with unit_of_work(state.sessions) as session:
        case = case_of(session, reference)
        rectification.decide(
            session,
            desk,
            case,
            approve=approve,
            reasons=None if approve else "the name was right",
            now=clock.now(),
            actor=AGENT,
        )
        return [e.kind for e in timeline(session, case)]


def test_contesting_accuracy_restricts_until_the_rectification_is_decided(
    state: State, seeded: Seeded, clock: FrozenClock
) -> None:
    for approve in (True, False):
        reference = contested(state, seeded, clock, ["rectification"])
        with state.sessions() as session:
            assert is_restricted(session, "contact_forms", email=EMAIL)
        kinds = _decide(state, clock, reference, approve)
        with state.sessions() as session:
            assert not is_restricted(session, "contact_forms", email=EMAIL)
            notice = session.scalars(
                select(RightsAnswer).where(RightsAnswer.kind == "lift_notice")
            ).all()[-1]
            assert "18(1)(a)" in (notice.body or "")  # in French
        # told (Art. 18(3)) before it is lifted, after it was restricted for the contest
        order = [
            k
            for k in kinds
            if k in ("restricted", CONTESTED, "lift_announced", "restriction_lifted")
        ]
        assert order == ["restricted", CONTESTED, "lift_announced", "restriction_lifted"]


def test_a_restriction_the_person_asked_for_outlives_the_decision(
    state: State, seeded: Seeded, clock: FrozenClock
) -> None:
    reference = contested(state, seeded, clock, ["rectification", "restriction"])
    kinds = _decide(state, clock, reference, True)
    assert "restriction_lifted" not in kinds
    with state.sessions() as session:
        assert is_restricted(session, "contact_forms", email=EMAIL)
