"""Rectification, withdrawal of consent and post-mortem directives through the portal, on a
person seeded across every store: the effects are observed in what the system does next
(the blind index finds the new e-mail, hits under a withdrawn consent id are not stored, an
applied "erase" directive leaves only a tombstone)."""

from __future__ import annotations

import io
import json
import re
import zipfile

from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import func, select

from gardien.analytics.models import AnalyticsHit
from gardien.consent.models import ConsentRecord
from gardien.consent.records import verify_chain
from gardien.consent.service import current_revision
from gardien.forms.jobs import send_due
from gardien.forms.models import FormSubmission, OutboxMessage
from gardien.forms.provider import FormsProvider
from gardien.rights.amendments import RightsDirective, RightsRectification
from gardien.rights.models import RightsCase
from gardien.storage.clock import FrozenClock
from gardien.storage.subjects import SubjectIdentity
from tests.forms.smtp import Mailbox, smtp_server, use_smtp
from tests.rights.conftest import EMAIL, PHONE, Seeded
from tests.rights.test_notices import code_in, sent_files
from tests.rights.test_portal import deliver_code, events, reference_of, status_link, verify
from tests.security.signin import SignedIn, new_client, signed_in

NEW_EMAIL = "ana.corrected@example.org"
TOKEN = re.compile(r"token=([A-Za-z0-9_-]+)")


def _verified_case(
    client: TestClient, seeded: Seeded, clock: FrozenClock, rights: list[str], **extra: str
) -> tuple[str, str]:
    """Ask through the portal, confirm with the e-mailed code; the reference and the status
    page's path (with its token)."""
    asked = client.post("/rights", data={"rights": rights, "email": EMAIL, "lang": "en", **extra})
    assert asked.status_code == 200, asked.text
    reference, status = reference_of(asked), status_link(asked)
    code, _ = deliver_code(seeded.state, clock)
    assert verify(client, reference, code).status_code == 200
    return reference, status


def _token(status: str) -> str:
    found = TOKEN.search(status)
    assert found
    return found.group(1)


def _by_email(seeded: Seeded, email: str) -> int:
    with seeded.state.sessions() as session:
        return FormsProvider().find(session, SubjectIdentity(email=email)).total


# -- rectification -----------------------------------------------------------------------------


def test_rectification_proposed_in_the_portal_approved_by_an_agent_is_applied_everywhere(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    person = new_client(client)
    reference, status = _verified_case(person, seeded, clock, ["rectification"])
    page = person.get(status)
    link = re.search(r'id="rectify-link" href="([^"]+)"', page.text)
    assert link, page.text
    form = person.get(link.group(1).replace("&amp;", "&"))
    assert form.status_code == 200 and 'name="field.email"' in form.text
    token = _token(status)
    sent = person.post(
        f"/rights/rectify/{reference}",
        data={
            "token": token,
            "lang": "en",
            "field.email": NEW_EMAIL,
            "field.last_name": "Popescu-Ionescu",
            "description": "I married; my address changed",
        },
    )
    assert sent.status_code == 200 and 'id="rectify-done"' in sent.text
    with seeded.state.sessions() as session:
        row = session.scalars(select(RightsRectification)).one()
        assert row.status == "proposed" and row.fields == "email,last_name"
    # a second proposal while one awaits a decision is refused
    again = person.post(
        f"/rights/rectify/{reference}", data={"token": token, "field.first_name": "Ana"}
    )
    assert again.status_code == 409
    agent = signed_in(client, seeded.state, clock, "agent@example.org", "agent")
    view = agent.client.get(f"/admin/rights/{reference}/rectification")
    assert view.status_code == 200 and NEW_EMAIL in view.text
    decided = agent.client.post(
        f"/admin/rights/{reference}/rectification",
        data={"csrf": agent.csrf, "decision": "approve", "reasons": ""},
        follow_redirects=False,
    )
    assert decided.status_code == 303, decided.text
    # the blind index finds the new address, not the old one; the inbox shows the new value
    assert _by_email(seeded, NEW_EMAIL) == 1 and _by_email(seeded, EMAIL) == 0
    with seeded.state.sessions() as session:
        submission = session.scalars(
            select(FormSubmission).where(FormSubmission.fields.is_not(None))
        ).all()
        public_id = next(s.public_id for s in submission if NEW_EMAIL in s.fields)
        row = session.scalars(select(RightsRectification)).one()
        assert (row.status, row.proposal, row.changed) == ("applied", None, 1)
    inbox = agent.client.get(f"/admin/inbox/{public_id}")
    assert inbox.status_code == 200 and NEW_EMAIL in inbox.text and EMAIL not in inbox.text
    kinds = events(seeded.state, reference)
    assert "rectification_proposed" in kinds and "rectified" in kinds
    assert kinds[-1] == "notice_queued"  # the outcome, in the person's language
    told = _sent(seeded, clock)
    assert "we corrected email, last_name wherever we hold it (1 record(s))" in told
    assert "Consent records and audience measurement hold nothing to correct" in told
    with seeded.state.sessions() as session:
        details = session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()
        assert details.status == "open"
    # the case file holds no value in clear: only field names and a hash
    text = " ".join(e for e in _details(seeded, reference) if e is not None)
    assert NEW_EMAIL not in text and "Popescu-Ionescu" not in text


def _sent(seeded: Seeded, clock: FrozenClock) -> str:
    """Deliver the outbox to a real SMTP server on loopback; the bodies sent, joined."""
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        use_smtp(seeded.state, f"smtp://127.0.0.1:{port}")
        send_due(seeded.state, now=clock.now())
    return " ".join(" ".join(m.body.split()) for m in mailbox.received)


def _details(seeded: Seeded, reference: str) -> list[str | None]:
    from gardien.rights.models import RightsEvent

    with seeded.state.sessions() as session:
        return list(
            session.scalars(
                select(RightsEvent.detail)
                .join(RightsCase, RightsCase.id == RightsEvent.case_id)
                .where(RightsCase.reference == reference)
            )
        )


def test_bad_rectifications_are_refused_with_a_reason_and_nothing_written(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    person = new_client(client)
    reference, status = _verified_case(person, seeded, clock, ["rectification"])
    token = _token(status)
    for data, reason in (
        ({"field.salary": "1"}, "is not a field we hold"),
        ({"field.last_name": "x" * 5000}, "the new value is not valid"),
        ({"field.email": "not an address"}, "the new value is not valid"),
        ({}, "at least one corrected value"),
        ({"description": "y" * 3000}, "at most 2000 characters"),
    ):
        refused = person.post(f"/rights/rectify/{reference}", data={"token": token, **data})
        assert refused.status_code == 422, (data, refused.status_code)
        assert reason in refused.text
    with seeded.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RightsRectification)) == 0
    # another person's request, or a wrong token, opens nothing
    assert person.post(f"/rights/rectify/{reference}", data={"token": "x" * 20}).status_code == 404
    other = person.post("/rights", data={"rights": ["access"], "email": EMAIL, "lang": "en"})
    other_status = status_link(other)
    assert (
        person.get(
            f"/rights/rectify/{reference_of(other)}?token={_token(other_status)}"
        ).status_code
        == 404
    )


# -- withdrawal of consent ---------------------------------------------------------------------


def test_withdrawal_of_consent_is_one_step_after_verification_and_takes_effect(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    state = seeded.state
    # Ana consents again in the banner (her last decision had withdrawn audience measurement)
    from tests.consent.test_records import decision

    body = decision(client, consent_id=seeded.consent_id)
    assert client.post("/api/consent/records", json=body).status_code == 201
    person = new_client(client)
    revision = current_revision(state).number
    decided = int(clock.now().timestamp()) - 60
    person.cookies.set(
        "gardien_consent", f"1:{seeded.consent_id}:{revision}:{decided}:audience_measurement=1"
    )
    # the portal fills in this browser's consent id: withdrawing is as easy as giving
    assert f'value="{seeded.consent_id}"' in person.get("/rights").text
    reference, status = _verified_case(
        person, seeded, clock, ["withdraw_consent"], consent_id=seeded.consent_id.upper()
    )
    page = person.get(status)
    assert 'id="withdrawn"' in page.text
    assert "every consent you gave us is withdrawn (3)" in _sent(seeded, clock)
    kinds = events(state, reference)
    assert kinds.count("consent_withdrawn") >= 3
    with state.sessions() as session:
        last = session.scalars(
            select(ConsentRecord).order_by(ConsentRecord.seq.desc()).limit(1)
        ).one()
        assert (last.consent_id, last.action, last.layer) == (seeded.consent_id, "withdraw", "api")
        categories: dict[str, bool] = dict((last.choices or {})["categories"])  # type: ignore[call-overload]
        required = {c.id for c in state.register.consent_categories if c.strictly_necessary}
        assert required and all(categories[name] for name in required)
        assert not any(on for name, on in categories.items() if name not in required)
        assert verify_chain(session) is None
        # the contact form given on consent: marked withdrawn, nothing more sent for it
        statuses = dict(
            session.execute(select(FormSubmission.id, FormSubmission.status)).tuples().all()
        )
        assert sorted(statuses.values()) == ["new", "withdrawn"]
        assert (
            session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status == "pending", OutboxMessage.submission_id.is_not(None))
            )
            == 0
        )
        before = session.scalar(select(func.count()).select_from(AnalyticsHit))
    # analytics: a hit still carrying the consent cookie is answered and not stored
    visitor = new_client(client)
    visitor.cookies.set(
        "gardien_consent",
        f"1:{seeded.consent_id}:{revision}:{decided}:audience_measurement=1",
    )
    answer = visitor.get(
        "/matomo.php", params={"idsite": 1, "rec": 1, "url": "https://www.cegedim-rx.ro/"}
    )
    assert answer.status_code == 200
    other = new_client(client)
    other.cookies.set(
        "gardien_consent",
        f"1:{seeded.other_consent_id}:{revision}:{decided}:audience_measurement=1",
    )
    other.get("/matomo.php", params={"idsite": 1, "rec": 1, "url": "https://www.cegedim-rx.ro/"})
    with state.sessions() as session:
        after = session.scalar(select(func.count()).select_from(AnalyticsHit))
    assert after == (before or 0) + 1  # only the other visitor's hit
    # a consent id that is not one is refused with a reason
    bad = person.post(
        "/rights",
        data={"rights": ["withdraw_consent"], "email": EMAIL, "consent_id": "nope", "lang": "en"},
    )
    assert bad.status_code == 422 and "32 characters" in bad.text


# -- post-mortem directives --------------------------------------------------------------------


def _directive_form(person: TestClient, status: str) -> str:
    page = person.get(status)
    link = re.search(r'id="directive-link" href="([^"]+)"', page.text)
    assert link, page.text
    return link.group(1).replace("&amp;", "&")


def test_directives_need_their_own_consent_are_revocable_at_once_and_applied_after_death(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    state = seeded.state
    person = new_client(client)
    reference, status = _verified_case(person, seeded, clock, ["post_mortem"])
    token = _token(status)
    assert person.get(_directive_form(person, status)).status_code == 200
    directive = {
        "token": token,
        "lang": "en",
        "action": "record",
        "instruction.all": "erase",
        "designee_name": "Ioana Popescu",
        "designee_contact": "ioana@example.org",
    }
    # without the directive's own checkbox: refused, nothing stored
    refused = person.post(f"/rights/directive/{reference}", data=directive)
    assert refused.status_code == 422 and "own explicit consent" in refused.text
    en_francais = person.post(f"/rights/directive/{reference}", data={**directive, "lang": "fr"})
    assert en_francais.status_code == 422 and "propre consentement explicite" in en_francais.text
    bad = person.post(
        f"/rights/directive/{reference}",
        data={**directive, "directive_consent": "yes", "instruction.salary": "erase"},
    )
    assert bad.status_code == 422 and "not part of the form" in bad.text
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RightsDirective)) == 0
    recorded = person.post(
        f"/rights/directive/{reference}", data={**directive, "directive_consent": "yes"}
    )
    assert recorded.status_code == 200 and 'id="revoke-directive"' in recorded.text
    with state.sessions() as session:
        row = session.scalars(select(RightsDirective)).one()
        assert row.body is not None and "Ioana" in row.body and row.revoked_at is None
    # someone else (another verified request, another address) cannot revoke it
    stranger = new_client(client)
    asked = stranger.post(
        "/rights",
        data={"rights": ["post_mortem"], "email": "someone.else@example.org", "lang": "en"},
    )
    code, _ = deliver_code(state, clock)
    assert verify(stranger, reference_of(asked), code).status_code == 200
    theirs = stranger.post(
        f"/rights/directive/{reference_of(asked)}",
        data={"token": _token(status_link(asked)), "action": "revoke"},
    )
    assert theirs.status_code == 404
    assert (
        stranger.post(
            f"/rights/directive/{reference}", data={"token": "x" * 24, "action": "revoke"}
        ).status_code
        == 404
    )
    # the person revokes: at once, the content is emptied
    revoked = person.post(
        f"/rights/directive/{reference}", data={"token": token, "action": "revoke"}
    )
    assert revoked.status_code == 200 and 'id="revoke-directive"' not in revoked.text
    with state.sessions() as session:
        row = session.scalars(select(RightsDirective)).one()
        assert row.revoked_at is not None and row.body is None
    # recorded again; after death, the designee's request erases: only a tombstone is left
    person.post(f"/rights/directive/{reference}", data={**directive, "directive_consent": "yes"})
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    designee_case = _agent_case(agent, state, clock)
    applied = _apply(agent, designee_case, reference)
    assert applied.status_code == 303, applied.text
    assert _by_email(seeded, EMAIL) == 0
    with state.sessions() as session:
        rows = session.scalars(select(RightsDirective).order_by(RightsDirective.id)).all()
        tomb = rows[-1]
        assert tomb.executed_at is not None and tomb.death_document_sha256
        assert (tomb.body, tomb.email, tomb.email_index) == (None, None, None)
        assert tomb.outcome and "erased contact_forms=1" in tomb.outcome
    assert "directive_applied" in events(state, designee_case)


def _with_directive(
    person: TestClient, seeded: Seeded, clock: FrozenClock, designee: str, **extra: str
) -> str:
    """A verified post-mortem request whose person records a directive (erase all, unless
    ``extra`` says otherwise) designating Ioana Popescu at ``designee``; its reference."""
    reference, status = _verified_case(person, seeded, clock, ["post_mortem"])
    recorded = person.post(
        f"/rights/directive/{reference}",
        data={
            "token": _token(status),
            "action": "record",
            "instruction.all": "erase",
            "designee_name": "Ioana Popescu",
            "designee_contact": designee,
            "directive_consent": "yes",
            **extra,
        },
    )
    assert recorded.status_code == 200, recorded.text
    return reference


def _death(agent: SignedIn, case: str, deceased: str, requester: str = "designee") -> Response:
    """The agent records the death certificate at the request ``case``: the deceased's data
    are frozen."""
    return agent.client.post(
        f"/admin/rights/{case}/death",
        data={"csrf": agent.csrf, "deceased_case": deceased, "requester": requester},
        files={"certificate": ("death.pdf", b"%PDF-1.4 death certificate", "application/pdf")},
        follow_redirects=False,
    )


def _execute(
    agent: SignedIn, case: str, deceased: str, requester: str = "designee", **data: str
) -> Response:
    """The agent applies the deceased's directive (or the heirs' rights) at ``case``."""
    return agent.client.post(
        f"/admin/rights/{case}/directive",
        data={"csrf": agent.csrf, "deceased_case": deceased, "requester": requester, **data},
        follow_redirects=False,
    )


def _apply(agent: SignedIn, case: str, deceased: str) -> Response:
    """The agent records the death certificate, then applies the deceased's directive at the
    designated person's request ``case``."""
    recorded = _death(agent, case, deceased)
    if recorded.status_code != 303:
        return recorded
    return _execute(agent, case, deceased)


def _agent_case(
    agent: object,
    state: object,
    clock: FrozenClock,
    email: str = "ioana@example.org",
    *,
    channel: str = "post",
    language: str = "ro",
) -> str:
    """The designee's own request, recorded by an agent from their letter (or e-mail)."""
    from tests.rights.test_admin import record
    from tests.rights.test_admin import reference_of as recorded_reference

    answer = record(
        agent,  # type: ignore[arg-type]
        clock.now().date(),
        email=email,
        phone="",
        rights=["post_mortem"],
        channel=channel,
        language=language,
    )
    return recorded_reference(answer)


def test_a_person_known_only_by_phone_records_a_directive_after_an_sms_code(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    """No e-mail address: the code goes by text message, the directive is kept under the
    phone number's blind index (never in clear), revocable, and applied after death."""
    state = seeded.state
    person = new_client(client)
    asked = person.post("/rights", data={"rights": ["post_mortem"], "phone": PHONE, "lang": "en"})
    assert asked.status_code == 200, asked.text
    reference, status = reference_of(asked), status_link(asked)
    before = set(sent_files(state, "sms", ".sms"))
    send_due(state, now=clock.now())
    [text] = [t.decode() for n, t in sent_files(state, "sms", ".sms").items() if n not in before]
    assert text.startswith(f"To: {PHONE}\n")
    assert verify(person, reference, code_in(text, reference)).status_code == 200
    directive = {
        "token": _token(status),
        "action": "record",
        "instruction.all": "erase",
        "designee_name": "Ioana Popescu",
        "designee_contact": "ioana@example.org",
        "directive_consent": "yes",
    }
    form = _directive_form(person, status)
    assert person.get(form).status_code == 200
    recorded = person.post(f"/rights/directive/{reference}", data=directive)
    assert recorded.status_code == 200, recorded.text
    assert 'id="revoke-directive"' in recorded.text
    with state.sessions() as session:
        row = session.scalars(select(RightsDirective)).one()
        assert row.email is None and row.phone == PHONE and row.phone_index
        assert row.body is not None and row.revoked_at is None
    revoked = person.post(
        f"/rights/directive/{reference}", data={"token": _token(status), "action": "revoke"}
    )
    assert revoked.status_code == 200 and 'id="revoke-directive"' not in revoked.text
    person.post(f"/rights/directive/{reference}", data=directive)
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    designee_case = _agent_case(agent, state, clock)
    applied = _apply(agent, designee_case, reference)
    assert applied.status_code == 303, applied.text
    with state.sessions() as session:
        assert FormsProvider().find(session, SubjectIdentity(phone=PHONE)).total == 0
        tomb = session.scalars(select(RightsDirective).order_by(RightsDirective.id)).all()[-1]
        assert (tomb.phone, tomb.phone_index, tomb.body) == (None, None, None)
        assert tomb.outcome and "erased contact_forms=1" in tomb.outcome


def test_heirs_without_a_directive_only_get_what_the_law_allows(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    state = seeded.state
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    deceased = _agent_case(agent, state, clock, email=EMAIL)
    heir = _agent_case(agent, state, clock)

    def ask(**data: str) -> int:
        return _execute(agent, heir, deceased, **{"requester": "heir", **data}).status_code

    assert ask(asked="close_account") == 400  # not before the death is recorded
    assert _death(agent, heir, deceased, "cousin").status_code == 400
    assert _death(agent, heir, deceased, "designee").status_code == 400  # no directive
    assert "death_recorded" not in events(state, heir)  # nothing half-written
    assert _death(agent, heir, deceased, "heir").status_code == 303
    assert _death(agent, heir, deceased, "heir").status_code == 409  # recorded once
    assert ask(asked="access") == 400  # beyond close / object / update / estate information
    assert ask(asked="erasure") == 400
    assert ask(requester="cousin") == 400
    assert ask(requester="designee") == 400  # no directive designates anyone
    assert "directive_applied" not in events(state, heir)  # nothing half-written
    assert ask(asked="close_account,object") == 303
    kinds = events(state, heir)
    assert kinds.index("death_recorded") < kinds.index("frozen") < kinds.index("directive_applied")
    assert "freeze_lifted" in kinds
    assert _by_email(seeded, EMAIL) == 1  # nothing erased on the heirs' limited rights
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RightsDirective)) == 0


def test_a_directive_to_communicate_sends_a_one_time_link_to_the_designee_and_erases_the_rest(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    """ "Communicate" goes to the designated person the way an access package does: stored
    encrypted, a one-time link e-mailed (real SMTP on loopback) to their contact, the
    download traced; nothing is handed to the agent."""
    state = seeded.state
    person = new_client(client)
    reference = _with_directive(
        person, seeded, clock, "Ioana@example.org", **{"instruction.contact_forms": "communicate"}
    )
    _sent(seeded, clock)  # the person's own notices
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    # a request recorded under another contact than the designated one gets nothing
    by_email = {"channel": "email", "language": "en"}
    stranger_case = _agent_case(agent, state, clock, email="not.ioana@example.org", **by_email)
    assert _death(agent, stranger_case, reference).status_code == 303
    refused = _execute(agent, stranger_case, reference)
    assert refused.status_code == 400 and "designates" in refused.text
    closed = agent.client.post(  # the stranger's request is closed: the freeze ends with it
        f"/admin/rights/{stranger_case}/close",
        data={"csrf": agent.csrf, "outcome": "withdrawn"},
        follow_redirects=False,
    )
    assert closed.status_code in (200, 303), closed.text
    assert "freeze_lifted" in events(state, stranger_case)
    designee_case = _agent_case(agent, state, clock, **by_email)
    handed = _apply(agent, designee_case, reference)
    assert handed.status_code == 303, handed.text  # no file for the agent
    assert _by_email(seeded, EMAIL) == 1  # communicated, not erased
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        use_smtp(state, f"smtp://127.0.0.1:{port}")
        send_due(state, now=clock.now())
    [mail] = [m for m in mailbox.received if "/rights/download/" in m.body]
    assert mail.rcpt_tos == ["ioana@example.org"]
    assert "post-mortem directive" in " ".join(mail.body.split())
    found = re.search(r"https?://[^/\s]+(/rights/download/([^?\s]+)\?[^\s]+)", mail.body)
    assert found and found.group(2) == designee_case
    link = found.group(1)
    assert person.get(link).status_code == 200  # the page uses nothing up
    form = {"token": _token(link), "lang": "en"}
    got = person.post(f"/rights/download/{designee_case}", data=form)
    assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(got.content)) as archive:
        data = json.loads(archive.read("data.json"))
    assert set(data["stores"]) == {"contact_forms"}  # only what the directive communicates
    assert EMAIL.lower() in json.dumps(data).lower()
    again = person.post(f"/rights/download/{designee_case}", data=form)
    assert again.status_code == 410
    kinds = events(state, designee_case)
    assert {"link_created", "downloaded", "directive_applied"} <= set(kinds)
    # applied once: a second request finds a tombstone
    assert _execute(agent, designee_case, reference).status_code == 409
    assert _death(agent, designee_case, reference).status_code == 409


def test_an_agent_withdraws_consent_for_a_request_by_post_once_it_is_verified(
    client: TestClient, seeded: Seeded, clock: FrozenClock
) -> None:
    state = seeded.state
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    from tests.rights.test_admin import record
    from tests.rights.test_admin import reference_of as recorded_reference

    reference = recorded_reference(
        record(agent, clock.now().date(), email=EMAIL, phone="", rights=["withdraw_consent"])
    )
    url = f"/admin/rights/{reference}/withdraw-consent"
    early = agent.client.post(url, data={"csrf": agent.csrf}, follow_redirects=False)
    assert early.status_code == 409  # not before the identity is checked
    assert agent.client.post(url, data={}, follow_redirects=False).status_code == 422  # no CSRF
    verified = agent.client.post(
        f"/admin/rights/{reference}/verify",
        data={"csrf": agent.csrf, "basis": "letter signed, address matches"},
    )
    assert verified.status_code == 200
    done = agent.client.post(url, data={"csrf": agent.csrf}, follow_redirects=False)
    assert done.status_code == 303
    with state.sessions() as session:
        statuses = sorted(session.scalars(select(FormSubmission.status)))
    assert statuses == ["new", "withdrawn"]
    assert "consent_withdrawn" in events(state, reference)
