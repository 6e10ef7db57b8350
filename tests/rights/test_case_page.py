"""The admin case page drives the whole case: the identity-document flow (a recorded doubt,
the traced view, the decision), the letters of a request by post, and one acknowledgement per
case however the case was verified."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gardien.deps import State
from gardien.rights import notify
from gardien.rights.exchange import RightsNotice
from gardien.rights.models import RightsAnswer, RightsCase
from gardien.rights.service import timeline
from gardien.storage.clock import FrozenClock
from tests.rights.test_delivery import (
    PNG,
    agent_of,
    documents_on_disk,
    links,
    opened,
    upload,
)
from tests.rights.test_notices import body, send
from tests.rights.test_portal import events
from tests.security.signin import SignedIn, csrf_of


def _form(page: str, action: str) -> str:
    """The case page's form that posts to ``action`` (its HTML), which must be there."""
    found = re.search(rf'<form method="post" action="{re.escape(action)}".*?</form>', page, re.S)
    assert found, f"no form for {action}"
    return found.group(0)


def _post(agent: SignedIn, page: str, action: str, **fields: str) -> int:
    """Submit the page's form for ``action`` with its own CSRF token."""
    csrf = csrf_of(_form(page, action))
    answer = agent.client.post(action, data={"csrf": csrf, **fields}, follow_redirects=False)
    return answer.status_code


def _post_case(client: TestClient, state: State, clock: FrozenClock) -> tuple[SignedIn, str, str]:
    """An agent signed in, and the page of a case opened from a letter."""
    agent = agent_of(client, state, clock)
    case_page = f"/admin/rights/{opened(state, channel='post')}"
    return agent, case_page, agent.client.get(case_page).text


def _acknowledgements(state: State) -> int:
    with state.sessions() as session:
        notices = session.scalar(
            select(func.count())
            .select_from(RightsNotice)
            .where(RightsNotice.kind == "acknowledgement")
        )
        written = session.scalar(
            select(func.count())
            .select_from(RightsAnswer)
            .where(RightsAnswer.kind == "acknowledgement")
        )
    return int(notices or 0) + int(written or 0)


def test_the_case_page_asks_shows_and_decides_the_identity_document(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    agent = agent_of(client, state, clock)
    reference = opened(state)
    case_page = f"/admin/rights/{reference}"
    page = agent.client.get(case_page).text
    doubt = f"{case_page}/identity/doubt"
    assert 'name="reason"' in _form(page, doubt)
    assert _post(agent, page, doubt, reason="short") == 400  # a reason of 10+ characters
    assert _post(agent, page, doubt, reason="The signature differs from our file.") == 303
    page = agent.client.get(case_page).text
    assert "has not sent it yet" in page and doubt not in page  # one request at a time
    link = links(body(send(state, clock)[0]), "document")
    assert upload(TestClient(client.app), link, PNG).status_code == 200
    page = agent.client.get(case_page).text
    view = re.search(r'id="view-document" href="([^"]+)"', page)
    assert view and html.unescape(view.group(1)) == f"{case_page}/identity/document"
    shown = agent.client.get(view.group(1))
    assert shown.status_code == 200 and shown.content == PNG
    page = agent.client.get(case_page).text
    timeline = page.split('id="timeline"')[1]
    assert "identity_document_viewed" in timeline  # the traced view, in the case's timeline
    decision = f"{case_page}/identity/decision"
    assert 'value="accepted"' in _form(page, decision) and 'value="rejected"' in page
    assert _acknowledgements(state) == 0
    assert _post(agent, page, decision, decision="accepted") == 303
    assert documents_on_disk(state) == []
    assert events(state, reference)[-3:] == ["identity_accepted", "verified", "notice_queued"]
    assert _acknowledgements(state) == 1  # verifying acknowledged the person
    page = agent.client.get(case_page).text
    assert 'id="acknowledged"' in page and f"{case_page}/acknowledge" not in page
    [mail] = send(state, clock)
    assert "received and confirmed" in body(mail)


def test_a_letter_case_verified_by_the_agent_is_acknowledged_once_by_a_printable_letter(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    agent, case_page, page = _post_case(client, state, clock)
    reference = case_page.rsplit("/", 1)[1]
    assert 'id="letters"' not in page
    assert _post(agent, page, f"{case_page}/verify", basis="signed letter, address on file") == 303
    assert _acknowledgements(state) == 1
    assert send(state, clock) == []  # by post: a letter to print, no e-mail
    page = agent.client.get(case_page).text
    letter = re.search(rf'href="({case_page}/letters/(\d+))"', page)
    assert letter, "the acknowledgement letter is linked from the case page"
    printed = agent.client.get(letter.group(1))
    assert printed.status_code == 200 and reference in printed.text
    page = agent.client.get(case_page).text
    assert "letter_viewed" in page.split('id="timeline"')[1]
    # the answer template cannot send a second acknowledgement
    csrf = csrf_of(page)
    again = agent.client.post(
        f"{case_page}/acknowledge", data={"csrf": csrf, "message": "We received your letter."}
    )
    assert again.status_code == 409 and "acknowledged once" in again.text
    assert _acknowledgements(state) == 1


def test_an_acknowledgement_written_before_verification_is_not_repeated(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    agent, case_page, page = _post_case(client, state, clock)
    assert _post(agent, page, f"{case_page}/acknowledge", message="We received it.") == 303
    assert _acknowledgements(state) == 1
    page = agent.client.get(case_page).text
    assert _post(agent, page, f"{case_page}/verify", basis="signed letter, address on file") == 303
    assert _acknowledgements(state) == 1
    assert "verified" in events(state, case_page.rsplit("/", 1)[1])


def test_each_notice_leaves_the_sha256_of_its_content_in_the_timeline(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    agent, case_page, page = _post_case(client, state, clock)
    reference = case_page.rsplit("/", 1)[1]
    assert _post(agent, page, f"{case_page}/verify", basis="signed letter, address on file") == 303
    page = agent.client.get(case_page).text
    close = f"{case_page}/close"
    assert _post(agent, page, close, outcome="withdrawn", message="As you asked.") == 303
    with state.sessions() as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()
        notices = list(
            session.scalars(
                select(RightsNotice)
                .where(RightsNotice.case_id == case.id)
                .order_by(RightsNotice.id)
            )
        )
        assert [n.kind for n in notices] == ["acknowledgement", "answer"]
        digests = [notify.digest(session, case, n) for n in notices]
        details = [e.detail or "" for e in timeline(session, case) if e.kind == "letter_ready"]
    assert len(set(digests)) == 2 and all(re.fullmatch(r"[0-9a-f]{64}", d) for d in digests)
    for notice, value, detail in zip(notices, digests, details, strict=True):
        assert f"notice {notice.id}, content sha256 {value}" in detail
    # the digest follows the content: another wording version gives another digest
    with state.sessions() as session:
        case = session.get_one(RightsCase, notices[0].case_id)
        first = session.get_one(RightsNotice, notices[0].id)
        again = notify.digest(session, case, first)
        notify.TEMPLATE_VERSION += 1
        try:
            changed = notify.digest(session, case, first)
        finally:
            notify.TEMPLATE_VERSION -= 1
    assert again == digests[0] and changed != digests[0]
