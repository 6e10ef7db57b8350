"""Art. 19 on the erasure a post-mortem directive orders: the recipients the register lists for
the erased activities are told through the outbox, of the deceased's identifiers (not the
requester's), with an event in the requester's case; a second run sends nothing twice."""

from __future__ import annotations

from sqlalchemy.orm import Session

from gardien.deps import State
from gardien.rights import directives
from gardien.rights.models import RightsCase
from gardien.rights.postmortem import Requester
from gardien.rights.service import Desk, open_case
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from gardien.storage.subjects import SubjectIdentity
from tests.rights.conftest import EMAIL, Seeded
from tests.rights.test_recipients_evidence import AGENT, PARTNER, notices
from tests.rights.test_recipients_paths import BASE, details, message_to, rerun, with_contacts

HEIR = "heir@example.org"


def opened(
    session: Session, desk: Desk, email: str, channel: str, clock: FrozenClock
) -> RightsCase:
    """A post-mortem request under ``email``, verified."""
    case = open_case(
        session,
        desk,
        SubjectIdentity(email=email),
        ["post_mortem"],
        channel=channel,
        now=clock.now(),
        actor=AGENT,
        language="en",
    )
    case.verified_at = clock.now()
    return case


def test_a_post_mortem_directive_erasure_tells_the_recipients_of_the_deceased_data_once(
    state: State, clock: FrozenClock, seeded: Seeded
) -> None:
    desk = Desk(with_contacts(state.register), state.providers, BASE)
    with unit_of_work(state.sessions) as session:
        own = opened(session, desk, EMAIL, "portal", clock)
        row = directives.save(
            session,
            desk,
            own,
            {"instruction.contact_forms": "erase", "directive_consent": "yes"},
            consent_text=directives.CONSENT_TEXT,
            now=clock.now(),
            actor=AGENT,
        )
        heir = opened(session, desk, HEIR, "post", clock)
        reference = heir.reference
        directives.record_death(session, row, b"death certificate", now=clock.now(), actor=AGENT)
        done = directives.execute(
            session,
            desk,
            row,
            heir,
            deceased=SubjectIdentity(email=EMAIL),
            requester=Requester.heir,
            now=clock.now(),
            actor=AGENT,
        )
        heir_id = heir.id
    assert done.erased["contact_forms"] == 1
    made = notices(state)
    assert {(n.operation, n.activity) for n in made} == {("erasure", "contact_forms")}
    assert {n.case_id for n in made} == {heir_id}
    sent = [n for n in made if n.status == "sent"]
    assert len(sent) == 1
    text = message_to(state, sent[0])
    # the recipient is told who the erased data were about: the deceased, not the heir
    assert text.startswith(PARTNER) and f"email: {EMAIL}" in text and HEIR not in text
    assert f"erasure: {sent[0].recipient} (contact_forms)" in details(
        state, reference, "recipient_notified"
    )
    # a second run sends nothing twice
    subject = SubjectIdentity(email=EMAIL)
    assert rerun(state, desk, reference, "contact_forms", clock, subject) == []
    assert len(notices(state)) == len(made)
