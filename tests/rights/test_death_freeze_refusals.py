"""The freeze after a death (legal-requirements §2.9.6) refuses, with a 409 naming the case
that holds it, the operations on the deceased's identifiers decided in another case: approving
a rectification, restricting processing, upholding an objection. Nothing is written by the
refused decision; once the directive (here: the heirs' limited rights) is applied there, the
other case proceeds."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from gardien.rights.amendments import RightsRectification
from gardien.rights.models import RightsCase
from gardien.storage.clock import FrozenClock
from gardien.storage.restriction import OBJECTION, RESTRICTION, SubjectRestriction
from tests.rights.conftest import EMAIL, Seeded
from tests.rights.test_admin import record
from tests.rights.test_admin import reference_of as recorded_reference
from tests.rights.test_amendments import _agent_case, _death, _execute, _token, _verified_case
from tests.rights.test_portal import events
from tests.security.signin import SignedIn, csrf_of, new_client, signed_in


def _frozen(agent: SignedIn, seeded: Seeded, clock: FrozenClock) -> tuple[str, str]:
    """The deceased's own request and an heir's; the heir's death notice freezes EMAIL. Both
    references (the heir's holds the freeze)."""
    deceased = _agent_case(agent, seeded.state, clock, email=EMAIL)
    heir = _agent_case(agent, seeded.state, clock)
    assert _death(agent, heir, deceased, "heir").status_code == 303
    assert "frozen" in events(seeded.state, heir)
    return deceased, heir


def _settle(agent: SignedIn, seeded: Seeded, deceased: str, heir: str) -> None:
    """The heirs' limited rights applied at ``heir``: the freeze is lifted."""
    assert _execute(agent, heir, deceased, requester="heir", asked="object").status_code == 303
    assert "freeze_lifted" in events(seeded.state, heir)


def _post(user: SignedIn, path: str, page: str, **fields: str) -> tuple[int, str]:
    shown = user.client.get(page)
    assert shown.status_code == 200, shown.text
    answer = user.client.post(
        path, data={"csrf": csrf_of(shown.text), **fields}, follow_redirects=False
    )
    return answer.status_code, answer.text


def _other(agent: SignedIn, clock: FrozenClock, rights: list[str]) -> str:
    """Another verified request on the deceased's e-mail address."""
    other = recorded_reference(
        record(agent, clock.now().date(), email=EMAIL, phone="", rights=rights)
    )
    verified = agent.client.post(
        f"/admin/rights/{other}/verify",
        data={"csrf": agent.csrf, "basis": "letter signed, address matches"},
    )
    assert verified.status_code == 200
    return other


def _records(seeded: Seeded, reference: str, reason: str) -> int:
    with seeded.state.sessions() as session:
        case_id = session.scalar(select(RightsCase.id).where(RightsCase.reference == reference))
        rows = session.scalars(
            select(SubjectRestriction).where(
                SubjectRestriction.case_id == case_id, SubjectRestriction.reason == reason
            )
        ).all()
        return len(rows)


def test_a_restriction_in_another_case_is_refused_while_the_deceased_is_frozen(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    agent = signed_in(client, seeded.state, clock, "agent@example.org", "agent")
    deceased, heir = _frozen(agent, seeded, clock)
    other = _other(agent, clock, ["restriction"])
    page = f"/admin/rights/{other}/restriction"
    status, text = _post(agent, f"/admin/rights/{other}/restrict", page)
    assert status == 409
    assert "frozen" in text and heir in text
    assert _records(seeded, other, RESTRICTION) == 0  # nothing half-written
    assert "restricted" not in events(seeded.state, other)

    _settle(agent, seeded, deceased, heir)
    assert _post(agent, f"/admin/rights/{other}/restrict", page)[0] == 303
    assert _records(seeded, other, RESTRICTION) == 1


def test_an_upheld_objection_in_another_case_is_refused_while_the_deceased_is_frozen(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    agent = signed_in(client, seeded.state, clock, "agent@example.org", "agent")
    deceased, heir = _frozen(agent, seeded, clock)
    other = _other(agent, clock, ["objection"])
    dpo = signed_in(new_client(client), seeded.state, clock, "dpo@example.org", "dpo")
    page = f"/admin/rights/{other}/restriction"
    grounds = "The person's grounds weighed against audience measurement's interest."
    fields = {"activity": "audience_measurement", "outcome": "upheld", "grounds": grounds}
    status, text = _post(dpo, f"/admin/rights/{other}/objection", page, **fields)
    assert status == 409
    assert "frozen" in text and heir in text
    assert _records(seeded, other, OBJECTION) == 0  # nothing half-written
    with seeded.state.sessions() as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == other)).one()
        assert not case.notes  # not even the balancing note

    _settle(agent, seeded, deceased, heir)
    assert _post(dpo, f"/admin/rights/{other}/objection", page, **fields)[0] == 303
    assert _records(seeded, other, OBJECTION) == 1


def test_approving_a_rectification_in_another_case_is_refused_while_the_deceased_is_frozen(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    person = new_client(client)
    reference, status_page = _verified_case(person, seeded, clock, ["rectification"])
    sent = person.post(
        f"/rights/rectify/{reference}",
        data={
            "token": _token(status_page),
            "lang": "en",
            "field.last_name": "Popescu-Ionescu",
            "description": "my family name changed",
        },
    )
    assert sent.status_code == 200, sent.text
    agent = signed_in(client, seeded.state, clock, "agent@example.org", "agent")
    deceased, heir = _frozen(agent, seeded, clock)
    page = f"/admin/rights/{reference}/rectification"
    approve = {"decision": "approve", "reasons": ""}
    status, text = _post(agent, page, page, **approve)
    assert status == 409
    assert "frozen" in text and heir in text
    assert "rectified" not in events(seeded.state, reference)  # nothing half-written
    with seeded.state.sessions() as session:
        row = session.scalars(select(RightsRectification)).one()
        assert row.status == "proposed" and row.proposal is not None

    _settle(agent, seeded, deceased, heir)
    assert _post(agent, page, page, **approve)[0] == 303
    assert "rectified" in events(seeded.state, reference)


def test_the_case_page_offers_the_death_steps_only_on_an_open_post_mortem_request(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    agent = signed_in(client, seeded.state, clock, "agent@example.org", "agent")
    other = _other(agent, clock, ["erasure"])
    assert 'id="record-death"' not in agent.client.get(f"/admin/rights/{other}").text
    deceased = _agent_case(agent, seeded.state, clock, email=EMAIL)
    heir = _agent_case(agent, seeded.state, clock)
    shown = agent.client.get(f"/admin/rights/{heir}").text
    assert 'id="record-death"' in shown and 'id="apply-directive"' not in shown
    assert _death(agent, heir, deceased, "heir").status_code == 303
    shown = agent.client.get(f"/admin/rights/{heir}").text
    assert 'id="record-death"' not in shown and 'id="apply-directive"' in shown
    assert "The death is recorded: the deceased" in shown  # the flash, then the state
    # the heirs' actions ticked one by one, as the form sends them
    applied = agent.client.post(
        f"/admin/rights/{heir}/directive",
        data={
            "csrf": agent.csrf,
            "deceased_case": deceased,
            "requester": "heir",
            "asked": ["close_account", "object"],
        },
        follow_redirects=False,
    )
    assert applied.status_code == 303, applied.text
    shown = agent.client.get(f"/admin/rights/{heir}").text
    assert "The directive was applied and the freeze lifted." in shown
    assert 'id="apply-directive"' not in shown and 'id="record-death"' not in shown
    assert "freeze_lifted" in events(seeded.state, heir)
    # a tick beyond the heirs' four actions is refused, nothing written
    again = _agent_case(agent, seeded.state, clock, email="cousin@example.org")
    assert _death(agent, again, deceased, "heir").status_code == 303
    beyond = _execute(agent, again, deceased, requester="heir", asked="erasure")
    assert beyond.status_code == 400
    assert "directive_applied" not in events(seeded.state, again)
