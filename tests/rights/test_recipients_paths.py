"""Art. 19 on every path that erases, not only ``service.erase``: the erasure that follows an
upheld objection (the connection log cannot stop logging one person, so what it holds of them
goes) tells the recipients the register lists for that activity, through the outbox, with an
event in the case; a second run sends nothing twice, while a later erasure of other
activities in the same case still tells theirs."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from sqlalchemy import select

from gardien.deps import State
from gardien.forms.models import OutboxMessage
from gardien.register.schema import Register
from gardien.rights import recipients, restriction
from gardien.rights.models import RightsCase, RightsEvent
from gardien.rights.recipients import RightsRecipientNotice
from gardien.rights.service import Desk, erase
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from gardien.storage.subjects import SubjectIdentity
from tests.rights.conftest import Seeded
from tests.rights.test_notices import case_of
from tests.rights.test_recipients_evidence import AGENT, PARTNER, notices, with_contact
from tests.rights.test_restriction import verified_case

BASE = "https://gardien.example.ro"
SECURITY = "security@partner.example.com"
HEIR = "heir@example.org"


def with_contacts(register: Register) -> Register:
    """The seed register with an address for the contact form's and the connection log's
    first recipients."""
    return with_contact(register, {"contact_forms": PARTNER, "connection_log": SECURITY})


def message_to(state: State, notice: RightsRecipientNotice) -> str:
    with state.sessions() as session:
        outbox = session.get_one(OutboxMessage, notice.outbox_id)
        assert outbox.kind == "rights_recipient" and outbox.status == "pending"
        body = email.message_from_string(outbox.message or "", policy=email.policy.default)
        assert isinstance(body, EmailMessage)
        return f"{outbox.recipient}\n{body.get_content()}"


def details(state: State, reference: str, kind: str) -> list[str]:
    with state.sessions() as session:
        return list(
            session.scalars(
                select(RightsEvent.detail)
                .join(RightsCase, RightsCase.id == RightsEvent.case_id)
                .where(RightsCase.reference == reference, RightsEvent.kind == kind)
                .order_by(RightsEvent.id)
            )
        )


def rerun(
    state: State,
    desk: Desk,
    reference: str,
    activity: str,
    clock: FrozenClock,
    subject: SubjectIdentity | None = None,
) -> list[RightsRecipientNotice]:
    """The erasure's automatic notification run a second time for ``activity``."""
    with unit_of_work(state.sessions) as session:
        return recipients.automatic(
            session,
            desk,
            case_of(session, reference),
            "erasure",
            now=clock.now(),
            actor=AGENT,
            activities=[activity],
            subject=subject,
        )


def test_the_erasure_after_an_upheld_objection_tells_that_activitys_recipients_once(
    state: State, clock: FrozenClock, seeded: Seeded
) -> None:
    reference = verified_case(state, seeded)
    desk = Desk(with_contacts(state.register), state.providers, BASE)
    grounds = "The person's grounds outweigh the interest in keeping these requests."
    with unit_of_work(state.sessions) as session:
        counts = restriction.decide_objection(
            session,
            desk,
            case_of(session, reference),
            "connection_log",
            True,
            grounds,
            now=clock.now(),
            actor=AGENT,
        )
    assert counts["connection_log"] == 2  # the two requests of the period Ana gives
    made = notices(state)
    declared = next(a for a in desk.register.activities if a.id == "connection_log").recipients
    assert [(n.operation, n.activity) for n in made] == [("erasure", "connection_log")] * len(
        declared
    )
    sent = [n for n in made if n.status == "sent"]
    assert len(sent) == 1  # the one with an address; the others are open for an agent
    text = message_to(state, sent[0])
    assert text.startswith(SECURITY) and f"{BASE}{recipients.ACK_PATH}?token=" in text
    assert details(state, reference, "recipient_notified") == [
        f"erasure: {sent[0].recipient} (connection_log)"
    ]
    # a second run (and a rejected objection) sends nothing twice
    assert rerun(state, desk, reference, "connection_log", clock) == []
    with unit_of_work(state.sessions) as session:
        case = case_of(session, reference)
        restriction.decide_objection(
            session, desk, case, "connection_log", True, grounds, now=clock.now(), actor=AGENT
        )
    assert len(notices(state)) == len(declared)
    # a full erasure later in the same case tells the other activities' recipients, not the
    # connection log's a second time
    with unit_of_work(state.sessions) as session:
        erase(
            session,
            desk,
            case_of(session, reference),
            seeded.subject,
            now=clock.now(),
            actor=AGENT,
        )
    made = notices(state)
    told = [(n.activity, n.recipient) for n in made if n.operation == "erasure"]
    assert len(told) == len(set(told))
    assert [a for a, _ in told].count("connection_log") == len(declared)
    forms = [n for n in made if n.activity == "contact_forms" and n.status == "sent"]
    assert forms and message_to(state, forms[0]).startswith(PARTNER)
