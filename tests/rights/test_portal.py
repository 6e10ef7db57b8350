"""The rights portal: the request, the one-time code by e-mail, its checks, the status page."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import func, select

from gardien.deps import State
from gardien.forms.jobs import send_due
from gardien.forms.models import DisclosureEntry, OutboxMessage
from gardien.retention.service import run_retention
from gardien.rights import portal
from gardien.rights.models import RightsCase, RightsEvent, RightsVerification
from gardien.rights.portal import PORTAL_ACTOR
from gardien.rights.service import close_case
from gardien.security.public_limits import PER_ADDRESS
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from tests.forms.smtp import Mailbox, smtp_server, use_smtp
from tests.forms.test_retention import submit_and_send
from tests.rights.conftest import EMAIL

UNKNOWN = "nobody.here@example.net"
REFERENCE = re.compile(r"GR-\d{4}-[0-9A-F]{8}")
TOKEN = re.compile(r"token=[A-Za-z0-9_-]+")


def ask(client: TestClient, email: str = EMAIL, **changes: object) -> Response:
    form: dict[str, object] = {"rights": ["access", "erasure"], "email": email, "lang": "en"}
    form.update(changes)
    return client.post("/rights", data=form)


def reference_of(answer: Response) -> str:
    found = REFERENCE.search(answer.text)
    assert found, answer.text
    return found.group(0)


def status_link(answer: Response) -> str:
    found = re.search(r'href="(/rights/status/[^"]+)"', answer.text)
    assert found
    return found.group(1).replace("&amp;", "&")


def outbox_count(state: State) -> int:
    with state.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


def events(state: State, reference: str) -> list[str]:
    with state.sessions() as session:
        return list(
            session.scalars(
                select(RightsEvent.kind)
                .join(RightsCase, RightsCase.id == RightsEvent.case_id)
                .where(RightsCase.reference == reference)
                .order_by(RightsEvent.id)
            )
        )


def deliver_code(state: State, clock: FrozenClock) -> tuple[str, str]:
    """Send the outbox to a real SMTP server on loopback; the code and the recipient."""
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        use_smtp(state, f"smtp://127.0.0.1:{port}")
        report = send_due(state, now=clock.now())
    assert report.sent == len(mailbox.received) >= 1
    received = mailbox.received[-1]
    found = re.search(r"enter this code: (\d{8})", received.body)
    assert found, received.body
    return found.group(1), received.rcpt_tos[0]


def verify(client: TestClient, reference: str, code: str, lang: str = "en") -> Response:
    return client.post(f"/rights/verify/{reference}", data={"code": code, "lang": lang})


@pytest.mark.parametrize(
    ("lang", "title", "legend"),
    [
        ("en", "Your rights over your personal data", "What are you asking for?"),
        ("fr", "Vos droits sur vos données personnelles", "Que demandez-vous ?"),
        ("ro", "Drepturile dumneavoastră asupra datelor personale", "Ce solicitați?"),
    ],
)
def test_the_portal_in_three_languages(
    client: TestClient, lang: str, title: str, legend: str
) -> None:
    page = client.get(f"/rights?lang={lang}")
    assert page.status_code == 200
    assert f'<html lang="{lang}">' in page.text
    assert title in page.text and legend in page.text
    assert "<fieldset" in page.text and "<legend>" in page.text
    handled = ("access", "portability", "erasure", "rectification", "withdraw_consent")
    for right in (*handled, "post_mortem"):
        assert f'id="field-rights-{right}" name="rights" value="{right}"' in page.text
        assert f'<label for="field-rights-{right}">' in page.text
    assert '<label for="field-email">' in page.text


def test_known_and_unknown_addresses_get_the_same_answer_and_the_same_work(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    submit_and_send(client, state, clock)  # the contact form knows EMAIL
    before = outbox_count(state)
    known = ask(client, EMAIL)
    after_known = outbox_count(state)
    unknown = ask(client, UNKNOWN)
    after_unknown = outbox_count(state)
    assert known.status_code == unknown.status_code == 200
    assert known.headers["cache-control"] == unknown.headers["cache-control"] == "no-store"

    def masked(answer: Response) -> str:
        return TOKEN.sub("token=T", REFERENCE.sub("REF", answer.text))

    assert masked(known) == masked(unknown)
    assert EMAIL not in known.text and UNKNOWN not in unknown.text
    assert after_known - before == after_unknown - after_known == 1
    with state.sessions() as session:
        kinds = session.scalars(select(OutboxMessage.kind).where(OutboxMessage.id > before)).all()
    assert kinds == [portal.OUTBOX_KIND, portal.OUTBOX_KIND]


def test_the_json_api_answers_the_same_for_known_and_unknown(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    submit_and_send(client, state, clock)
    answers = [
        client.post("/api/rights/requests", json={"rights": ["access"], "email": email})
        for email in (EMAIL, UNKNOWN)
    ]
    assert [a.status_code for a in answers] == [202, 202]
    shapes = [
        {k: REFERENCE.sub("REF", TOKEN.sub("token=T", str(v))) for k, v in a.json().items()}
        for a in answers
    ]
    assert shapes[0] == shapes[1]
    assert shapes[0]["status"] == "awaiting_verification"


def test_the_code_goes_to_the_address_and_confirms_the_request_once(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    answer = ask(client)
    reference = reference_of(answer)
    code, recipient = deliver_code(state, clock)
    assert recipient.lower() == EMAIL.lower()
    page = client.get(f"/rights/verify/{reference}?code={code}&lang=en")
    assert page.status_code == 200 and f'value="{code}"' in page.text  # the link only fills in
    done = verify(client, reference, code)
    assert done.status_code == 200, done.text
    assert "your request is confirmed" in done.text
    assert EMAIL not in done.text
    again = verify(client, reference, code)
    assert again.status_code == 409 and "already used" in again.text
    assert events(state, reference) == ["opened", "code_sent", "verified", "notice_queued"]
    with state.sessions() as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()
        assert case.verified_at is not None and case.channel == "portal"
        sent = session.scalars(select(OutboxMessage)).all()
        assert [m.message for m in sent if m.kind == portal.OUTBOX_KIND] == [None]
        hashes = session.scalars(select(RightsVerification.code_hash)).all()
        assert code not in hashes


def test_an_expired_code_is_refused(client: TestClient, state: State, clock: FrozenClock) -> None:
    reference = reference_of(ask(client))
    code, _ = deliver_code(state, clock)
    clock.advance(portal.CODE_TTL + dt.timedelta(seconds=1))
    answer = verify(client, reference, code, "fr")
    assert answer.status_code == 410
    assert "Ce code a expiré" in answer.text
    assert 'href="#field-code"' in answer.text and 'aria-invalid="true"' in answer.text


def test_wrong_codes_are_counted_then_the_code_is_locked(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    reference = reference_of(ask(client))
    code, _ = deliver_code(state, clock)
    wrong = "0" * 8 if code != "0" * 8 else "1" * 8
    for left in range(portal.MAX_ATTEMPTS - 1, 0, -1):
        answer = verify(client, reference, wrong)
        assert answer.status_code == 422
        assert f"Attempts left: {left}." in answer.text
    locked = verify(client, reference, wrong)
    assert locked.status_code == 429 and "Too many wrong codes" in locked.text
    assert verify(client, reference, code).status_code == 429  # even the right one, now
    assert events(state, reference).count("code_wrong") == portal.MAX_ATTEMPTS
    # A new request sends a new code to the same case, which then works.
    assert reference_of(ask(client)) == reference
    new_code, _ = deliver_code(state, clock)
    assert verify(client, reference, new_code).status_code == 200


def test_a_repeated_request_is_linked_not_duplicated(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    first = reference_of(ask(client))
    second = reference_of(ask(client, EMAIL.upper()))
    assert first == second
    assert events(state, first) == ["opened", "code_sent", "linked", "code_sent"]
    other = reference_of(ask(client, rights=["portability"]))
    assert other != first
    with_phone = reference_of(ask(client, phone="021 123 4567"))
    assert with_phone not in (first, other)
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RightsCase)) == 3


def test_malformed_input_is_refused_with_reasons(client: TestClient, state: State) -> None:
    answer = ask(client, "not-an-address", phone="12", rights=["cake"])
    assert answer.status_code == 422
    assert 'href="#field-email"' in answer.text and 'href="#field-phone"' in answer.text
    assert 'href="#field-rights-access"' in answer.text
    assert "Enter a valid e-mail address" in answer.text
    kept = ask(client, "still wrong", rights=["portability"])
    assert 'value="portability" checked' in kept.text and 'value="still wrong"' in kept.text
    api = client.post("/api/rights/requests", json={"rights": ["access"], "email": "a@@b"})
    assert api.status_code == 422
    problems = api.json()["problems"]
    assert [(p["field"], p["code"]) for p in problems] == [("email", "email")]
    assert problems[0]["reason"].startswith("Enter a valid e-mail address")
    ro = client.post(
        "/api/rights/requests", json={"rights": [], "email": "x@example.org", "lang": "ro"}
    )
    assert ro.status_code == 422 and ro.json()["problems"][0]["field"] == "rights"
    assert outbox_count(state) == 0


def test_the_status_page_needs_its_token(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    answer = ask(client)
    reference = reference_of(answer)
    link = status_link(answer)
    page = client.get(link)
    assert page.status_code == 200
    assert "Awaiting your confirmation" in page.text and reference in page.text
    assert EMAIL not in page.text
    assert client.get(f"/rights/status/{reference}").status_code == 404
    assert client.get(f"/rights/status/{reference}?token=guess").status_code == 404
    code, _ = deliver_code(state, clock)
    verify(client, reference, code)
    confirmed = client.get(link.replace("lang=en", "lang=ro"))
    assert confirmed.status_code == 200
    assert "Confirmat" in confirmed.text


def test_an_unknown_reference_is_a_clear_error(client: TestClient) -> None:
    answer = verify(client, "GR-2026-00000000", "12345678")
    assert answer.status_code == 404
    assert "no request awaiting confirmation" in answer.text


def test_a_purged_portal_case_takes_its_codes_and_their_e_mails_along(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    reference = reference_of(ask(client))
    code, _ = deliver_code(state, clock)
    assert verify(client, reference, code).status_code == 200
    with unit_of_work(state.sessions) as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()
        close_case(session, case, clock.now(), PORTAL_ACTOR, "answered")
    clock.advance(dt.timedelta(days=3 * 365 + 10))
    run_retention(state.sessions, state.register, state.stores, clock)
    with state.sessions() as session:
        for table in (RightsCase, RightsVerification, OutboxMessage, DisclosureEntry):
            assert session.scalar(select(func.count()).select_from(table)) == 0, table


def test_portal_writes_spend_the_public_write_budget(client: TestClient) -> None:
    for _ in range(PER_ADDRESS.limit):
        assert verify(client, "GR-2026-00000000", "12345678").status_code == 404
    refused = client.post("/api/rights/requests", json={"rights": ["access"], "email": EMAIL})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert client.get("/rights").status_code == 200  # reading is free


def test_the_measurement_visitor_id_is_filled_in_from_the_cookie_and_ties_the_case(
    client: TestClient, state: State
) -> None:
    """A consenting visitor's ``_pk_id`` cookie names their measured visits: the portal fills
    it in, and the case is opened for it too; a malformed one is refused with its reason."""
    client.cookies.set("_pk_id.1.a1b2", "0123456789abcdef.1795000000.")
    assert 'value="0123456789abcdef"' in client.get("/rights").text
    reference = reference_of(ask(client, visitor_id="0123456789ABCDEF"))
    with state.sessions() as session:
        case = session.scalar(select(RightsCase).where(RightsCase.reference == reference))
        assert case is not None and case.visitor_id == "0123456789abcdef"
        assert case.visitor_id_index is not None
    refused = ask(client, visitor_id="not-a-visitor")
    assert refused.status_code == 422
    assert "A visitor id is the 16 letters and digits" in refused.text
    api = client.post(
        "/api/rights/requests",
        json={"rights": ["access"], "email": EMAIL, "visitor_id": "12"},
    )
    assert api.status_code == 422
    assert [p["field"] for p in api.json()["problems"]] == ["visitor_id"]
