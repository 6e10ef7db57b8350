"""Rectification offers only the fields of the activities that hold the person's data (found by
the providers for the case's identity): a person Gardien holds no form message of is offered
no form field, and a proposal for one is refused with the reason, nothing stored."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gardien.rights.amendments import RightsRectification
from gardien.storage.clock import FrozenClock
from tests.rights.conftest import Seeded
from tests.rights.test_amendments import _token, _verified_case
from tests.rights.test_portal import deliver_code, reference_of, status_link, verify
from tests.security.signin import new_client

STRANGER = "nobody.here@example.org"


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
