"""Restriction (Art. 18) and objection (Art. 21) observed in each domain's behaviour: a
restricted person's new contact message is stored but not e-mailed and stays out of the
export, their audience hits are not stored, the person is told before it is lifted (and
lifting releases the held messages); an objection is weighed by the DPO, only for an activity
based on legitimate interests, and an upheld one stops that activity (analytics: further hits;
connection log: what it holds of the person is erased, since it keeps securing the service)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gardien.analytics.models import AnalyticsHit
from gardien.app import create_app
from gardien.config import Settings
from gardien.consent.service import current_revision
from gardien.deps import State
from gardien.forms.jobs import send_due
from gardien.forms.models import FormSubmission, OutboxMessage
from gardien.rights.models import RightsCase, RightsEvent
from gardien.rights.service import Desk, open_case
from gardien.security.audit import Actor
from gardien.security.connection_log import ConnectionLogEntry
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from gardien.storage.restriction import is_restricted
from tests.forms.test_submit import GOOD, stamped
from tests.rights.conftest import EMAIL, IP, Seeded
from tests.rights.test_portal import ask, deliver_code, reference_of, status_link, verify
from tests.security.signin import SignedIn, csrf_of, signed_in

DPO = Actor.system("test")
PAGE = "https://www.cegedim-rx.ro/produse"


@pytest.fixture
def tracker(settings: Settings, state: State) -> Iterator[TestClient]:
    """A browser seen from a real address, as the tracker's requests are."""
    app = create_app(settings, state=state, scheduler=False)
    with TestClient(app, client=("192.0.2.44", 50123), headers={"user-agent": "Mozilla/5.0"}) as c:
        yield c


def verified_case(state: State, seeded: Seeded) -> str:
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            Desk(state.register, state.providers),
            seeded.subject,
            ["access"],
            channel="email",
            now=state.clock.now(),
            actor=DPO,
            language="en",
        )
        case.verified_at = state.clock.now()
        return case.reference


def post(user: SignedIn, path: str, **fields: str) -> int:
    page = user.client.get(f"/admin/rights/{REF[0]}/restriction")
    assert page.status_code == 200, page.text
    answer = user.client.post(
        path, data={"csrf": csrf_of(page.text), **fields}, follow_redirects=False
    )
    return answer.status_code


REF: list[str] = [""]


def hits_of(state: State) -> int:
    with state.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(AnalyticsHit)) or 0)


def track(tracker: TestClient, state: State, clock: FrozenClock, consent_id: str) -> None:
    revision = current_revision(state).number
    decided = int(clock.now().timestamp()) - 60
    tracker.cookies.set(
        "gardien_consent", f"1:{consent_id}:{revision}:{decided}:audience_measurement=1"
    )
    params: dict[str, str | int] = {
        "idsite": 1,
        "rec": 1,
        "url": PAGE,
        "action_name": "Produse",
        "send_image": 0,
    }
    assert tracker.get("/matomo.php", params=params).status_code == 204


def submit(client: TestClient, clock: FrozenClock, email: str, phone: str) -> str:
    fields = {"email": email, "phone": phone, "message": f"A new question from {email}."}
    answer = client.post("/api/forms/contact", json={**GOOD, **stamped(client, clock), **fields})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def statuses(state: State, public_id: str) -> list[str]:
    with state.sessions() as session:
        return sorted(
            session.scalars(
                select(OutboxMessage.status)
                .join(FormSubmission, FormSubmission.id == OutboxMessage.submission_id)
                .where(FormSubmission.public_id == public_id)
            )
        )


def kinds(state: State, reference: str) -> list[str]:
    with state.sessions() as session:
        return list(
            session.scalars(
                select(RightsEvent.kind)
                .join(RightsCase, RightsCase.id == RightsEvent.case_id)
                .where(RightsCase.reference == reference)
                .order_by(RightsEvent.id)
            )
        )


def test_a_restriction_holds_mail_leaves_exports_stops_hits_and_is_lifted_after_notice(
    client: TestClient,
    tracker: TestClient,
    state: State,
    clock: FrozenClock,
    seeded: Seeded,
) -> None:
    REF[0] = reference = verified_case(state, seeded)
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    base = f"/admin/rights/{reference}"
    assert f'href="{base}/restriction"' in agent.client.get(base).text
    track(tracker, state, clock, seeded.consent_id)
    before = hits_of(state)
    assert before >= 1

    assert post(agent, f"{base}/restrict") == 303
    assert post(agent, f"{base}/restrict") == 409  # already restricted
    assert "restricted" in kinds(state, reference)
    with state.sessions() as session:
        assert is_restricted(session, "contact_forms", email=EMAIL.upper())
        assert not is_restricted(session, "contact_forms", email="someone.else@example.org")

    # Forms: stored, not e-mailed (held, visibly), left out of the export.
    mine = submit(client, clock, EMAIL, "021 123 4567")
    other = submit(client, clock, "third.person@example.org", "021 999 8888")
    dpo = signed_in(client, state, clock, "dpo@example.org", "dpo")
    unsent = dpo.client.get("/admin/inbox-export").text  # before the sender saw them
    assert "third.person@example.org" in unsent and EMAIL not in unsent
    report = send_due(state, now=clock.now())
    assert (report.claimed, report.sent) == (2, 2)  # only the other person's two messages
    assert statuses(state, mine) == ["held", "held"]
    assert statuses(state, other) == ["sent", "sent"]
    inbox = agent.client.get("/admin/inbox").text
    assert "(restricted)" in inbox
    exported = dpo.client.get("/admin/inbox-export").text
    assert "third.person@example.org" in exported and EMAIL not in exported

    # Analytics: answered alike, not stored.
    track(tracker, state, clock, seeded.consent_id)
    assert hits_of(state) == before

    # Lifting needs the notice first (Art. 18(3)).
    assert post(agent, f"{base}/restriction/lift") == 409
    notice = "Your restriction will be lifted on 1 April."
    assert post(agent, f"{base}/restriction/announce", message=notice) == 303
    assert post(agent, f"{base}/restriction/lift") == 303
    assert kinds(state, reference)[-3:] == ["notice_queued", "lift_announced", "restriction_lifted"]
    with state.sessions() as session:
        assert not is_restricted(session, "contact_forms", email=EMAIL)
    assert statuses(state, mine) == ["pending", "pending"]
    report = send_due(state, now=clock.now())
    assert statuses(state, mine) == ["sent", "sent"]
    track(tracker, state, clock, seeded.consent_id)
    assert hits_of(state) == before + 1
    assert post(agent, f"{base}/restriction/lift") == 409  # nothing left to lift


def test_an_objection_is_the_dpos_balancing_and_an_upheld_one_stops_the_activity(
    client: TestClient,
    tracker: TestClient,
    state: State,
    clock: FrozenClock,
    seeded: Seeded,
) -> None:
    REF[0] = reference = verified_case(state, seeded)
    base = f"/admin/rights/{reference}"
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    grounds = "Jeanne's grounds weighed against audience measurement's interest."
    fields = {"activity": "audience_measurement", "outcome": "upheld", "grounds": grounds}
    assert post(agent, f"{base}/objection", **fields) == 403  # the DPO decides
    dpo = signed_in(client, state, clock, "dpo@example.org", "dpo")
    consent_basis = {**fields, "activity": "contact_forms"}
    assert post(dpo, f"{base}/objection", **consent_basis) == 400  # consent: withdraw instead
    assert post(dpo, f"{base}/objection", **{**fields, "activity": "nope"}) == 400
    assert post(dpo, f"{base}/objection", **{**fields, "outcome": "maybe"}) == 400
    assert post(dpo, f"{base}/objection", **{**fields, "grounds": ""}) in (400, 422)
    assert "objection_decided" not in kinds(state, reference)

    assert post(dpo, f"{base}/objection", **{**fields, "outcome": "rejected"}) == 303
    before = hits_of(state)
    track(tracker, state, clock, seeded.consent_id)
    assert hits_of(state) == before + 1  # rejected: processing goes on

    assert post(dpo, f"{base}/objection", **fields) == 303
    track(tracker, state, clock, seeded.consent_id)
    assert hits_of(state) == before + 1  # upheld: further hits are not stored
    with state.sessions() as session:
        assert is_restricted(session, "audience_measurement", consent_id=seeded.consent_id)
        assert not is_restricted(session, "contact_forms", consent_id=seeded.consent_id)

    def logged() -> int:
        with state.sessions() as session:
            rows = session.scalars(select(ConnectionLogEntry.ip)).all()
        return sum(1 for ip in rows if ip == IP)

    assert logged() == 3
    connection = {**fields, "activity": "connection_log"}
    assert post(dpo, f"{base}/objection", **connection) == 303
    assert logged() == 1  # the two requests of the period the person gave are erased
    events = kinds(state, reference)
    assert events.count("objection_decided") == 3
    page = dpo.client.get(f"{base}/restriction").text
    assert "audience_measurement" in page and "connection_log" in page
    evidence = dpo.client.get(f"{base}/evidence").text
    assert grounds.replace("'", "&#x27;") in evidence and "upheld" in evidence


def test_restriction_needs_a_verified_open_case(
    client: TestClient, state: State, clock: FrozenClock, seeded: Seeded
) -> None:
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            Desk(state.register, state.providers),
            seeded.subject,
            ["access"],
            channel="email",
            now=state.clock.now(),
            actor=DPO,
            language="en",
        )
        REF[0] = reference = case.reference
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    assert post(agent, f"/admin/rights/{reference}/restrict") == 409
    answer = agent.client.post(
        f"/admin/rights/{reference}/restrict", data={"csrf": "forged"}, follow_redirects=False
    )
    assert answer.status_code in (400, 403)
    with state.sessions() as session:
        assert not is_restricted(session, "contact_forms", email=EMAIL)
    assert "restricted" not in kinds(state, reference)


def test_a_person_asks_for_restriction_and_objection_through_the_portal(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    page = client.get("/rights?lang=en").text
    assert 'value="restriction"' in page and 'value="objection"' in page
    asked = ask(client, rights=["restriction", "objection"])
    reference, link = reference_of(asked), status_link(asked)
    code, _ = deliver_code(state, clock)
    assert verify(client, reference, code).status_code == 200
    status = client.get(link).text
    assert "Restriction: keep my data stored" in status and "Objection: stop using" in status
    with state.sessions() as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()
        assert case.rights == "objection,restriction" and case.verified_at is not None
    REF[0] = reference
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    assert post(agent, f"/admin/rights/{reference}/restrict") == 303
    with state.sessions() as session:
        assert is_restricted(session, "contact_forms", email=EMAIL)
    assert ask(client, rights=["teleport"]).status_code == 422  # a right nobody offers
