"""The freeze after a death (legal-requirements §2.9.6: receive notice, verify, freeze,
execute, confirm): recording the death certificate at the designated person's request places
a ``deceased`` restriction on the deceased's identifiers, honoured by every domain (their
contact message is stored but held) and refusing anyone else's request on them with the
reason; applying the directive lifts it in the same transaction, with each step in the case's
timeline and the evidence pack."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from gardien.forms.jobs import send_due
from gardien.rights.models import RightsCase
from gardien.storage.clock import FrozenClock
from gardien.storage.restriction import DECEASED, SubjectRestriction, is_restricted
from tests.rights.conftest import EMAIL, Seeded
from tests.rights.test_admin import record
from tests.rights.test_admin import reference_of as recorded_reference
from tests.rights.test_amendments import (
    _agent_case,
    _death,
    _execute,
    _with_directive,
)
from tests.rights.test_portal import events
from tests.rights.test_restriction import statuses, submit
from tests.security.signin import new_client, signed_in


def test_a_recorded_death_freezes_the_deceased_until_the_directive_is_applied(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    state = seeded.state
    person = new_client(client)
    reference = _with_directive(person, seeded, clock, "ioana@example.org")
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    designee = _agent_case(agent, state, clock)
    # someone else asks to erase the same person's data
    other = recorded_reference(
        record(agent, clock.now().date(), email=EMAIL, phone="", rights=["erasure"])
    )
    verified = agent.client.post(
        f"/admin/rights/{other}/verify",
        data={"csrf": agent.csrf, "basis": "letter signed, address matches"},
    )
    assert verified.status_code == 200
    with state.sessions() as session:
        assert not is_restricted(session, "contact_forms", email=EMAIL)

    # receive the notice, verify the certificate, freeze
    assert _death(agent, designee, reference).status_code == 303
    with state.sessions() as session:
        held_by = session.scalar(select(RightsCase.id).where(RightsCase.reference == designee))
        rows = session.scalars(
            select(SubjectRestriction).where(SubjectRestriction.reason == DECEASED)
        ).all()
        assert rows and {r.case_id for r in rows} == {held_by}
        assert all(r.lifted_at is None and r.activity is None for r in rows)
        assert is_restricted(session, "contact_forms", email=EMAIL.upper())
        assert not is_restricted(session, "contact_forms", email="ioana@example.org")
    kinds = events(state, designee)
    assert kinds.index("death_recorded") < kinds.index("frozen")
    # every domain honours it: the deceased's contact message is stored but held
    message = submit(client, clock, EMAIL, "021 123 4567")
    send_due(state, now=clock.now())
    assert statuses(state, message) == ["held", "held"]
    # another requester's erasure on those identifiers is refused, with the reason
    erase = {"csrf": agent.csrf, "confirm": other}
    refused = agent.client.post(f"/admin/rights/{other}/erase", data=erase, follow_redirects=False)
    assert refused.status_code == 409
    assert "frozen" in refused.text and designee in refused.text
    assert "erased" not in events(state, other)  # nothing half-done
    dpo = signed_in(new_client(client), state, clock, "dpo@example.org", "dpo")
    evidence = dpo.client.get(f"/admin/rights/{designee}/evidence")
    assert evidence.status_code == 200 and DECEASED in evidence.text

    # execute: the directive is applied, the freeze lifted in the same request
    assert _execute(agent, designee, reference).status_code == 303
    with state.sessions() as session:
        rows = session.scalars(
            select(SubjectRestriction).where(SubjectRestriction.reason == DECEASED)
        ).all()
        assert rows and all(r.lifted_at is not None for r in rows)
        assert not is_restricted(session, "contact_forms", email=EMAIL)
    kinds = events(state, designee)
    assert kinds.index("frozen") < kinds.index("directive_applied") < kinds.index("freeze_lifted")
    # settled: the other request now proceeds (the directive already erased the data)
    done = agent.client.post(f"/admin/rights/{other}/erase", data=erase, follow_redirects=False)
    assert done.status_code == 303, done.text
    assert "erased" in events(state, other)
