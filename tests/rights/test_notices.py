"""What the person receives at each step, in their language, through the outbox (read as the
``.eml`` and ``.sms`` files the sender writes without an SMTP server): the acknowledgement
with the due date, an extension with its reasons, a refusal with its reasons and remedies,
the erasure receipt; and the code by text message for a person who gave only a phone."""

from __future__ import annotations

import datetime as dt
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from babel.dates import format_date
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gardien.deps import State
from gardien.forms.jobs import send_due
from gardien.forms.models import DisclosureEntry, OutboxMessage
from gardien.rights import answers, notify
from gardien.rights.exchange import RightsNotice
from gardien.rights.models import RightsCase
from gardien.rights.service import Desk, erase, open_case, subject_of
from gardien.security.audit import Actor
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from gardien.storage.subjects import SubjectIdentity
from tests.forms.test_retention import submit_and_send
from tests.rights.conftest import EMAIL
from tests.rights.test_portal import events, reference_of, verify
from tests.security.test_at_rest import hits, sqlite_files

DPO = Actor("user:1", "dpo")
PERSON = "ion.ionescu@example.ro"
PHONE = "+40 721 234 567"
PHONE_E164 = "+40721234567"


def sent_files(state: State, folder: str, suffix: str) -> dict[str, bytes]:
    directory = state.settings.data_dir / folder
    if not directory.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(directory.glob(f"*{suffix}"))}


def send(state: State, clock: FrozenClock) -> list[EmailMessage]:
    """Run the sender; the e-mails it wrote during this run, parsed."""
    before = set(sent_files(state, "outbox", ".eml"))
    report = send_due(state, now=clock.now())
    assert report.dead == report.retrying == 0
    after = sent_files(state, "outbox", ".eml")
    parsed = []
    for name in sorted(set(after) - before):
        message = BytesParser(policy=policy.default).parsebytes(after[name])
        assert isinstance(message, EmailMessage)
        parsed.append(message)
    return parsed


def code_in(text: str, reference: str) -> str:
    """The 8-digit code of a message (not the reference's hex part, which may be all digits)."""
    codes = [c for c in re.findall(r"\b\d{8}\b", text) if c != reference[-8:]]
    assert len(set(codes)) == 1, text
    return str(codes[0])


def body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def opened(state: State, language: str, email: str = PERSON) -> str:
    subject = SubjectIdentity(email=email)
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            Desk(state.register, state.providers),
            subject,
            ["access", "erasure"],
            channel="email",
            now=state.clock.now(),
            actor=DPO,
            language=language,
        )
        return case.reference


def case_of(session: Session, reference: str) -> RightsCase:
    return session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()


ACK = {
    "fr": ("Votre demande", "Nous y répondrons au plus tard le"),
    "ro": ("Cererea dumneavoastră", "Vom răspunde cel târziu la"),
}


@pytest.mark.parametrize("lang", ["fr", "ro"])
def test_a_verified_portal_request_is_acknowledged_with_its_due_date_in_the_persons_language(
    client: TestClient, state: State, clock: FrozenClock, lang: str
) -> None:
    answer = client.post("/rights", data={"rights": ["access"], "email": PERSON, "lang": lang})
    reference = reference_of(answer)
    [code_mail] = send(state, clock)
    assert verify(client, reference, code_in(body(code_mail), reference), lang).status_code == 200
    [ack] = send(state, clock)
    with state.sessions() as session:
        due = case_of(session, reference).due_at
    subject, promise = ACK[lang]
    assert str(ack["To"]) == PERSON
    assert subject in str(ack["Subject"]) and reference in str(ack["Subject"])
    text = body(ack)
    assert promise in text
    assert format_date(due, format="long", locale=lang) in text
    assert events(state, reference)[-1] == "notice_queued"
    with state.sessions() as session:
        notice = session.scalars(select(RightsNotice)).one()
        row = session.get_one(OutboxMessage, notice.outbox_id)
        assert row.status == "sent" and row.message is None  # built when sent, not stored
        kinds = session.scalars(select(DisclosureEntry.recipient_kind)).all()
        assert kinds.count("subject") == 2


REFUSAL = {
    "fr": "pour les raisons suivantes",
    "ro": "din următoarele motive",
}


@pytest.mark.parametrize("lang", ["fr", "ro"])
def test_a_refusal_states_its_reasons_the_authority_and_the_judicial_remedy(
    state: State, clock: FrozenClock, lang: str
) -> None:
    reference = opened(state, lang)
    reasons = "La demande est manifestement excessive : cinquième demande identique ce mois-ci."
    with unit_of_work(state.sessions) as session:
        notify.outcome(
            session,
            case_of(session, reference),
            "refusal",
            reasons=reasons,
            register=state.register,
            now=clock.now(),
        )
    [refusal] = send(state, clock)
    text = body(refusal)
    authority = state.register.supervisory_authority
    assert REFUSAL[lang] in text and reasons in text
    assert authority.name[lang] in text and "ANSPDCP" in text
    assert authority.email in text and authority.complaint_url in text and authority.phone in text
    assert answers.complaint_block(state.register, lang) in text  # with Art. 77
    assert notify.EDPB_MEMBERS in text
    assert answers.judicial_remedy(lang) in text and "79" in answers.judicial_remedy(lang)


def test_a_refusal_or_an_extension_without_reasons_is_not_sent(
    state: State, clock: FrozenClock
) -> None:
    reference = opened(state, "en")
    with unit_of_work(state.sessions) as session:
        case = case_of(session, reference)
        with pytest.raises(notify.NoticeError, match="reasons"):
            notify.outcome(
                session, case, "refusal", reasons="  ", register=state.register, now=clock.now()
            )
        with pytest.raises(notify.NoticeError, match="reasons"):
            notify.extension(
                session,
                case,
                "",
                new_due=case.due_at,
                register=state.register,
                now=clock.now(),
            )
        with pytest.raises(notify.NoticeError, match="download link"):
            notify.outcome(session, case, "access", register=state.register, now=clock.now())
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RightsNotice)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_an_extension_gives_the_new_date_and_the_reasons_in_romanian(
    state: State, clock: FrozenClock
) -> None:
    reference = opened(state, "ro")
    new_due = dt.date(2026, 4, 30)
    with unit_of_work(state.sessions) as session:
        notify.extension(
            session,
            case_of(session, reference),
            "Datele sunt în trei sisteme diferite.",
            new_due=new_due,
            register=state.register,
            now=clock.now(),
        )
    [notice] = send(state, clock)
    text = body(notice)
    assert "Avem nevoie de mai mult timp" in text
    assert format_date(new_due, format="long", locale="ro") in text
    assert "Datele sunt în trei sisteme diferite." in text


def test_an_erasure_sends_its_receipt_in_french(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    submit_and_send(client, state, clock)  # the contact form holds EMAIL
    send(state, clock)
    reference = opened(state, "fr", email=EMAIL)
    with unit_of_work(state.sessions) as session:
        case = case_of(session, reference)
        receipt = erase(
            session,
            Desk(state.register, state.providers),
            case,
            subject_of(case),
            now=clock.now(),
            actor=DPO,
        )
    assert receipt["complete"]
    [mail] = send(state, clock)
    assert str(mail["To"]).lower() == EMAIL.lower()
    text = body(mail)
    assert "nous avons effacé vos données personnelles" in text
    assert "- contact_forms : 1 trouvé(s), 1 effacé(s), 0 conservé(s)" in text
    assert "rights_requests" in text and "Art. 5(2)" in text  # kept, and why
    assert "Une nouvelle recherche" in text


def test_a_person_who_gave_only_a_phone_gets_the_code_and_the_acknowledgement_by_sms(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    answer = client.post("/rights", data={"rights": ["erasure"], "phone": PHONE, "lang": "ro"})
    assert answer.status_code == 200
    assert "Verificați telefonul" in answer.text
    reference = reference_of(answer)
    assert send(state, clock) == []  # no e-mail
    [(name, sms)] = sent_files(state, "sms", ".sms").items()
    text = sms.decode()
    assert text.startswith(f"To: {PHONE_E164}\n")
    code = code_in(text, reference)
    assert reference in text
    assert (Path(state.settings.data_dir / "sms" / name).stat().st_mode & 0o777) == 0o600
    assert verify(client, reference, code, "ro").status_code == 200
    send(state, clock)
    texts = [t.decode() for n, t in sent_files(state, "sms", ".sms").items() if n != name]
    assert len(texts) == 1 and reference in texts[0] and "confirmată" in texts[0]
    with state.sessions() as session:
        case = case_of(session, reference)
        assert case.email is None and case.phone == PHONE_E164 and case.verified_at is not None
        channels = session.scalars(select(DisclosureEntry.channel)).all()
        assert channels == ["sms", "sms"]


def test_neither_an_e_mail_nor_a_phone_is_refused_with_a_reason(
    client: TestClient, state: State
) -> None:
    answer = client.post("/rights", data={"rights": ["access"], "email": "", "lang": "en"})
    assert answer.status_code == 422
    assert "or, if we know only your phone number" in answer.text
    api = client.post("/api/rights/requests", json={"rights": ["access"], "phone": PHONE})
    assert api.status_code == 202 and api.json()["code_sent_by"] == "sms"
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RightsCase)) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_notice_text_or_reason_is_in_the_database_files_in_clear(
    state: State, clock: FrozenClock
) -> None:
    reference = opened(state, "fr")
    reasons = "Motif-tres-particulier-7f3a: cinquieme demande identique"
    with unit_of_work(state.sessions) as session:
        case = case_of(session, reference)
        notify.extension(
            session,
            case,
            reasons,
            new_due=case.due_at,
            register=state.register,
            now=clock.now(),
        )
        notify.outcome(
            session, case, "refusal", reasons=reasons, register=state.register, now=clock.now()
        )
    [extension, refusal] = send(state, clock)
    assert reasons in body(extension) and reasons in body(refusal)
    files = sqlite_files(state.settings)
    assert hits(files, reasons) == []
    assert hits(files, PERSON) == []
    assert hits(files, "pour les raisons suivantes") == []  # no rendered body either
