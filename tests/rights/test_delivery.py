"""The files that pass between Gardien and the person, and the working data that must not
outlive its use: the one-time download of an access package, the identity document asked on a
recorded doubt, portal requests never confirmed, and the printable letter for a request by
post."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import func, select

from gardien.deps import State
from gardien.forms.models import OutboxMessage
from gardien.retention.models import PurgeReceipt
from gardien.retention.service import run_retention
from gardien.rights import documents, notify
from gardien.rights.deadlines import due_date
from gardien.rights.exchange import RightsDocument, RightsDownload, RightsNotice
from gardien.rights.models import RightsVerification
from gardien.rights.service import Desk, open_case
from gardien.security.audit import Actor
from gardien.security.models import AuditEntry
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from gardien.storage.subjects import SubjectIdentity
from tests.forms.test_retention import submit_and_send
from tests.rights.conftest import EMAIL
from tests.rights.test_notices import body, case_of, code_in, send
from tests.rights.test_portal import events, reference_of, verify
from tests.security.signin import SignedIn, csrf_of, signed_in

DPO = Actor("user:1", "dpo")
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + b"\x00" * 32 + b"Ana Popescu 1900101"


def links(text: str, kind: str) -> str:
    found = re.search(rf"https?://[^/\s]+(/rights/{kind}/[^\s]+)", text)
    assert found, text
    return found.group(1)


def opened(state: State, channel: str = "email", email: str = EMAIL) -> str:
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            Desk(state.register, state.providers),
            SubjectIdentity(email=email),
            ["access"],
            channel=channel,
            now=state.clock.now(),
            actor=DPO,
            language="en",
        )
        return case.reference


def offer(state: State, reference: str) -> None:
    """Build the package, store it behind a one-time link and tell the person."""
    with unit_of_work(state.sessions) as session:
        package = notify.send_package(
            session,
            Desk(state.register, state.providers),
            case_of(session, reference),
            data_dir=state.settings.data_dir,
            secret=state.secret,
            now=state.clock.now(),
            actor=DPO,
        )
        assert not package.failures


def stored_files(state: State, kind: str) -> list[Path]:
    directory = state.settings.data_dir / "rights" / kind
    return sorted(directory.glob("*.bin")) if directory.exists() else []


def audit_actions(state: State) -> list[str]:
    with state.sessions() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


def test_the_package_is_downloaded_once_through_its_link_and_then_deleted(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    submit_and_send(client, state, clock)
    send(state, clock)
    reference = opened(state)
    offer(state, reference)
    [mail] = send(state, clock)
    link = links(body(mail), "download")
    assert "works once" in body(mail)
    [stored] = stored_files(state, "packages")
    sealed = stored.read_bytes()
    assert (
        b"PK\x03\x04" not in sealed and b"index.html" not in sealed and b"data.json" not in sealed
    )
    assert stored.stat().st_mode & 0o777 == 0o600
    page = client.get(link)  # a link checker following it uses nothing up
    assert page.status_code == 200 and "Download my data" in page.text
    token = link.split("token=")[1].split("&")[0]
    form = {"token": token, "lang": "en"}
    got = client.post(f"/rights/download/{reference}", data=form)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "application/zip"
    assert got.headers["cache-control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(got.content)) as archive:
        assert "index.html" in archive.namelist() and "data.json" in archive.namelist()
        assert EMAIL.lower() in archive.read("data.json").decode().lower()
    assert stored_files(state, "packages") == []
    again = client.post(f"/rights/download/{reference}", data=form)
    assert again.status_code == 410 and "already used" in again.text
    wrong = client.post(f"/rights/download/{reference}", data={"token": "x" * 24})
    assert wrong.status_code == 404 and "not valid" in wrong.text
    assert "downloaded" in events(state, reference)
    assert "rights.download" in audit_actions(state)
    with state.sessions() as session:
        row = session.scalars(select(RightsDownload)).one()
        assert row.path is None and row.file_key is None and row.downloaded_at is not None
        notice = session.scalars(select(RightsNotice)).one()
        assert notice.params is None  # the token it held is forgotten


def test_an_expired_link_is_refused_and_its_package_purged_with_a_receipt(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    reference = opened(state)
    offer(state, reference)
    [mail] = send(state, clock)
    token = links(body(mail), "download").split("token=")[1].split("&")[0]
    clock.advance(dt.timedelta(days=state.register.rights.download_link_days, seconds=1))
    late = client.post(f"/rights/download/{reference}", data={"token": token, "lang": "fr"})
    assert late.status_code == 410 and "a expiré" in late.text
    assert len(stored_files(state, "packages")) == 1
    run_retention(state.sessions, state.register, state.stores, state.clock)
    assert stored_files(state, "packages") == []
    with state.sessions() as session:
        receipt = session.scalars(
            select(PurgeReceipt).where(PurgeReceipt.store == "rights_download")
        ).one()
        assert receipt.rows_affected == 1 and receipt.period == "P7D"
    assert "package_expired" in events(state, reference)
    run_retention(state.sessions, state.register, state.stores, state.clock)
    with state.sessions() as session:
        rows = session.scalars(
            select(PurgeReceipt.rows_affected).where(PurgeReceipt.store == "rights_download")
        ).all()
        assert rows == [1, 0]


# -- the identity document ------------------------------------------------------------------


def agent_of(client: TestClient, state: State, clock: FrozenClock) -> SignedIn:
    return signed_in(client, state, clock, "agent@example.org", "agent")


def case_page_csrf(agent: SignedIn) -> str:
    return csrf_of(agent.client.get("/admin").text)


def doubt(agent: SignedIn, reference: str, reason: str) -> Response:
    return agent.client.post(
        f"/admin/rights/{reference}/identity/doubt",
        data={"reason": reason, "csrf": case_page_csrf(agent)},
        follow_redirects=False,
    )


def upload(client: TestClient, link: str, content: bytes, name: str = "id.png") -> Response:
    reference = link.split("/rights/document/")[1].split("?")[0]
    token = link.split("token=")[1].split("&")[0]
    return client.post(
        f"/rights/document/{reference}",
        data={"token": token, "lang": "ro"},
        files={"document": (name, content, "image/png")},
    )


def documents_on_disk(state: State) -> list[Path]:
    return stored_files(state, "documents")


def test_a_document_is_asked_on_a_recorded_doubt_checked_by_content_and_deleted_on_decision(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    agent = agent_of(client, state, clock)
    reference = opened(state)
    with unit_of_work(state.sessions) as session:
        case_of(session, reference).language = "ro"
    no_reason = doubt(agent, reference, "   ")
    assert no_reason.status_code == 400
    no_csrf = agent.client.post(
        f"/admin/rights/{reference}/identity/doubt", data={"reason": "the name differs"}
    )
    assert no_csrf.status_code in (403, 422)
    recorded = doubt(agent, reference, "The letter's signature differs from the one on file.")
    assert recorded.status_code == 303
    [mail] = send(state, clock)
    text = body(mail)
    assert "CNP" in text and "fotografia" in text  # the masking advice, in Romanian
    link = links(text, "document")
    page = client.get(link)
    assert page.status_code == 200 and "CNP" in page.text
    public = TestClient(client.app)
    wrong = upload(public, link, b"<script>alert(1)</script>", "id.png")
    assert wrong.status_code == 400 and "PDF" in wrong.text
    big = upload(public, link, PNG + b"\x00" * (documents.MAX_DOCUMENT_BYTES + 1))
    assert big.status_code == 400 and "5120 KB" in big.text
    huge = upload(public, link, PNG + b"\x00" * (documents.MAX_DOCUMENT_BYTES + 128 * 1024))
    assert huge.status_code == 413
    assert documents_on_disk(state) == []
    done = upload(public, link, PNG)
    assert done.status_code == 200, done.text
    [stored] = documents_on_disk(state)
    sealed = stored.read_bytes()
    assert PNG[:8] not in sealed and b"Ana Popescu" not in sealed
    shown = agent.client.get(f"/admin/rights/{reference}/identity/document")
    assert shown.status_code == 200 and shown.content == PNG
    assert "sandbox" in shown.headers["content-security-policy"]
    assert "rights.identity_view" in audit_actions(state)
    decided = agent.client.post(
        f"/admin/rights/{reference}/identity/decision",
        data={"decision": "accepted", "csrf": case_page_csrf(agent)},
        follow_redirects=False,
    )
    assert decided.status_code == 303
    assert documents_on_disk(state) == []
    gone = agent.client.get(f"/admin/rights/{reference}/identity/document")
    assert gone.status_code == 400
    with state.sessions() as session:
        row = session.scalars(select(RightsDocument)).one()
        assert (row.path, row.file_key, row.decision) == (None, None, "accepted")
        assert row.media_type == "image/png" and str(row.decided_by).startswith("user:")
        assert case_of(session, reference).verified_at is not None
    kinds = events(state, reference)
    # accepting the document verifies the case, which acknowledges the person (once)
    assert kinds[-3:] == ["identity_accepted", "verified", "notice_queued"]
    assert upload(public, link, PNG).status_code == 404


def test_an_undecided_document_is_deleted_after_the_limit_with_a_receipt(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    agent = agent_of(client, state, clock)
    reference = opened(state)
    doubt(agent, reference, "The request came from an address we never saw.")
    [mail] = send(state, clock)
    assert upload(client, links(body(mail), "document"), PNG).status_code == 200
    assert len(documents_on_disk(state)) == 1
    clock.advance(dt.timedelta(days=state.register.rights.identity_document_max_days - 1))
    run_retention(state.sessions, state.register, state.stores, state.clock)
    assert len(documents_on_disk(state)) == 1  # not yet
    clock.advance(dt.timedelta(days=1, seconds=1))
    run_retention(state.sessions, state.register, state.stores, state.clock)
    assert documents_on_disk(state) == []
    with state.sessions() as session:
        row = session.scalars(select(RightsDocument)).one()
        assert row.decision == "expired" and row.path is None and row.file_key is None
        receipts = session.scalars(
            select(PurgeReceipt.rows_affected).where(PurgeReceipt.store == "rights_document")
        ).all()
        assert receipts == [0, 1]


def test_the_status_page_links_to_the_upload_when_a_document_is_asked(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    answer = client.post("/rights", data={"rights": ["access"], "email": EMAIL, "lang": "fr"})
    reference = reference_of(answer)
    status = re.search(r'href="(/rights/status/[^"]+)"', answer.text)
    assert status
    status_path = status.group(1).replace("&amp;", "&")
    assert "/rights/document/" not in client.get(status_path).text
    agent = agent_of(client, state, clock)
    assert (
        doubt(agent, reference, "Two requests, two different postal addresses.").status_code == 303
    )
    page = TestClient(client.app).get(status_path)
    found = re.search(r'href="(/rights/document/[^"]+)"', page.text)
    assert found, page.text
    link = found.group(1).replace("&amp;", "&")
    photo = PNG + b"\x00" * (2 * 1024 * 1024)  # a phone photo is larger than other bodies
    assert len(photo) > state.settings.max_body_bytes
    assert upload(TestClient(client.app), link, photo).status_code == 200
    assert len(documents_on_disk(state)) == 1
    assert "Nous avons reçu votre justificatif" in TestClient(client.app).get(status_path).text


def test_a_doubt_suspends_the_verification_and_optionally_the_clock(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    rights = state.register.rights.model_copy(update={"pause_while_verifying": True})
    state.register = state.register.model_copy(update={"rights": rights})
    answer = client.post("/rights", data={"rights": ["access"], "email": EMAIL, "lang": "en"})
    reference = reference_of(answer)
    status = re.search(r'href="(/rights/status/[^"]+)"', answer.text)
    assert status
    [mail] = send(state, clock)
    assert verify(client, reference, code_in(body(mail), reference)).status_code == 200
    agent = agent_of(client, state, clock)
    assert doubt(agent, reference, "The e-mail account was reported stolen.").status_code == 303
    with state.sessions() as session:
        case = case_of(session, reference)
        assert case.verified_at is None  # nothing is done until the document decides
        received, due = case.received_at.date(), case.due_at
    public = TestClient(client.app)
    page = public.get(status.group(1).replace("&amp;", "&"))
    assert "Awaiting a proof of identity from you" in page.text
    send(state, clock)
    clock.advance(dt.timedelta(days=5))
    link = re.search(r'href="(/rights/document/[^"]+)"', page.text)
    assert link
    assert upload(public, link.group(1).replace("&amp;", "&"), PNG).status_code == 200
    with state.sessions() as session:
        moved = case_of(session, reference).due_at
    assert moved == due_date(received, "RO", 1, 5) and moved > due
    assert "clock_paused" in events(state, reference)


# -- minimisation -----------------------------------------------------------------------------


def test_requests_never_confirmed_are_closed_and_their_identifiers_erased(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    first = client.post("/rights", data={"rights": ["access"], "email": EMAIL, "lang": "en"})
    reference = reference_of(first)
    send(state, clock)
    clock.advance(dt.timedelta(days=state.register.rights.verification_window_days - 1))
    confirmed = reference_of(
        client.post("/rights", data={"rights": ["erasure"], "email": EMAIL, "lang": "en"})
    )
    run_retention(state.sessions, state.register, state.stores, state.clock)
    clock.advance(dt.timedelta(days=1, seconds=1))
    dry = run_retention(state.sessions, state.register, state.stores, state.clock, dry_run=True)
    assert [r.rows for r in dry if r.store == "rights_unverified"] == [1]
    with state.sessions() as session:
        assert case_of(session, reference).email is not None  # a dry run changes nothing
    run_retention(state.sessions, state.register, state.stores, state.clock)
    with state.sessions() as session:
        case = case_of(session, reference)
        assert case.status == "closed" and case.outcome == "not_verified"
        assert (case.email, case.email_index, case.phone, case.phone_index) == (None,) * 4
        assert (
            session.scalar(
                select(func.count())
                .select_from(RightsVerification)
                .where(RightsVerification.case_id == case.id)
            )
            == 0
        )
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
        # the other request is still inside its window
        assert str(case_of(session, confirmed).email).lower() == EMAIL.lower()
        receipts = session.scalars(
            select(PurgeReceipt.rows_affected).where(PurgeReceipt.store == "rights_unverified")
        ).all()
        assert receipts == [0, 1]
    assert events(state, reference)[-1] == "identifiers_erased"
    again = client.post("/rights", data={"rights": ["access"], "email": EMAIL, "lang": "en"})
    assert again.status_code == 200 and reference_of(again) != reference


# -- a request by post ------------------------------------------------------------------------


def refused(state: State, reference: str, clock: FrozenClock) -> None:
    with unit_of_work(state.sessions) as session:
        notify.outcome(
            session,
            case_of(session, reference),
            "refusal",
            reasons="We hold nothing under the identifiers given.",
            register=state.register,
            now=clock.now(),
        )


def test_a_request_by_post_gets_a_printable_letter(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    reference = opened(state, channel="post")
    refused(state, reference, clock)
    assert send(state, clock) == []  # nothing by e-mail: the answer goes by post
    with state.sessions() as session:
        notice = session.scalars(select(RightsNotice)).one()
        assert notice.channel == "letter" and notice.outbox_id is None
    agent = agent_of(client, state, clock)
    letter = agent.client.get(f"/admin/rights/{reference}/letters/{notice.id}")
    assert letter.status_code == 200
    assert "@media print" in letter.text and "We hold nothing" in letter.text
    assert "ANSPDCP" in letter.text and "Art. 79" in letter.text
    assert state.register.operator.legal_name in letter.text
    assert "rights.letter_view" in audit_actions(state)
    assert agent.client.get(f"/admin/rights/{reference}/letters/{notice.id + 1}").status_code == 404
    auditor = signed_in(TestClient(client.app), state, clock, "auditor@example.org", "auditor")
    assert auditor.client.get(f"/admin/rights/{reference}/letters/{notice.id}").status_code == 403


@pytest.mark.parametrize("decision", ["maybe", ""])
def test_a_decision_must_be_accepted_or_rejected(
    client: TestClient, state: State, clock: FrozenClock, decision: str
) -> None:
    agent = agent_of(client, state, clock)
    reference = opened(state)
    refused = agent.client.post(
        f"/admin/rights/{reference}/identity/decision",
        data={"decision": decision, "csrf": case_page_csrf(agent)},
    )
    assert refused.status_code in (400, 422)
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RightsDocument)) == 0


def test_a_letter_is_dated_on_the_controllers_clock(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    """A letter written at midnight in Paris (23:00 UTC the day before) bears the Paris date,
    and one a minute earlier the day before."""
    rights = state.register.rights.model_copy(update={"time_zone": "Europe/Paris"})
    state.register = state.register.model_copy(update={"rights": rights})
    clock.moment = dt.datetime(2026, 1, 15, 22, 59, tzinfo=dt.UTC)
    reference = opened(state, channel="post")
    dates = []
    agent = agent_of(client, state, clock)
    for _ in range(2):
        refused(state, reference, clock)
        with state.sessions() as session:
            notice = session.scalars(select(RightsNotice).order_by(RightsNotice.id.desc())).first()
            assert notice is not None
        letter = agent.client.get(f"/admin/rights/{reference}/letters/{notice.id}")
        assert letter.status_code == 200
        found = re.search(r'<p class="date">([0-9-]+)</p>', letter.text)
        assert found
        dates.append(found.group(1))
        clock.advance(dt.timedelta(minutes=1))  # 23:00 UTC: 16 January, 00:00 in Paris
    assert dates == ["2026-01-15", "2026-01-16"]
