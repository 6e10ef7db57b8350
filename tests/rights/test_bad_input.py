"""Requests for another person's data (the rights issue's "bad input"): asking with someone
else's address sends the code to that person, not to the asker, and discloses nothing; a
link or token of one case opens nothing of another case, and a refused attempt uses nothing
up."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from gardien.deps import State
from gardien.rights.exchange import RightsDownload
from gardien.storage.clock import FrozenClock
from tests.forms.test_retention import submit_and_send
from tests.rights.conftest import EMAIL
from tests.rights.test_delivery import (
    PNG,
    agent_of,
    case_page_csrf,
    doubt,
    links,
    offer,
    opened,
    stored_files,
    upload,
)
from tests.rights.test_notices import body, send
from tests.rights.test_portal import ask, deliver_code, events, reference_of, status_link, verify

OTHER = "mallory@example.net"


def test_asking_with_someone_elses_address_sends_the_code_to_them_and_discloses_nothing(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    submit_and_send(client, state, clock)  # Ana is known to Gardien
    send(state, clock)
    mallory = TestClient(client.app)
    answer = ask(mallory, EMAIL)
    assert answer.status_code == 200
    assert EMAIL.lower() not in answer.text.lower() and "Popescu" not in answer.text
    reference = reference_of(answer)
    code, recipient = deliver_code(state, clock)
    assert recipient.lower() == EMAIL.lower()  # the code went to Ana, never to Mallory
    # Mallory's status page says only that the request awaits confirmation
    page = mallory.get(status_link(answer))
    assert page.status_code == 200 and "Awaiting your confirmation" in page.text
    assert EMAIL.lower() not in page.text.lower()
    # guessing is refused and nothing is confirmed
    wrong = "00000000" if code != "00000000" else "11111111"
    refused = verify(mallory, reference, wrong)
    assert refused.status_code == 422 and EMAIL.lower() not in refused.text.lower()
    assert "verified" not in events(state, reference)


def test_a_link_of_one_case_opens_nothing_of_another(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    mine, theirs = opened(state), opened(state, email=OTHER)
    offer(state, mine)
    offer(state, theirs)
    mails = send(state, clock)
    by_reference = {ref: m for m in mails for ref in (mine, theirs) if ref in str(m["Subject"])}
    my_link = links(body(by_reference[mine]), "download")
    my_token = my_link.split("token=")[1].split("&")[0]
    public = TestClient(client.app)
    # my token on their reference: not valid, and their package is still there, unused
    crossed = public.post(f"/rights/download/{theirs}", data={"token": my_token, "lang": "en"})
    assert crossed.status_code == 404 and "not valid" in crossed.text
    assert len(stored_files(state, "packages")) == 2
    with state.sessions() as session:
        assert all(d.downloaded_at is None for d in session.scalars(select(RightsDownload)))
    # and my own link still works once
    got = public.post(f"/rights/download/{mine}", data={"token": my_token, "lang": "en"})
    assert got.status_code == 200 and got.headers["content-type"] == "application/zip"


def test_an_upload_link_of_one_case_cannot_send_a_document_to_another(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    agent = agent_of(client, state, clock)
    mine, theirs = opened(state), opened(state, email=OTHER)
    for reference in (mine, theirs):
        assert doubt(agent, reference, "The signature differs from our file.").status_code == 303
    mails = send(state, clock)
    [my_mail] = [m for m in mails if mine in str(m["Subject"])]
    my_link = links(body(my_mail), "document")
    crossed = upload(TestClient(client.app), my_link.replace(mine, theirs), PNG)
    assert crossed.status_code == 404
    assert stored_files(state, "documents") == []
    # nothing to see or decide on their case
    shown = agent.client.get(f"/admin/rights/{theirs}/identity/document")
    assert shown.status_code == 400
    decided = agent.client.post(
        f"/admin/rights/{theirs}/identity/decision",
        data={"decision": "accepted", "csrf": case_page_csrf(agent)},
    )
    assert decided.status_code == 400
    assert "verified" not in events(state, theirs)
