"""The outbox against a real SMTP server on loopback: what is sent, to whom, with which
headers; what happens when the server is down, refuses, or two senders run at once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from gardien.deps import State
from gardien.forms import jobs
from gardien.forms.jobs import MAX_ATTEMPTS, SendReport, retry_dead, send_due
from gardien.forms.models import DisclosureEntry, OutboxMessage
from gardien.forms.provider import FormsProvider, remove_submissions
from gardien.register.schema import EmailContent
from gardien.storage.clock import FrozenClock
from gardien.storage.database import make_engine, session_factory, unit_of_work
from gardien.storage.subjects import SubjectIdentity
from tests.forms.smtp import (
    PERSONAL,
    VISITOR,
    Mailbox,
    only_notification,
    smtp_server,
    submit,
    use_smtp,
)
from tests.support import free_port

OPERATOR_MAILBOX = "privacy@cegedim-rx.ro"


def outbox(state: State) -> list[OutboxMessage]:
    with state.sessions() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def disclosures(state: State) -> list[DisclosureEntry]:
    with state.sessions() as session:
        return list(session.scalars(select(DisclosureEntry).order_by(DisclosureEntry.id)))


@pytest.mark.parametrize(
    ("language", "subject", "sentences"),
    [
        (
            "fr",
            "Nous avons bien reçu votre message (CEGEDIM RX SRL)",
            ["CEGEDIM RX SRL a bien reçu le message", "90 jours", "/privacy?lang=fr"],
        ),
        (
            "ro",
            "Am primit mesajul dumneavoastră (CEGEDIM RX SRL)",
            ["CEGEDIM RX SRL a primit mesajul", "90 de zile", "/privacy?lang=ro", "ș"],
        ),
    ],
)
def test_notice_and_acknowledgement_are_delivered_with_their_headers(
    state: State, clock: FrozenClock, language: str, subject: str, sentences: list[str]
) -> None:
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        use_smtp(state, f"smtp://127.0.0.1:{port}")
        submission, queued = submit(state, language=language)
        assert [row.status for row in queued] == ["pending", "pending"]
        report = send_due(state, now=clock.now())
    assert report == SendReport(claimed=2, sent=2)
    by_recipient = {tuple(r.rcpt_tos): r for r in mailbox.received}
    assert set(by_recipient) == {(OPERATOR_MAILBOX,), (VISITOR["email"],)}

    notice = by_recipient[(OPERATOR_MAILBOX,)]
    assert notice.mail_from == "privacy@cegedim-rx.ro"  # the register's operator.contact_email
    headers = notice.message
    assert headers["From"] == "Cegedim <privacy@cegedim-rx.ro>"
    assert headers["To"] == OPERATOR_MAILBOX
    assert headers["Subject"] == "New submission on the form “Contact us”"
    assert headers["Message-ID"] == queued[0].message_id
    assert headers["Message-ID"].endswith("@127.0.0.1>")
    assert f"http://127.0.0.1:8000/admin/inbox/{submission.public_id}" in notice.body
    for value in PERSONAL:
        assert value not in notice.body
        assert value.encode() not in notice.raw

    ack = by_recipient[(VISITOR["email"],)]
    assert ack.message["Subject"] == subject
    assert ack.message["To"].addresses[0].display_name == "Ana-Maria Popescu"
    assert ack.message_id == queued[1].message_id
    for sentence in sentences:
        assert sentence in ack.body
    assert VISITOR["message"] not in ack.body
    assert VISITOR["phone"] not in ack.body

    rows = outbox(state)
    assert [(r.status, r.sent_at, r.attempts) for r in rows] == [("sent", clock.now(), 0)] * 2
    logged = disclosures(state)
    assert [(d.recipient, d.recipient_kind, d.channel, d.message_id) for d in logged] == [
        (OPERATOR_MAILBOX, "operator", "smtp", queued[0].message_id),
        (VISITOR["email"], "subject", "smtp", queued[1].message_id),
    ]
    assert {d.activity for d in logged} == {"contact_forms"}
    assert {d.submission_id for d in logged} == {submission.id}


def test_server_down_queues_then_delivers_once_when_it_is_back(
    state: State, clock: FrozenClock
) -> None:
    port = free_port()  # nothing listens there yet
    use_smtp(state, f"smtp://127.0.0.1:{port}")
    _, queued = submit(state)
    first = send_due(state, now=clock.now())
    assert first == SendReport(claimed=2, retrying=2)
    rows = outbox(state)
    assert [(r.status, r.attempts, r.last_error) for r in rows] == [
        ("pending", 1, "ConnectionRefusedError")
    ] * 2
    assert {r.next_attempt_at for r in rows} == {clock.now() + dt.timedelta(minutes=1)}
    assert send_due(state, now=clock.now()).claimed == 0  # waits for its time

    mailbox = Mailbox()
    clock.advance(dt.timedelta(minutes=1))
    with smtp_server(mailbox, port=port):
        assert send_due(state, now=clock.now()) == SendReport(claimed=2, sent=2)
        clock.advance(dt.timedelta(hours=1))
        assert send_due(state, now=clock.now()).claimed == 0
    assert sorted(mailbox.message_ids()) == sorted(row.message_id for row in queued)
    assert [r.status for r in outbox(state)] == ["sent", "sent"]
    assert len(disclosures(state)) == 2


def test_a_crashed_senders_claim_expires_and_another_sends(
    state: State, clock: FrozenClock
) -> None:
    only_notification(state)
    _, queued = submit(state)
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        use_smtp(state, f"smtp://127.0.0.1:{port}")
        assert len(jobs.claim(state, clock.now(), 10)) == 1  # ...and the sender dies here
        assert send_due(state, now=clock.now()).claimed == 0
        clock.advance(jobs.CLAIM_TTL + dt.timedelta(seconds=1))
        assert send_due(state, now=clock.now()).sent == 1
    assert mailbox.message_ids() == [queued[0].message_id]


def test_a_name_cannot_add_a_header_or_a_recipient(state: State, clock: FrozenClock) -> None:
    form = state.register.forms[0].model_copy(
        update={"email_content": EmailContent.full, "mailbox_retention": "P1Y"}
    )
    hostile = {
        **VISITOR,
        "first_name": "Eve\r\nBcc: mallory@evil.example",
        "last_name": "X\nSubject: you won\r\n\r\nbody",
    }
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        use_smtp(state, f"smtp://127.0.0.1:{port}")
        submit(state, hostile, form=form)
        assert send_due(state, now=clock.now()).sent == 2
    assert sorted(r.rcpt_tos for r in mailbox.received) == [
        [VISITOR["email"]],
        [OPERATOR_MAILBOX],
    ]
    for received in mailbox.received:
        message = received.message
        assert "Bcc" not in message
        assert message.get_all("Subject") is not None
        assert len(message.get_all("Subject") or []) == 1
        assert "you won" not in str(message["Subject"])
        header_block = received.raw.split(b"\r\n\r\n", 1)[0]
        assert not any(
            line.lower().startswith((b"bcc:", b"subject: you"))
            for line in header_block.split(b"\r\n")
        )
    ack = next(r for r in mailbox.received if r.rcpt_tos == [VISITOR["email"]])
    assert (
        ack.message["To"].addresses[0].display_name
        == "Eve Bcc: mallory@evil.example X Subject: you won body"
    )


def test_full_mode_carries_the_fields_with_the_operators_labels(
    state: State, clock: FrozenClock
) -> None:
    only_notification(state)
    form = state.register.forms[0].model_copy(
        update={"email_content": EmailContent.full, "mailbox_retention": "P1Y"}
    )
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        use_smtp(state, f"smtp://127.0.0.1:{port}")
        submit(state, form=form, language="fr")
        send_due(state, now=clock.now())
    (received,) = mailbox.received
    assert "First name: Ana-Maria" in received.body
    assert "Specialisation: Pharmacist" in received.body
    assert VISITOR["message"] in received.body
    assert received.message["Reply-To"].addresses[0].addr_spec == VISITOR["email"]


def test_without_smtp_messages_become_private_eml_files(state: State, clock: FrozenClock) -> None:
    use_smtp(state, None)
    submission, queued = submit(state)
    assert send_due(state, now=clock.now()) == SendReport(claimed=2, sent=2)
    directory = state.settings.data_dir / "outbox"
    assert directory.stat().st_mode & 0o777 == 0o700
    rows = outbox(state)
    files = [Path(r.eml_path or "") for r in rows]
    assert sorted(p.name for p in directory.iterdir()) == sorted(p.name for p in files)
    for path in files:
        assert path.parent == directory.resolve()
        assert path.stat().st_mode & 0o777 == 0o600
    notice, ack = (path.read_bytes() for path in files)
    assert queued[0].message_id.encode() in notice
    assert submission.public_id.encode() in notice
    for value in PERSONAL:
        assert value.encode() not in notice
    assert VISITOR["message"].encode() not in ack
    assert [d.channel for d in disclosures(state)] == ["eml", "eml"]

    with unit_of_work(state.sessions) as session:  # retention or erasure takes the files too
        remove_submissions(session, [submission.id])
    assert list(directory.iterdir()) == []


def test_dead_after_the_last_attempt_then_the_admins_retry_sends_it(
    state: State, clock: FrozenClock
) -> None:
    only_notification(state)
    _, queued = submit(state)
    mailbox = Mailbox(refuse_with="451 4.3.0 Try again later")
    waits = []
    with smtp_server(mailbox) as port:
        use_smtp(state, f"smtp://127.0.0.1:{port}")
        for attempt in range(1, MAX_ATTEMPTS + 1):
            report = send_due(state, now=clock.now())
            (row,) = outbox(state)
            assert row.attempts == attempt
            assert row.last_error == "SMTPDataError 451"
            if attempt < MAX_ATTEMPTS:
                assert report.retrying == 1
                waits.append(row.next_attempt_at - clock.now())
                clock.moment = row.next_attempt_at
        assert report.dead == 1
        assert row.status == "dead"
        assert [w // dt.timedelta(minutes=1) for w in waits] == [1, 2, 4, 8, 16, 32, 64]
        clock.advance(dt.timedelta(days=2))
        assert send_due(state, now=clock.now()).claimed == 0  # dead stays dead

        mailbox.refuse_with = None
        with unit_of_work(state.sessions) as session:
            assert retry_dead(session, row.id, clock.now())
        assert send_due(state, now=clock.now()).sent == 1
        with unit_of_work(state.sessions) as session:
            assert not retry_dead(session, row.id, clock.now())  # sent: nothing to retry
    assert mailbox.message_ids() == [queued[0].message_id]  # the same Message-ID, once
    (row,) = outbox(state)
    assert (row.status, row.last_error) == ("sent", None)


def test_a_restricted_submission_is_held_until_lifted(state: State, clock: FrozenClock) -> None:
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        use_smtp(state, f"smtp://127.0.0.1:{port}")
        _, queued = submit(state, restricted=True)
        assert [row.status for row in queued] == ["held", "held"]
        assert send_due(state, now=clock.now()).claimed == 0
        person = SubjectIdentity(email=VISITOR["email"])
        with unit_of_work(state.sessions) as session:
            FormsProvider().restrict(session, person, restricted=False)
        assert send_due(state, now=clock.now()).sent == 2
    assert len(mailbox.received) == 2


def test_two_senders_send_each_message_once(state: State, clock: FrozenClock) -> None:
    """Two senders with their own engines (connections) drain one outbox at once."""
    only_notification(state)
    queued = [submit(state)[1][0].message_id for _ in range(40)]
    mailbox = Mailbox(delay=0.02)  # a batch takes long enough for the other to claim
    second_engine = make_engine(state.settings.resolved_database_url)
    second = dataclasses.replace(
        state, engine=second_engine, sessions=session_factory(second_engine)
    )
    reports: dict[int, list[SendReport]] = {0: [], 1: []}
    start = threading.Barrier(2)

    def drain(number: int, sender: State) -> None:
        start.wait()
        while True:
            report = send_due(sender, now=clock.now(), limit=4)
            reports[number].append(report)
            if report.claimed == 0:
                return

    with smtp_server(mailbox) as port:
        use_smtp(state, f"smtp://127.0.0.1:{port}")
        use_smtp(second, f"smtp://127.0.0.1:{port}")
        threads = [
            threading.Thread(target=drain, args=(n, s)) for n, s in enumerate((state, second))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    second_engine.dispose()
    delivered = mailbox.message_ids()
    assert len(delivered) == 40
    assert sorted(set(delivered)) == sorted(queued)
    assert all(sum(r.sent for r in reports[n]) > 0 for n in (0, 1))
    assert sum(r.claimed for n in (0, 1) for r in reports[n]) == 40
    assert {r.status for r in outbox(state)} == {"sent"}
    assert len(disclosures(state)) == 40


def test_smtp_urls_are_read_strictly() -> None:
    target = jobs.parse_smtp_url("smtps://relay%40example.org:p%3Ass@mail.example.org")
    assert target == jobs.SmtpTarget(
        host="mail.example.org",
        port=465,
        implicit_tls=True,
        username="relay@example.org",
        password="p:ss",
    )
    assert jobs.parse_smtp_url("smtp://127.0.0.1:2525").port == 2525
    assert jobs.parse_smtp_url("smtp://mail.example.org").port == 25
    for bad in ("http://mail.example.org", "smtp://", "smtp://host:99999"):
        with pytest.raises(jobs.SmtpUrlError):
            jobs.parse_smtp_url(bad)


def test_a_slow_server_gives_the_rest_of_the_batch_back_before_the_claim_runs_out(
    state: State, clock: FrozenClock
) -> None:
    only_notification(state)
    queued = [submit(state)[1][0].message_id for _ in range(3)]
    mailbox = Mailbox(delay=0.2)  # each message takes longer than the whole budget
    with smtp_server(mailbox) as port:
        use_smtp(state, f"smtp://127.0.0.1:{port}")
        budget = dt.timedelta(seconds=0.1)
        report = send_due(state, now=clock.now(), budget=budget)
        assert report == SendReport(claimed=3, sent=1, released=2)
        rows = outbox(state)
        assert [(r.status, r.attempts, r.claimed_until) for r in rows[1:]] == [
            ("pending", 0, None)
        ] * 2
        assert send_due(state, now=clock.now(), budget=budget).sent == 1  # due at once
        assert send_due(state, now=clock.now(), budget=budget).sent == 1
    assert sorted(mailbox.message_ids()) == sorted(queued)


def test_a_queued_row_holds_no_message_and_is_built_alike_at_every_attempt(
    state: State, clock: FrozenClock
) -> None:
    """The message is built when sent, with the Message-ID and Date fixed at queueing: a
    retry an hour later sends the same message."""
    only_notification(state)
    _, queued = submit(state)
    assert queued[0].message is None
    queued_at = queued[0].created_at
    mailbox = Mailbox(refuse_with="451 4.3.0 Try again later")
    with smtp_server(mailbox) as port:
        use_smtp(state, f"smtp://127.0.0.1:{port}")
        assert send_due(state, now=clock.now()).retrying == 1
        clock.advance(dt.timedelta(hours=1))
        mailbox.refuse_with = None
        assert send_due(state, now=clock.now()).sent == 1
    (received,) = mailbox.received
    assert received.message_id == queued[0].message_id
    assert received.message["Date"].datetime == queued_at
    (row,) = outbox(state)
    assert row.message is None  # sent, and no copy of its text kept


def test_a_row_queued_with_its_message_is_sent_as_it_is(state: State, clock: FrozenClock) -> None:
    """Rows queued before messages were built when sent carry their message: it goes as is."""
    only_notification(state)
    submission, (queued,) = submit(state)
    text = (
        "From: Cegedim <privacy@cegedim-rx.ro>\r\nTo: privacy@cegedim-rx.ro\r\n"
        f"Subject: Queued earlier\r\nMessage-ID: {queued.message_id}\r\n\r\nAs it was.\r\n"
    )
    with unit_of_work(state.sessions) as session:
        row = session.get_one(OutboxMessage, queued.id)
        row.message = text
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        use_smtp(state, f"smtp://127.0.0.1:{port}")
        assert send_due(state, now=clock.now()).sent == 1
    (received,) = mailbox.received
    assert received.message["Subject"] == "Queued earlier"
    assert received.body.strip() == "As it was."


def test_a_message_whose_form_left_the_register_is_given_up_and_not_sent(
    state: State, clock: FrozenClock
) -> None:
    only_notification(state)
    submit(state)
    state.register = state.register.model_copy(update={"forms": []})
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        use_smtp(state, f"smtp://127.0.0.1:{port}")
        assert send_due(state, now=clock.now()).retrying == 1
    (row,) = outbox(state)
    assert (row.status, row.last_error) == ("pending", "Unrenderable")
    assert mailbox.received == []
