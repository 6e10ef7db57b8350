"""The rights cases in the admin: a letter recorded (scanned, encrypted, linked when repeated),
verified on a recorded basis, exported, closed; the queue's filters and figures; notes and
assignment; extensions inside and after the first month; refusals; CSRF; who may act."""

from __future__ import annotations

import datetime as dt
import html
import io
import re
import zipfile

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from gardien.deps import State
from gardien.retention.service import run_retention
from gardien.rights import answers
from gardien.rights.deadlines import due_date
from gardien.rights.exchange import RightsDownload, RightsNotice
from gardien.rights.models import RightsAnswer, RightsAttachment, RightsCase, RightsEvent
from gardien.rights.service import Desk, close_case, open_case
from gardien.security import service
from gardien.security.audit import Actor
from gardien.security.models import AuditEntry
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from gardien.storage.subjects import SubjectIdentity
from tests.security.signin import SignedIn, add_user, new_client, second_factor, signed_in
from tests.security.test_at_rest import hits, sqlite_files

EMAIL = "ana.letter@example.org"
PHONE = "+40211234567"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
DPO = Actor("dpo-1", "dpo")


def actions(state: State) -> list[str]:
    with state.sessions() as session:
        return [str(a) for a in session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq))]


def count(state: State, model: type[object]) -> int:
    with state.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def record(
    agent: SignedIn,
    day: dt.date,
    *,
    scan: tuple[str, bytes, str] | None = ("letter.png", PNG, "image/png"),
    **changes: object,
) -> httpx.Response:
    form: dict[str, object] = {
        "csrf": agent.csrf,
        "channel": "post",
        "received": day.isoformat(),
        "rights": ["access"],
        "email": EMAIL,
        "phone": "021 123 4567",
        "language": "ro",
        **changes,
    }
    files = {"scan": scan} if scan else None
    return agent.client.post("/admin/rights/new", data=form, files=files, follow_redirects=False)


def again(agent: SignedIn, clock: FrozenClock, email: str) -> None:
    """Sign in again after the clock moved past the session's idle timeout."""
    second_factor(agent.client, clock, email, agent.secret)


def reference_of(answer: httpx.Response) -> str:
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/admin/rights/(GR-\d{4}-[0-9A-F]{8})", answer.headers["location"])
    assert found, answer.headers["location"]
    return found.group(1)


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


def test_a_letter_is_recorded_verified_exported_and_closed(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    assert agent.client.get("/admin/rights/new").status_code == 200
    received = clock.now().date() - dt.timedelta(days=3)
    reference = reference_of(record(agent, received))
    # the deadline counts from the day the letter was received, not from today
    with state.sessions() as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()
        assert case.due_at == due_date(received, "RO")
        assert (case.channel, case.language, case.phone) == ("post", "ro", PHONE)
    listing = agent.client.get("/admin/rights")
    assert listing.status_code == 200 and reference in listing.text
    assert EMAIL not in listing.text and PHONE not in listing.text  # no identifier in the queue
    view = agent.client.get(f"/admin/rights/{reference}")
    assert view.status_code == 200 and EMAIL in view.text and PHONE in view.text
    assert "view.rights_case" in actions(state)
    # the scanned letter, decrypted only through a traced view
    link = re.search(rf"/admin/rights/{reference}/attachments/(\d+)", view.text)
    assert link
    document = agent.client.get(link.group(0))
    assert document.status_code == 200 and document.content == PNG
    assert document.headers["content-type"] == "image/png"
    assert "view.rights_attachment" in actions(state)
    # the same letter again is linked to the open case, not a second case
    again = record(agent, received, scan=("second.pdf", PDF, "application/pdf"))
    assert reference_of(again) == reference
    assert count(state, RightsCase) == 1 and count(state, RightsAttachment) == 2
    # export refused before verification, then verified on a recorded basis
    refused = agent.client.post(f"/admin/rights/{reference}/export", data={"csrf": agent.csrf})
    assert refused.status_code == 409
    verified = agent.client.post(
        f"/admin/rights/{reference}/verify",
        data={"csrf": agent.csrf, "basis": "letter signed, address matches"},
    )
    assert verified.status_code == 200 and "letter signed, address matches" in verified.text
    package = agent.client.post(f"/admin/rights/{reference}/export", data={"csrf": agent.csrf})
    assert package.status_code == 200
    assert package.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(package.content)).namelist()
    assert {"index.html", "data.json"} <= set(names)
    closed = agent.client.post(
        f"/admin/rights/{reference}/close",
        data={"csrf": agent.csrf, "outcome": "fulfilled", "message": "Here is your data."},
    )
    assert closed.status_code == 200 and "fulfilled" in closed.text
    with state.sessions() as session:  # a request by post is answered by a letter to print
        notices = session.execute(
            select(RightsNotice.kind, RightsNotice.channel, RightsNotice.outbox_id).order_by(
                RightsNotice.id
            )
        ).all()
        # the agent's verification acknowledged the request (once), the close answered it
        assert [tuple(n) for n in notices] == [
            ("acknowledgement", "letter", None),
            ("answer", "letter", None),
        ]
    steps = kinds(state, reference)
    for step in (
        "opened",
        "attached",
        "linked",
        "verified",
        "package_built",
        "package_downloaded",
        "answered",
        "closed",
    ):
        assert step in steps, step
    traced = actions(state)
    for action in ("rights.attached", "rights.linked", "rights.verified", "rights.export"):
        assert action in traced, action
    assert "rights.closed" in traced


@pytest.mark.parametrize(
    ("scan", "changes", "reason"),
    [
        (("letter.pdf", b"just some text, not a PDF", "application/pdf"), {}, "judged by"),
        (("big.png", PNG + b"\x00" * (10 * 1024 * 1024), "image/png"), {}, "larger than"),
        (("letter.png", PNG, "image/png"), {"received": "2026-02-30"}, "YYYY-MM-DD"),
        (("letter.png", PNG, "image/png"), {"received": "2026-01-16"}, "future"),
        (("letter.png", PNG, "image/png"), {"email": "not an address", "phone": ""}, "e-mail"),
        (("letter.png", PNG, "image/png"), {"email": "", "phone": ""}, "at least"),
        (("letter.png", PNG, "image/png"), {"rights": ["teleport"]}, "rights"),
        (("letter.png", PNG, "image/png"), {"channel": "fax"}, "arrived"),
    ],
)
def test_bad_intake_is_refused_with_nothing_written(
    client: TestClient,
    state: State,
    clock: FrozenClock,
    scan: tuple[str, bytes, str],
    changes: dict[str, object],
    reason: str,
) -> None:
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    answer = record(agent, clock.now().date(), scan=scan, **changes)
    assert answer.status_code == 400, answer.text
    assert reason in answer.text
    assert 'id="intake-error"' in answer.text  # the form again, with the reason
    typed = str(changes.get("email", EMAIL))
    assert typed == "" or f'value="{html.escape(typed)}"' in answer.text
    assert count(state, RightsCase) == 0
    assert count(state, RightsAttachment) == 0
    assert count(state, RightsEvent) == 0


def _case(state: State, clock: FrozenClock, rights: list[str], channel: str, **subject: str) -> str:
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            Desk(state.register, state.providers),
            SubjectIdentity(**subject),  # type: ignore[arg-type]
            rights,
            channel=channel,
            now=clock.now(),
            actor=DPO,
        )
        return case.reference


def test_the_queue_filters_and_its_figures(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    early = _case(state, clock, ["access"], "email", email="a@example.org")  # due 2026-02-16
    clock.advance(dt.timedelta(days=20))
    later = _case(state, clock, ["erasure"], "post", phone="+40211234568")
    portal = _case(state, clock, ["access", "portability"], "portal", email="b@example.org")
    with unit_of_work(state.sessions) as session:
        done = session.scalars(select(RightsCase).where(RightsCase.reference == portal)).one()
        close_case(session, done, clock.now(), DPO, "fulfilled")  # on time
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    mine = agent.client.post(
        f"/admin/rights/{later}/assign",
        data={"csrf": agent.csrf, "assignee": str(_user_id(state, "agent@example.org"))},
    )
    assert mine.status_code == 200

    def listed(query: str) -> set[str]:
        page = agent.client.get(f"/admin/rights?{query}")
        assert page.status_code == 200, page.text
        return set(re.findall(r"GR-\d{4}-[0-9A-F]{8}", page.text.split("<table", 1)[-1]))

    assert listed("") == {early, later, portal}
    assert listed("status=open") == {early, later}
    assert listed("status=closed") == {portal}
    assert listed("right=portability") == {portal}
    assert listed("right=access") == {early, portal}
    assert listed("channel=post") == {later}
    assert listed("assignee=me") == {later}
    assert listed("assignee=none") == {early, portal}
    assert listed("from=2026-02-01") == {later, portal}
    assert listed("to=2026-01-20") == {early}
    # 2026-02-04: the first case is due on 2026-02-16, within 7 days only from the 9th
    assert listed("due=soon") == set()
    clock.advance(dt.timedelta(days=6))
    again(agent, clock, "agent@example.org")
    assert listed("due=soon") == {early}
    clock.advance(dt.timedelta(days=10))
    again(agent, clock, "agent@example.org")
    assert listed("due=late") == {early}
    page = agent.client.get("/admin/rights").text
    assert re.search(r'id="figure-late">\s*<a[^>]*>1<', page)
    assert "late by 4 days" in page
    assert "Open cases by days left: late 1, 0–7 0, 8–14 1, 15–31 0, 32+ 0" in page
    assert "100 % (1 / 1)" in page
    assert agent.client.get("/admin/rights?status=lost").status_code == 400
    assert agent.client.get("/admin/rights?due=tomorrow").status_code == 400


def _user_id(state: State, email: str) -> int:
    with state.sessions() as session:
        user = service.find_user_by_email(session, email)
        assert user is not None
        return user.id


def test_the_on_time_rate_counts_cases_closed_after_their_due_date(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    first = _case(state, clock, ["access"], "email", email="a@example.org")
    second = _case(state, clock, ["access"], "email", email="c@example.org")
    with unit_of_work(state.sessions) as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == first)).one()
        close_case(session, case, clock.now() + dt.timedelta(days=10), DPO, "fulfilled")
        late = session.scalars(select(RightsCase).where(RightsCase.reference == second)).one()
        close_case(session, late, clock.now() + dt.timedelta(days=60), DPO, "fulfilled")
    clock.advance(dt.timedelta(days=61))
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    assert "50 % (1 / 2)" in agent.client.get("/admin/rights").text


def test_notes_and_assignment_are_traced_and_notes_never_stored_in_clear(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    reference = _case(state, clock, ["access"], "email", email="a@example.org")
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    add_user(state, "auditor@example.org", "auditor")
    note = "Telephoned Mrs Quintal-Vasilescu, she confirms"
    noted = agent.client.post(
        f"/admin/rights/{reference}/note", data={"csrf": agent.csrf, "note": note}
    )
    assert noted.status_code == 200 and note in noted.text
    auditor_id = _user_id(state, "auditor@example.org")
    wrong = agent.client.post(
        f"/admin/rights/{reference}/assign", data={"csrf": agent.csrf, "assignee": str(auditor_id)}
    )
    assert wrong.status_code == 400  # an auditor cannot handle cases
    agent_id = _user_id(state, "agent@example.org")
    assigned = agent.client.post(
        f"/admin/rights/{reference}/assign", data={"csrf": agent.csrf, "assignee": str(agent_id)}
    )
    assert assigned.status_code == 200
    steps = kinds(state, reference)
    assert "noted" in steps and "assigned" in steps
    assert {"rights.noted", "rights.assigned"} <= set(actions(state))
    with state.engine.connect() as connection:
        rows = connection.execute(text("SELECT notes FROM rights_case")).all()
        events = connection.execute(text("SELECT detail FROM rights_event")).all()
    raw = b"".join(bytes(r[0]) for r in rows if r[0] is not None)
    assert raw, "the note is stored"
    for spelling in (note, "Quintal-Vasilescu"):
        assert spelling.encode() not in raw
        assert all(spelling not in (e[0] or "") for e in events)
    if state.engine.dialect.name == "sqlite":  # the files themselves: main file and WAL
        files = sqlite_files(state.settings)
        assert hits(files, reference), "the scan must see the latest writes"
        for spelling in (note, "Quintal-Vasilescu"):
            assert hits(files, spelling) == []


def test_an_extension_is_allowed_within_the_first_month_only(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    inside = _case(state, clock, ["access"], "email", email="a@example.org")
    shorter = _case(state, clock, ["access"], "email", email="d@example.org")
    after = _case(state, clock, ["access"], "email", email="c@example.org")
    # received 2026-01-15: the first month ends on 2026-02-16 (the 15th is a Sunday)
    clock.advance(dt.datetime(2026, 2, 16, 18, tzinfo=dt.UTC) - clock.now())
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    draft = agent.client.get(f"/admin/rights/{inside}").text
    assert answers.REASONS_MARK in draft and answers.DUE_MARK in draft
    no_reasons = agent.client.post(
        f"/admin/rights/{inside}/extend",
        data={"csrf": agent.csrf, "reasons": " ", "message": "We need more time."},
    )
    assert no_reasons.status_code == 400
    extended = agent.client.post(
        f"/admin/rights/{inside}/extend",
        data={
            "csrf": agent.csrf,
            "reasons": "three years of records across four systems",
            "message": f"We need more time: {answers.REASONS_MARK}",
        },
    )
    assert extended.status_code == 200, extended.text
    with state.sessions() as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == inside)).one()
        assert case.due_at == dt.date(2026, 4, 15) and case.extended_on == dt.date(2026, 2, 16)
        [notice] = session.scalars(select(RightsAnswer).where(RightsAnswer.case_id == case.id))
        assert notice.kind == "extension"
        assert notice.body == "We need more time: three years of records across four systems"
    twice = agent.client.post(
        f"/admin/rights/{inside}/extend",
        data={"csrf": agent.csrf, "reasons": "again", "message": answers.REASONS_MARK},
    )
    assert twice.status_code == 409
    one_more_month = agent.client.post(
        f"/admin/rights/{shorter}/extend",
        data={
            "csrf": agent.csrf,
            "reasons": "a backup must be restored",
            "message": f"Due {answers.DUE_MARK}: {answers.REASONS_MARK}",
            "months": "1",
        },
    )
    assert one_more_month.status_code == 200
    with state.sessions() as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == shorter)).one()
        assert case.due_at == dt.date(2026, 3, 16)  # 15 March 2026 is a Sunday
        body = session.scalars(select(RightsAnswer.body).where(RightsAnswer.case_id == case.id))
        expected = answers.long_date(dt.date(2026, 3, 16), case.language)
        assert body.one() == f"Due {expected}: a backup must be restored"
    three = agent.client.post(
        f"/admin/rights/{after}/extend",
        data={"csrf": agent.csrf, "reasons": "x", "message": "x", "months": "3"},
    )
    assert three.status_code in (400, 422)  # never beyond two further months
    clock.advance(dt.timedelta(days=1))  # 2026-02-17: the first month is over
    again(agent, clock, "agent@example.org")
    late = agent.client.post(
        f"/admin/rights/{after}/extend",
        data={"csrf": agent.csrf, "reasons": "busy", "message": answers.REASONS_MARK},
    )
    assert late.status_code == 409 and "2026-02-16" in late.text
    assert "can no longer be extended" in agent.client.get(f"/admin/rights/{after}").text
    with state.sessions() as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == after)).one()
        assert case.due_at == dt.date(2026, 2, 16) and case.extended_on is None
    assert "rights.extended" in actions(state)


def test_a_refusal_states_reasons_complaint_and_judicial_remedy(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    reference = _case(state, clock, ["erasure"], "email", email="a@example.org")
    page = agent.client.get(f"/admin/rights/{reference}").text
    found = re.search(
        r'<textarea id="refusal-message" name="message"[^>]*>(.*?)</textarea>', page, re.S
    )
    assert found
    draft = html.unescape(found.group(1))
    authority = state.register.supervisory_authority
    assert authority.email in draft and answers.judicial_remedy("en") in draft
    url = f"/admin/rights/{reference}/close"
    base = {"csrf": agent.csrf, "outcome": "refused", "message": draft}
    assert agent.client.post(url, data={**base, "reasons": ""}).status_code == 400
    stripped = draft.replace(answers.judicial_remedy("en"), "")
    no_remedy = agent.client.post(
        url, data={**base, "reasons": "manifestly excessive", "message": stripped}
    )
    assert no_remedy.status_code == 400 and "judicial remedy" in no_remedy.text
    with state.sessions() as session:
        assert session.scalar(select(RightsCase.status)) == "open"
    refused = agent.client.post(
        url, data={**base, "reasons": "the data are held under a legal hold"}
    )
    assert refused.status_code == 200
    with state.sessions() as session:
        case = session.scalars(select(RightsCase)).one()
        assert (case.status, case.outcome) == ("closed", "refused")
        body = session.scalars(select(RightsAnswer.body)).one()
        assert "the data are held under a legal hold" in body and answers.REASONS_MARK not in body


def test_state_changes_need_the_csrf_token_and_the_handle_rights_permission(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    reference = _case(state, clock, ["access"], "email", email="a@example.org")
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    forged = agent.client.post(
        f"/admin/rights/{reference}/note", data={"csrf": "forged", "note": "x"}
    )
    assert forged.status_code == 403
    assert record(agent, clock.now().date(), csrf="forged").status_code == 403
    with state.sessions() as session:
        assert session.scalar(select(RightsCase.notes)) is None
        assert session.scalar(select(func.count()).select_from(RightsCase)) == 1
    for role in ("auditor", "admin"):
        other = signed_in(new_client(client), state, clock, f"{role}@example.org", role)
        assert other.client.get("/admin/rights").status_code == 403
        assert other.client.get(f"/admin/rights/{reference}").status_code == 403
        acted = other.client.post(
            f"/admin/rights/{reference}/close",
            data={"csrf": other.csrf, "outcome": "withdrawn"},
        )
        assert acted.status_code == 403
    dpo = signed_in(new_client(client), state, clock, "dpo@example.org", "dpo")
    assert dpo.client.get("/admin/rights").status_code == 200
    with state.sessions() as session:
        assert session.scalar(select(RightsCase.status)) == "open"


def test_attachments_answers_and_notes_go_with_the_case_and_into_an_erasure(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    reference = reference_of(record(agent, clock.now().date(), rights=["erasure"]))
    agent.client.post(f"/admin/rights/{reference}/note", data={"csrf": agent.csrf, "note": "n"})
    agent.client.post(
        f"/admin/rights/{reference}/verify", data={"csrf": agent.csrf, "basis": "signed"}
    )
    wrong = agent.client.post(
        f"/admin/rights/{reference}/erase", data={"csrf": agent.csrf, "confirm": "yes"}
    )
    assert wrong.status_code == 400 and count(state, RightsAttachment) == 1
    erased = agent.client.post(
        f"/admin/rights/{reference}/erase", data={"csrf": agent.csrf, "confirm": reference}
    )
    assert erased.status_code == 200 and "Erasure receipt" in erased.text
    assert count(state, RightsAttachment) == 0  # the scanned letter is erased
    with state.sessions() as session:
        case = session.scalars(select(RightsCase)).one()
        assert case.status == "closed" and case.receipt
        assert '"store": "rights_requests"' in case.receipt and case.notes  # the file is kept
    # three years after closure the case goes, with its notes, answers and timeline
    with unit_of_work(state.sessions) as session:
        case = session.scalars(select(RightsCase)).one()
        session.add(
            RightsAttachment(
                case_id=case.id,
                added_at=clock.now(),
                media_type="image/png",
                size=len(PNG),
                sha256="0" * 64,
                content="AA==",
            )
        )
        session.add(
            RightsAnswer(
                case_id=case.id,
                at=clock.now(),
                actor="user:1",
                kind="outcome",
                language="ro",
                body="done",
                sha256="0" * 64,
            )
        )
    clock.advance(dt.timedelta(days=3 * 365 + 10))
    run_retention(state.sessions, state.register, state.stores, clock)
    for model in (RightsCase, RightsEvent, RightsAttachment, RightsAnswer):
        assert count(state, model) == 0, model


def test_the_package_is_sent_to_the_person_by_a_one_time_link_and_the_case_closes(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    reference = _case(state, clock, ["access"], "email", email="a@example.org")
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    url = f"/admin/rights/{reference}/send-package"
    assert agent.client.post(url, data={"csrf": agent.csrf}).status_code == 409  # unverified
    acknowledged = agent.client.post(
        f"/admin/rights/{reference}/acknowledge",
        data={"csrf": agent.csrf, "message": "We received your request."},
    )
    assert acknowledged.status_code == 200
    agent.client.post(
        f"/admin/rights/{reference}/verify", data={"csrf": agent.csrf, "basis": "replied from it"}
    )
    sent = agent.client.post(url, data={"csrf": agent.csrf})
    assert sent.status_code == 200 and "closed (fulfilled)" in sent.text
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RightsDownload)) == 1
        notices = session.execute(
            select(RightsNotice.kind, RightsNotice.channel).order_by(RightsNotice.id)
        ).all()
        assert [tuple(n) for n in notices] == [("answer", "email"), ("outcome", "email")]
        assert session.scalar(select(RightsCase.outcome)) == "fulfilled"
    steps = kinds(state, reference)
    assert {"answered", "package_built", "link_created", "notice_queued", "closed"} <= set(steps)
    assert agent.client.post(url, data={"csrf": agent.csrf}).status_code == 409  # closed


def test_a_scan_larger_than_the_general_body_limit_is_accepted_on_the_intake_path_only(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    agent = signed_in(client, state, clock, "agent@example.org", "agent")
    big = PNG + b"\x00" * (3 * 1024 * 1024)  # over GARDIEN_MAX_BODY_BYTES (1 MB)
    assert len(big) > state.settings.max_body_bytes
    reference = reference_of(record(agent, clock.now().date(), scan=("big.png", big, "image/png")))
    with state.sessions() as session:
        assert session.scalar(select(RightsAttachment.size)) == len(big)
    elsewhere = agent.client.post(
        f"/admin/rights/{reference}/note",
        data={"csrf": agent.csrf},
        files={"note": ("note.txt", big, "text/plain")},
    )
    assert elsewhere.status_code == 413
