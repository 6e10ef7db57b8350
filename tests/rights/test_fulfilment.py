"""Access, portability and erasure for one person across every store, on both backends."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy import String, Text, func, or_, select
from sqlalchemy.orm import Session

from gardien.consent.records import verify_chain as verify_consent_chain
from gardien.consent.store import ConsentProvider
from gardien.deps import State
from gardien.models import metadata
from gardien.register.schema import LegalHold, Register
from gardien.rights.models import RightsCase
from gardien.rights.service import Desk, erase, export_package, open_case, subject_of, timeline
from gardien.runtime import domain_providers
from gardien.security.audit import Actor, verify_chain
from gardien.security.connection_log import ConnectionLogProvider
from gardien.security.crypto import blind_lookups
from gardien.storage.database import unit_of_work
from gardien.storage.subjects import ProviderRegistry, SubjectIdentity
from tests.rights.conftest import EMAIL, IP, PHONE, Seeded

DPO = Actor("dpo-1", "dpo")
STORES = {
    "connection_log",
    "admin_accounts",
    "consent_records",
    "contact_forms",
    "audience_measurement",
    "rights_requests",
}


def desk(state: State, providers: ProviderRegistry | None = None) -> Desk:
    return Desk(state.register, providers or state.providers)


def opened(state: State, subject: SubjectIdentity, rights: list[str], **kw: Any) -> int:
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            desk(state, kw.pop("providers", None)),
            subject,
            rights,
            channel="email",
            now=state.clock.now(),
            actor=DPO,
            **kw,
        )
        return case.id


def test_access_package_holds_every_store_and_the_article_15_information(
    seeded: Seeded,
) -> None:
    state = seeded.state
    case_id = opened(state, seeded.subject, ["access", "portability"], language="fr")
    with unit_of_work(state.sessions) as session:
        case = session.get_one(RightsCase, case_id)
        package = export_package(
            session, desk(state), case, subject_of(case), now=state.clock.now(), actor=DPO
        )
        kinds = [e.kind for e in timeline(session, case)]
    assert package.failures == []
    archive = zipfile.ZipFile(io.BytesIO(package.content))
    names = set(archive.namelist())
    assert {"index.html", "data.json"} <= names
    assert {
        "csv/contact_forms/contact_forms.csv",
        "csv/consent_records/consent_records.csv",
        "csv/audience_measurement/audience_measurement.csv",
        "csv/connection_log/connection_log.csv",
        "csv/rights_requests/rights_requests.csv",
        "portability/data.json",
        "portability/contact_forms/contact_forms.csv",
    } <= names
    # Portability: consent- or contract-based activities only (Art. 20(1)(a)).
    assert not any(n.startswith("portability/audience_measurement") for n in names)
    assert not any(n.startswith("portability/connection_log") for n in names)

    document = json.loads(archive.read("data.json"))
    found = {store: sum(s["found"].values()) for store, s in document["stores"].items()}
    assert found == {
        "connection_log": 2,  # the April request is outside the period given
        "admin_accounts": 0,
        "consent_records": 2,
        "contact_forms": 1,
        "audience_measurement": 3,
        "rights_requests": 1,
    }
    [form] = document["stores"]["contact_forms"]["records"]["contact_forms"]
    assert form["field.last_name"] == "Popescu" and form["field.phone"] == PHONE
    forms_csv = list(
        csv.DictReader(io.StringIO(archive.read("csv/contact_forms/contact_forms.csv").decode()))
    )
    assert [row["field.email"].casefold() for row in forms_csv] == [EMAIL.casefold()]
    log_csv = archive.read("csv/connection_log/connection_log.csv").decode()
    assert log_csv.count(IP) == 2

    information = {i["activity"]: i for i in document["information"]}
    assert set(information) == {
        "connection_log",
        "consent_records",
        "contact_forms",
        "audience_measurement",
        "rights_requests",
    }
    contact = information["contact_forms"]
    assert contact["legal_basis"] == "consent (Art. 6(1)(a))"
    assert contact["purposes"][0].startswith("Gestion des formulaires")  # in French
    assert contact["retention"]["period"] == "P90D"
    assert contact["source"] and contact["categories"] and contact["recipients"]
    assert "privacy@cegedim-rx.ro" in {r["recipient"] for r in contact["actual_recipients"]}
    assert contact["complaint"]["email"] == "anspdcp@dataprotection.ro"
    assert "erasure" in contact["rights"] and contact["automated_decisions"] is False

    page = archive.read("index.html").decode()
    assert "Popescu" in page and "ANSPDCP" in page
    assert "Gestion des formulaires" in page and "P90D" not in page  # the description, not ISO
    assert kinds[0] == "opened" and kinds.count("found") == len(STORES)
    assert kinds[-1] == "package_built"
    with state.sessions() as session:
        details = " ".join(
            e.detail or "" for e in timeline(session, session.get_one(RightsCase, case_id))
        )
    assert EMAIL.lower() not in details.lower() and IP not in details and PHONE not in details


def _personal_indexes(seeded: Seeded) -> dict[str, list[str]]:
    consent = seeded.consent_id
    return {
        "form email": blind_lookups(EMAIL, "form_submission.email_index", "email"),
        "form phone": blind_lookups(PHONE, "form_submission.phone_index"),
        "consent record": blind_lookups(consent, "consent_record.consent_id_index"),
        "analytics consent": blind_lookups(consent, "analytics_hit.consent_id_index"),
    }


def _rows_holding(session: Session, values: list[str]) -> dict[str, int]:
    """Every row of every table with a text column equal to one of ``values``."""
    holding: dict[str, int] = {}
    for table in metadata.sorted_tables:
        columns = [
            c
            for c in table.columns
            if isinstance(c.type, String | Text)
            or isinstance(getattr(c.type, "impl", None), String | Text)
        ]
        if not columns:
            continue
        count = session.scalar(
            select(func.count()).select_from(table).where(or_(*(c.in_(values) for c in columns)))
        )
        if count:
            holding[table.name] = int(count)
    return holding


def test_erasure_receipt_lists_every_store_and_a_requery_shows_nothing_left(
    seeded: Seeded,
) -> None:
    state = seeded.state
    indexes = _personal_indexes(seeded)
    values = [v for vs in indexes.values() for v in vs]
    with state.sessions() as session:
        assert set(_rows_holding(session, values)) == {
            "form_submission",
            "consent_record",
            "analytics_hit",
        }
    if state.engine.dialect.name == "sqlite":
        assert any(v.encode() in _on_disk(state) for v in values)  # the scan can see them
    case_id = opened(state, seeded.subject, ["erasure"])
    with unit_of_work(state.sessions) as session:
        case = session.get_one(RightsCase, case_id)
        receipt = erase(
            session, desk(state), case, subject_of(case), now=state.clock.now(), actor=DPO
        )
    stores = {s["store"]: s for s in receipt["stores"]}
    assert set(stores) == STORES
    assert {k: (v["matched"], v["erased"], v["kept"]) for k, v in stores.items()} == {
        "connection_log": (2, 2, 0),
        "admin_accounts": (0, 0, 0),
        "consent_records": (2, 2, 0),
        "contact_forms": (1, 1, 0),
        "audience_measurement": (3, 3, 0),
        "rights_requests": (1, 0, 1),
    }
    assert "Art. 17(3)" in stores["rights_requests"]["kept_reason"]
    assert "tombstone" in stores["consent_records"]["residue"]
    assert receipt["requery"] == dict.fromkeys(STORES, 0) | {"rights_requests": 1}
    assert receipt["nothing_left"] is True and receipt["complete"] is True
    text = json.dumps(receipt)
    assert EMAIL.lower() not in text.lower() and IP not in text and seeded.consent_id not in text

    with state.sessions() as session:
        case = session.get_one(RightsCase, case_id)
        assert (case.status, case.outcome) == ("closed", "erased_with_exceptions")
        assert json.loads(case.receipt or "{}") == receipt
        kinds = [e.kind for e in timeline(session, case)]
        assert kinds.count("erased") == len(STORES) and kinds[-2:] == ["closed", "notice_queued"]
        assert _rows_holding(session, values) == {}
        # Other people, and the address outside the period the person gave, are untouched.
        other = SubjectIdentity(consent_id=seeded.other_consent_id)
        assert ConsentProvider().find(session, other).total == 1
        assert ConnectionLogProvider().find(session, SubjectIdentity(ip_address=IP)).total == 1
        assert verify_chain(session) is None
    with state.sessions() as session:
        assert verify_consent_chain(session) is None  # the erased records left tombstones

    if state.engine.dialect.name == "sqlite":
        state.engine.dispose()
        content = _on_disk(state, "TRUNCATE")
        for value in values:
            assert value.encode() not in content, "an erased blind index is still on disk"


def _on_disk(state: State, checkpoint: str = "PASSIVE") -> bytes:
    """The SQLite database's bytes (main file and write-ahead log) after a checkpoint; a
    ``TRUNCATE`` checkpoint empties the log, as SQLite does on its own as the log grows."""
    database = state.engine.url.database
    assert database
    with sqlite3.connect(database) as raw:
        raw.execute(f"PRAGMA wal_checkpoint({checkpoint})")
    wal = Path(f"{database}-wal")
    return Path(database).read_bytes() + (wal.read_bytes() if wal.exists() else b"")


class BrokenConnectionLog(ConnectionLogProvider):
    """The real connection-log provider, whose erasure fails after deleting rows (a lost
    connection, a full disk): its savepoint must undo them, and the failure must show."""

    def erase(self, session: Session, subject: SubjectIdentity) -> Any:
        super().erase(session, subject)
        raise RuntimeError(f"cannot erase {subject.ip_address} of {subject.email}")


def test_a_failing_store_leaves_the_case_open_with_the_failure_in_its_timeline(
    seeded: Seeded,
) -> None:
    state = seeded.state
    providers = ProviderRegistry(
        [BrokenConnectionLog() if p.name == "connection_log" else p for p in domain_providers()]
    )
    case_id = opened(state, seeded.subject, ["erasure"])
    with unit_of_work(state.sessions) as session:
        case = session.get_one(RightsCase, case_id)
        receipt = erase(
            session,
            desk(state, providers),
            case,
            subject_of(case),
            now=state.clock.now(),
            actor=DPO,
        )
    stores = {s["store"]: s for s in receipt["stores"]}
    assert stores["connection_log"] == {
        "store": "connection_log",
        "status": "failed",
        "error": "RuntimeError",
    }
    assert stores["contact_forms"]["erased"] == 1  # the other stores are still erased
    assert receipt["complete"] is False and receipt["nothing_left"] is False
    assert receipt["requery"]["connection_log"] == 2  # all or nothing: its rows are back
    with state.sessions() as session:
        case = session.get_one(RightsCase, case_id)
        assert (case.status, case.outcome, case.closed_at) == ("open", "erasure_failed", None)
        events = timeline(session, case)
        failed = [e for e in events if e.kind == "erase_failed"]
        assert [e.detail for e in failed] == ["connection_log: RuntimeError"]
        assert events[-1].kind == "left_open"
        assert all(IP not in (e.detail or "") for e in events)
        assert ConnectionLogProvider().find(session, seeded.subject).total == 2


def _held(state: State, expires: dt.date, time_zone: str | None = None) -> Register:
    """The register with a legal hold on the contact forms until ``expires``."""
    hold = LegalHold(reason="litigation 2026/17", owner="dpo@cegedim-rx.ro", expires=expires)
    activities = [
        a.model_copy(update={"legal_holds": [hold]}) if a.id == "contact_forms" else a
        for a in state.register.activities
    ]
    rights = state.register.rights
    if time_zone is not None:
        rights = rights.model_copy(update={"time_zone": time_zone})
    return state.register.model_copy(update={"activities": activities, "rights": rights})


def _erased(
    seeded: Seeded, register: Register, now: dt.datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new erasure case for the seeded person, erased at ``now``: the receipt and its
    contact forms' entry."""
    case_id = opened(seeded.state, seeded.subject, ["erasure"])
    with unit_of_work(seeded.state.sessions) as session:
        case = session.get_one(RightsCase, case_id)
        receipt = erase(
            session,
            Desk(register, seeded.state.providers),
            case,
            subject_of(case),
            now=now,
            actor=DPO,
        )
    return receipt, next(s for s in receipt["stores"] if s["store"] == "contact_forms")


def test_a_legal_hold_in_the_register_keeps_the_records_and_says_why(seeded: Seeded) -> None:
    register = _held(seeded.state, dt.date(2027, 1, 1))
    receipt, forms = _erased(seeded, register, seeded.state.clock.now())
    assert (forms["matched"], forms["erased"], forms["kept"]) == (1, 0, 1)
    assert "litigation 2026/17" in forms["kept_reason"] and "17(3)(e)" in forms["kept_reason"]
    assert receipt["requery"]["contact_forms"] == 1 and receipt["nothing_left"] is True
    assert receipt["requery"]["audience_measurement"] == 0  # the rest is still erased


def test_a_legal_hold_lasts_until_its_last_day_ends_on_the_controllers_clock(
    seeded: Seeded,
) -> None:
    """An erasure at 23:59 in Paris on the hold's last day (22:59 UTC) keeps the records; one
    at midnight in Paris (23:00 UTC, still that day in UTC) erases them."""
    register = _held(seeded.state, dt.date(2026, 12, 1), "Europe/Paris")
    _, last_minute = _erased(seeded, register, dt.datetime(2026, 12, 1, 22, 59, tzinfo=dt.UTC))
    assert (last_minute["erased"], last_minute["kept"]) == (0, 1)
    assert "legal hold until 2026-12-01" in last_minute["kept_reason"]
    _, midnight = _erased(seeded, register, dt.datetime(2026, 12, 1, 23, 0, tzinfo=dt.UTC))
    assert (midnight["erased"], midnight["kept"], midnight["kept_reason"]) == (1, 0, None)
