"""Recipients told of a rectification, erasure or restriction (Art. 19): an e-mail with a
one-time acknowledgement link to a recipient whose address the register gives, an agent's
reasoned closing for one without; and the evidence pack of a case and of the system on a day,
from the admin (the DPO's, traced) and the CLI."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import html
import json
import re
from email.message import EmailMessage
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from gardien.cli.main import app
from gardien.deps import State
from gardien.forms.jobs import send_due
from gardien.forms.models import OutboxMessage
from gardien.register.schema import Register
from gardien.retention.service import run_retention
from gardien.rights import recipients, restriction
from gardien.rights.models import RightsCase
from gardien.rights.recipients import RightsRecipientNotice
from gardien.rights.service import Desk, close_case
from gardien.security.audit import Actor
from gardien.security.models import AuditEntry
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from gardien.storage.restriction import is_restricted
from tests.cli.test_commands import env_of
from tests.forms.test_retention import submit_and_send
from tests.rights.conftest import EMAIL, Seeded
from tests.rights.test_portal import ask, deliver_code, reference_of, status_link, verify
from tests.rights.test_restriction import REF, kinds, post, verified_case
from tests.security.signin import signed_in

AGENT = Actor.system("test")
PARTNER = "privacy@partner.example.com"


def with_contact(register: Register, contacts: dict[str, str] | None = None) -> Register:
    """The seed register, with an address for the first recipient of each activity of
    ``contacts`` (activity → address; by default the contact form's: ``PARTNER``)."""
    contacts = contacts or {"contact_forms": PARTNER}
    activities = []
    for activity in register.activities:
        if activity.id in contacts:
            first, *rest = activity.recipients
            update = {"contact": contacts[activity.id]}
            activity = activity.model_copy(
                update={"recipients": [first.model_copy(update=update), *rest]}
            )
        activities.append(activity)
    return register.model_copy(update={"activities": activities})


def notices(state: State) -> list[RightsRecipientNotice]:
    with state.sessions() as session:
        return list(
            session.scalars(select(RightsRecipientNotice).order_by(RightsRecipientNotice.id))
        )


def test_recipients_are_told_acknowledge_once_or_are_closed_with_a_reason(
    client: TestClient, state: State, clock: FrozenClock, seeded: Seeded
) -> None:
    REF[0] = reference = verified_case(state, seeded)
    desk = Desk(with_contact(state.register), state.providers)
    with unit_of_work(state.sessions) as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()
        made = recipients.notify(
            session,
            desk,
            case,
            "restriction",
            base_url="https://gardien.example.ro",
            now=clock.now(),
            actor=AGENT,
        )
        assert {n.activity for n in made} >= {"contact_forms", "consent_records"}
    sent = [n for n in notices(state) if n.status == "sent"]
    assert [(n.activity, n.recipient) for n in sent] == [
        ("contact_forms", with_contact(state.register).activities[0].recipients[0].id)
    ]
    [notice] = sent
    with state.sessions() as session:
        message = session.get_one(OutboxMessage, notice.outbox_id)
        raw, to = message.message or "", message.recipient
    parsed = email.message_from_string(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage) and parsed["To"] == PARTNER
    text = parsed.get_content()
    assert to == PARTNER and reference in parsed["Subject"] and EMAIL in text
    token = re.search(r"recipient-ack\?token=([\w-]+)", text)
    assert token and notice.token_hash == hashlib.sha256(token.group(1).encode()).hexdigest()
    assert token.group(1) not in json.dumps([n.token_hash for n in notices(state)])
    report = send_due(state, now=clock.now())
    assert report.sent >= 1

    # A GET (a link scanner) acknowledges nothing; the POST does, once.
    page = client.get("/rights/recipient-ack", params={"token": token.group(1)})
    assert page.status_code == 200 and 'name="token"' in page.text
    assert [n.status for n in notices(state) if n.id == notice.id] == ["sent"]
    ack = client.post("/rights/recipient-ack", data={"token": token.group(1)})
    assert ack.status_code == 200
    assert client.post("/rights/recipient-ack", data={"token": token.group(1)}).status_code == 409
    assert client.post("/rights/recipient-ack", data={"token": "x" * 40}).status_code == 404
    assert client.post("/rights/recipient-ack", data={"token": "short"}).status_code == 422
    assert "recipient_acknowledged" in kinds(state, reference)

    # Without an address: an agent closes it, with its reason (kept in the encrypted notes).
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    still_open = [n for n in notices(state) if n.status == "open"]
    assert still_open
    path = f"/admin/rights/{reference}/recipients/{still_open[0].id}/close"
    assert post(agent, path, reason="") in (400, 422)
    reason = "Internal staff of the controller: they act on the case itself."
    assert post(agent, path, reason=reason) == 303
    assert post(agent, path, reason=reason) == 409  # closed already
    assert "recipient_closed" in kinds(state, reference)
    listed = agent.client.get(f"/admin/rights/{reference}/restriction").text
    assert "acknowledged" in listed and "closed" in listed

    # The notify form of the page, with the seed register (no address: all open).
    before = len(notices(state))
    assert post(agent, f"/admin/rights/{reference}/recipients/notify", operation="erasure") == 303
    assert post(agent, f"/admin/rights/{reference}/recipients/notify", operation="nope") == 400
    assert {n.status for n in notices(state)[before:]} == {"open"}


def test_the_evidence_pack_of_a_case_and_of_the_system(
    client: TestClient, state: State, clock: FrozenClock, seeded: Seeded, tmp_path: Path
) -> None:
    REF[0] = reference = verified_case(state, seeded)
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    assert post(agent, f"/admin/rights/{reference}/restrict") == 303
    assert agent.client.get(f"/admin/rights/{reference}/evidence").status_code == 403
    dpo = signed_in(client, state, clock, "dpo@example.org", "dpo")
    pack = dpo.client.get(f"/admin/rights/{reference}/evidence")
    assert pack.status_code == 200 and "attachment" in pack.headers["content-disposition"]
    html = pack.text
    assert reference in html and "@media print" in html
    for heading in ("Request", "Verification", "Timeline", "Restrictions and objections"):
        assert f"<h2>{heading}</h2>" in html
    assert "restricted" in html and "every activity" in html
    assert "open, still in time" in html
    assert dpo.client.get("/admin/rights/GR-2000-00000000/evidence").status_code == 404

    day = clock.now().date()
    system = dpo.client.get("/admin/evidence", params={"date": day.isoformat()})
    assert system.status_code == 200
    assert reference in system.text and "Chain heads" in system.text
    earlier = dpo.client.get("/admin/evidence", params={"date": "2000-01-01"}).text
    assert reference not in earlier  # received after that day
    assert dpo.client.get("/admin/evidence", params={"date": "yesterday"}).status_code == 422
    with state.sessions() as session:
        traced = session.scalars(
            select(AuditEntry.target_id).where(AuditEntry.action == "rights.evidence_exported")
        ).all()
    assert sorted(t or "" for t in traced) == sorted([reference, day.isoformat(), "2000-01-01"])

    # Past its due date with the case still open, the deadline is missed.
    later = dpo.client.get(
        "/admin/evidence", params={"date": (day + dt.timedelta(days=120)).isoformat()}
    ).text
    assert 'class="missed"' in later

    runner = CliRunner()
    env = env_of(state.settings)
    out = tmp_path / "case.html"
    done = runner.invoke(
        app, ["rights", "evidence", "--case", reference, "--out", str(out)], env=env
    )
    assert done.exit_code == 0, done.output
    assert reference in out.read_text() and json.loads(done.stdout)["of"] == reference
    whole = tmp_path / "system.html"
    done = runner.invoke(
        app, ["rights", "evidence", "--date", day.isoformat(), "--out", str(whole)], env=env
    )
    assert done.exit_code == 0 and "Chain heads" in whole.read_text()
    for bad in (
        ["--out", str(out)],
        ["--case", reference, "--date", "2026-01-01", "--out", str(out)],
        ["--date", "not-a-day", "--out", str(out)],
        ["--case", "GR-2000-00000000", "--out", str(out)],
        ["--case", reference, "--out", str(tmp_path / "missing" / "x.html")],
    ):
        failed = runner.invoke(app, ["rights", "evidence", *bad], env=env)
        assert failed.exit_code == 2, (bad, failed.output)


def test_a_case_that_still_restricts_outlives_its_period_and_goes_with_its_messages_once_lifted(
    client: TestClient, state: State, clock: FrozenClock, seeded: Seeded
) -> None:
    REF[0] = reference = verified_case(state, seeded)
    desk = Desk(with_contact(state.register), state.providers)
    with unit_of_work(state.sessions) as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()
        restriction.restrict(session, desk, case, now=clock.now(), actor=AGENT)  # tells them
        close_case(session, case, clock.now(), AGENT, "restricted")
        told = [n.outbox_id for n in recipients.of_case(session, case) if n.outbox_id]
    assert told
    clock.advance(dt.timedelta(days=3 * 365 + 10))
    run_retention(state.sessions, state.register, state.stores, clock)
    with state.sessions() as session:
        assert session.scalar(select(RightsCase.id).where(RightsCase.reference == reference))
        assert is_restricted(session, "contact_forms", email=EMAIL)
    with unit_of_work(state.sessions) as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()
        case.status = "open"  # the agent reopens it to tell the person and lift
        restriction.announce_lift(
            session, desk, case, "Your restriction ends.", now=clock.now(), actor=AGENT
        )
        restriction.lift(session, desk, case, now=clock.now(), actor=AGENT)
        close_case(session, case, clock.now() - dt.timedelta(days=3 * 365 + 5), AGENT, "lifted")
    run_retention(state.sessions, state.register, state.stores, clock)
    with state.sessions() as session:
        assert (
            session.scalar(select(RightsCase.id).where(RightsCase.reference == reference)) is None
        )
        assert (
            session.scalars(select(OutboxMessage.id).where(OutboxMessage.id.in_(told))).all() == []
        )
        assert session.scalars(select(RightsRecipientNotice.id)).all() == []
        assert not is_restricted(session, "contact_forms", email=EMAIL)


def test_the_person_learns_on_their_status_page_which_recipients_were_told(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    submit_and_send(client, state, clock)  # Ana wrote through the contact form first
    asked = ask(client)
    reference, link = reference_of(asked), status_link(asked)
    code, _ = deliver_code(state, clock)
    assert verify(client, reference, code).status_code == 200
    assert 'id="told"' not in client.get(link).text
    desk = Desk(with_contact(state.register), state.providers)
    with unit_of_work(state.sessions) as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()
        recipients.notify(
            session,
            desk,
            case,
            "erasure",
            base_url="https://g.example",
            now=clock.now(),
            actor=AGENT,
        )
    [told] = [n for n in notices(state) if n.status == "sent"]
    name = state.register.activities[0].recipients[0].name["fr"]
    page = client.get(link + "&lang=fr").text
    assert 'id="told"' in page and html.escape(name, quote=True) in page
    assert "l'effacement de vos données" in html.unescape(page)
    assert "ont confirmé" not in page
    with unit_of_work(state.sessions) as session:
        session.get_one(RightsRecipientNotice, told.id).token_hash = "0" * 64
    assert client.post("/rights/recipient-ack", data={"token": "y" * 40}).status_code == 404
