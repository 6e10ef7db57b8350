"""Recipients are told without an agent's gesture (Art. 19): an erasure (whatever its
channel: it always runs through ``service.erase``), an approved rectification and an applied
restriction each notify the register's recipients of the activities that held the person's
data, once per case and operation; the admin's button then refuses with its reason."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from fastapi.testclient import TestClient
from sqlalchemy import select

from gardien.deps import State
from gardien.forms.models import OutboxMessage
from gardien.rights import recipients, rectification
from gardien.rights.recipients import RightsRecipientNotice
from gardien.rights.service import Desk, erase
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from tests.forms.test_retention import submit_and_send
from tests.rights.conftest import Seeded
from tests.rights.test_notices import case_of
from tests.rights.test_recipients_evidence import AGENT, PARTNER, notices, with_contact
from tests.rights.test_rectification_scope import contested
from tests.rights.test_restriction import REF, post, verified_case
from tests.security.signin import signed_in

BASE = "https://gardien.example.ro"
NEW_EMAIL = "ana.corrected@example.org"


def test_an_erasure_tells_the_recipients_once_and_the_button_says_so(
    client: TestClient, state: State, clock: FrozenClock, seeded: Seeded
) -> None:
    REF[0] = reference = verified_case(state, seeded)
    desk = Desk(with_contact(state.register), state.providers, BASE)
    with unit_of_work(state.sessions) as session:
        case = case_of(session, reference)
        erase(session, desk, case, seeded.subject, now=clock.now(), actor=AGENT)
    made = notices(state)
    assert made and {n.operation for n in made} == {"erasure"}
    sent = [n for n in made if n.status == "sent"]
    assert [n.activity for n in sent] == ["contact_forms"]
    with state.sessions() as session:
        outbox = session.get_one(OutboxMessage, sent[0].outbox_id)
        assert outbox.recipient == PARTNER and outbox.kind == "rights_recipient"
        body = email.message_from_string(outbox.message or "", policy=email.policy.default)
        assert isinstance(body, EmailMessage)
        assert f"{BASE}{recipients.ACK_PATH}?token=" in body.get_content()
    # idempotent: the same case and operation is never notified twice
    with unit_of_work(state.sessions) as session:
        case = case_of(session, reference)
        assert (
            recipients.automatic(session, desk, case, "erasure", now=clock.now(), actor=AGENT) == []
        )
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    assert post(agent, f"/admin/rights/{reference}/recipients/notify", operation="erasure") == 409
    assert len(notices(state)) == len(made)


def test_an_erasure_asked_in_the_portal_and_done_by_an_agent_tells_the_recipients(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    from tests.rights.test_portal import ask, deliver_code, reference_of, verify

    submit_and_send(client, state, clock)  # Ana wrote through the contact form first
    asked = ask(client)
    reference = reference_of(asked)
    code, _ = deliver_code(state, clock)
    assert verify(client, reference, code).status_code == 200
    assert notices(state) == []
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    done = agent.client.post(
        f"/admin/rights/{reference}/erase",
        data={"csrf": agent.csrf, "confirm": reference},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    made = notices(state)
    assert {(n.operation, n.activity, n.status) for n in made} >= {
        ("erasure", "contact_forms", "open")
    }


def test_an_applied_restriction_tells_the_recipients_once(
    client: TestClient, state: State, clock: FrozenClock, seeded: Seeded
) -> None:
    REF[0] = reference = verified_case(state, seeded)
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    assert post(agent, f"/admin/rights/{reference}/restrict") == 303
    made = notices(state)
    # the seed register gives no address: open notifications an agent closes with a reason
    assert made and {(n.operation, n.status) for n in made} == {("restriction", "open")}
    assert "contact_forms" in {n.activity for n in made}
    assert (
        post(agent, f"/admin/rights/{reference}/recipients/notify", operation="restriction") == 409
    )
    assert len(notices(state)) == len(made)


def test_an_approved_rectification_tells_the_recipients_a_refused_one_does_not(
    state: State, clock: FrozenClock, seeded: Seeded
) -> None:
    desk = Desk(with_contact(state.register), state.providers, BASE)
    references = [contested(state, seeded, clock, ["rectification"], desk) for _ in range(2)]
    with unit_of_work(state.sessions) as session:
        case = case_of(session, references[0])
        rectification.decide(
            session, desk, case, approve=False, reasons="it was right", now=clock.now(), actor=AGENT
        )
    assert [n for n in notices(state) if n.operation == "rectification"] == []
    with unit_of_work(state.sessions) as session:
        case = case_of(session, references[1])
        rectification.decide(
            session, desk, case, approve=True, reasons=None, now=clock.now(), actor=AGENT
        )
        case_id = case.id
    made = [n for n in notices(state) if n.operation == "rectification"]
    assert made and {n.case_id for n in made} == {case_id}
    assert any(n.status == "sent" and n.activity == "contact_forms" for n in made)
    with state.sessions() as session:
        assert (
            session.scalars(
                select(RightsRecipientNotice.id).where(RightsRecipientNotice.operation == "erasure")
            ).all()
            == []
        )
