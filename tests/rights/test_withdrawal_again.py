"""A withdrawal of consent (Art. 7(3)) withdraws the consents given before it, not every consent
the person may give afterwards: a new banner decision and a new contact form given on consent
after the withdrawal are honoured again, while what was given before stays withdrawn; a
second withdrawal withdraws the new ones too."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy import select

from gardien.consent.models import ConsentRecord
from gardien.consent.records import verify_chain
from gardien.consent.service import current_revision
from gardien.deps import State
from gardien.forms.models import FormSubmission
from gardien.rights import withdrawal
from gardien.rights.service import Desk, open_case
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from gardien.storage.subjects import SubjectIdentity
from tests.consent.test_records import decision
from tests.rights.conftest import EMAIL, Seeded
from tests.rights.test_restriction import (
    DPO,
    PAGE,
    hits_of,
    statuses,
    submit,
    tracker,  # noqa: F401 (a fixture)
)

PHONE = "0721 234 567"


def hit(visitor: TestClient, state: State, consent_id: str, decided: dt.datetime) -> int:
    """One page view under a consent cookie stating a decision made at ``decided``; how many
    hits are stored after it."""
    revision = current_revision(state).number
    visitor.cookies.set(
        "gardien_consent",
        f"1:{consent_id}:{revision}:{int(decided.timestamp())}:audience_measurement=1",
    )
    params: dict[str, str | int] = {"idsite": 1, "rec": 1, "url": PAGE, "send_image": 0}
    assert visitor.get("/matomo.php", params=params).status_code == 204
    return hits_of(state)


def consents_again(client: TestClient, consent_id: str) -> None:
    """The person accepts audience measurement in the banner (a new record in the chain)."""
    assert (
        client.post(
            "/api/consent/records", json=decision(client, consent_id=consent_id)
        ).status_code
        == 201
    )


def withdraw(state: State, consent_id: str, clock: FrozenClock) -> dict[str, int]:
    desk = Desk(state.register, state.providers)
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            desk,
            SubjectIdentity(email=EMAIL, consent_id=consent_id),
            [withdrawal.RIGHT],
            channel="email",
            now=clock.now(),
            actor=DPO,
            language="en",
        )
        case.verified_at = clock.now()
        return withdrawal.withdraw(session, desk, case, now=clock.now(), actor=DPO)


def submission_status(state: State, public_id: str) -> str:
    with state.sessions() as session:
        return session.scalars(
            select(FormSubmission.status).where(FormSubmission.public_id == public_id)
        ).one()


def last_action(state: State, consent_id: str) -> str:
    """The action of the chain's last record, which must be the person's."""
    with state.sessions() as session:
        last = session.scalars(
            select(ConsentRecord).order_by(ConsentRecord.seq.desc()).limit(1)
        ).one()
        assert last.consent_id == consent_id
        return str(last.action)


def test_a_consent_given_after_a_withdrawal_is_honoured_and_the_earlier_ones_stay_withdrawn(
    client: TestClient,
    tracker: TestClient,  # noqa: F811
    state: State,
    clock: FrozenClock,
    seeded: Seeded,
) -> None:
    consent_id = seeded.consent_id
    consents_again(client, consent_id)
    before = clock.now() - dt.timedelta(minutes=1)
    earlier_form = submit(client, clock, EMAIL, PHONE)
    stored = hit(tracker, state, consent_id, before)

    first = clock.now()
    counts = withdraw(state, consent_id, clock)
    assert counts["audience_measurement"] == 1 and counts["contact_forms"] >= 1
    assert counts["consent_records"] >= 1 and last_action(state, consent_id) == "withdraw"
    assert submission_status(state, earlier_form) == "withdrawn"
    assert hit(tracker, state, consent_id, before) == stored  # the old cookie: not stored

    # an hour later, Ana accepts audience measurement again and writes through the form
    clock.advance(dt.timedelta(hours=1))
    consents_again(client, consent_id)
    assert last_action(state, consent_id) != "withdraw"
    again = clock.now() - dt.timedelta(seconds=5)
    assert again > first
    assert hit(tracker, state, consent_id, again) == stored + 1  # honoured again
    assert hit(tracker, state, consent_id, before) == stored + 1  # the withdrawn one: not
    later_form = submit(client, clock, EMAIL, "0721 234 568")  # a new message
    assert submission_status(state, later_form) == "new"
    assert "withdrawn" not in statuses(state, later_form)  # its e-mails go
    assert submission_status(state, earlier_form) == "withdrawn"
    assert set(statuses(state, earlier_form)) <= {"withdrawn", "sent"}

    # withdrawing again withdraws what was given since, too
    clock.advance(dt.timedelta(hours=1))
    counts = withdraw(state, consent_id, clock)
    assert counts["audience_measurement"] == 1 and counts["contact_forms"] == 1
    assert hit(tracker, state, consent_id, again) == stored + 1
    assert submission_status(state, later_form) == "withdrawn"
    with state.sessions() as session:
        assert verify_chain(session) is None
