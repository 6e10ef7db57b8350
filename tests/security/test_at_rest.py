"""Personal data at rest: known values written through every store are nowhere in the SQLite
files in clear (main file and WAL, nothing checkpointed), yet read back decrypted; and a keys
file that does not fit the database stops ``gardien serve`` instead of corrupting anything.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select

from gardien.analytics.models import AnalyticsHit
from gardien.config import Settings
from gardien.consent.models import ConsentRecord
from gardien.consent.service import current_revision
from gardien.deps import State
from gardien.forms.models import FormSubmission, OutboxMessage
from gardien.rights.models import RightsCase
from gardien.security import service
from gardien.security.connection_log import (
    IP_INDEX_CONTEXT,
    ConnectionLogEntry,
    connection_log,
)
from gardien.security.crypto import blind_index, blind_lookups
from gardien.security.models import EncryptionKey
from gardien.storage.clock import FrozenClock
from tests.consent.test_records import decision
from tests.forms.test_submit import stamped
from tests.security.signin import (
    PASSWORD,
    SignedIn,
    add_user,
    create_token,
    csrf_of,
    new_client,
    submit_password,
    totp,
)
from tests.support import free_port, gardien, gardien_env, serving

EMAIL = "Jeanne.Dupont-Quintal@clinique-exemple.fr"
IP = "203.0.113.198"
MARKER = "report-name-kept-in-clear-5c1e"
"""A token name (not personal, stored in clear): proves the scan sees the latest writes."""

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def sqlite_files(settings: Settings) -> dict[str, bytes]:
    database = Path(settings.resolved_database_url.split("///", 1)[1])
    wal = database.with_name(database.name + "-wal")
    assert database.exists() and wal.exists(), "SQLite in WAL mode keeps a -wal file while open"
    return {path.name: path.read_bytes() for path in (database, wal)}


def spellings(value: str) -> list[bytes]:
    """The bytes a value could show up as: as typed, lower- and upper-case, UTF-8 and UTF-16."""
    texts = {value, value.lower(), value.upper()}
    return [text.encode(codec) for text in texts for codec in ("utf-8", "utf-16-le", "utf-16-be")]


def hits(files: dict[str, bytes], value: str) -> list[str]:
    return [name for name, data in files.items() for form in spellings(value) if form in data]


@sqlite_only
def test_no_personal_value_is_in_the_database_files_in_clear(
    client: TestClient, state: State, clock: FrozenClock, settings: Settings
) -> None:
    # an admin account, signed in from a known address: e-mail, TOTP secret, recovery codes
    add_user(state, "owner@example.org", "admin")
    add_user(state, EMAIL, "dpo")
    browser = new_client(client, IP)
    assert submit_password(browser, EMAIL, "wrong password, certainly").status_code == 401
    assert submit_password(browser, EMAIL).status_code == 303
    page = browser.get("/admin/mfa/enrol").text
    found = re.search(r"Or enter this key by hand: <code>([A-Z2-7]+)</code>", page)
    assert found
    secret = found.group(1)
    done = browser.post(
        "/admin/mfa/enrol", data={"code": totp(secret, clock), "csrf": csrf_of(page)}
    )
    codes = re.findall(r"<li><code>([0-9a-f]{8}-[0-9a-f]{8})</code></li>", done.text)
    assert len(codes) == 10
    token = create_token(SignedIn(browser, secret), MARKER, "auditor")
    session_token = browser.cookies["gardien_session"]
    # the connection log's stored address, through its model
    connection_log.create(state.engine, checkfirst=True)
    with state.sessions.begin() as session:
        session.add(
            ConnectionLogEntry(
                at=clock.now(),
                ip=IP,
                ip_index=blind_index(IP, IP_INDEX_CONTEXT, "ip"),
                user_agent="Mozilla/5.0",
                method="POST",
                path="/contact",
                status=429,
                latency_ms=1.5,
            )
        )

    files = sqlite_files(settings)
    assert hits(files, MARKER), "the scan must see the latest writes (or it proves nothing)"
    local_part = EMAIL.split("@", 1)[0]
    for value in (EMAIL, local_part, secret, IP, PASSWORD, token, session_token, *codes):
        assert hits(files, value) == [], f"{value!r} is stored in clear"
    # nor base64 of the secrets, a classic way of storing them "not in clear"
    for value in (EMAIL, secret, token):
        assert base64.b64encode(value.encode()) not in b"".join(files.values())

    # ... and the application still reads every one of them back
    with state.sessions() as session:
        user = service.find_user_by_email(session, EMAIL.upper())
        assert user is not None
        assert user.email == EMAIL
        assert user.totp_secret == secret
        row = session.scalars(
            select(ConnectionLogEntry).where(
                ConnectionLogEntry.ip_index.in_(blind_lookups(IP, IP_INDEX_CONTEXT, "ip"))
            )
        ).first()
        assert row is not None
        assert row.ip == IP
    listing = browser.get("/admin")
    assert EMAIL in listing.text  # "Signed in as ..." shows it decrypted


# Known values of one person, written through every other store that keeps personal data.
FORM: dict[str, str | bool] = {
    "first_name": "Gwenaëlle",
    "last_name": "Kerbrat-Ollivier",
    "email": "gwenaelle.kerbrat@cabinet-exemple.fr",
    "phone": "06 12 34 56 78",
    "specialisation": "pharmacist",
    "company": "Officine Kerbrat-Ollivier",
    "country": "FR",
    "message": "Bonjour, merci de me rappeler au sujet du dossier confidentiel 7f3a9c.",
    "consent": True,
}
FORM_PHONE = "+33612345678"
RIGHTS_EMAIL = "demande.droits.patient@exemple-sante.fr"
RIGHTS_PHONE = "+33698765432"
VISITOR_IP = "198.51.100.23"
USER_ID = "kerbrat-ollivier-7f3a9c"
PAGE_MARKER = "page-name-kept-in-clear-9d4b"
"""An analytics page title (not personal, stored in clear), written last: proves the scan sees
the latest writes."""


@sqlite_only
def test_every_store_keeps_its_personal_values_out_of_the_database_files(
    client: TestClient, state: State, clock: FrozenClock, settings: Settings
) -> None:
    """A contact form (its submission and the two e-mails it queues), a consent decision, an
    audience-measurement hit with consent and a user id, and a rights request (with the code
    e-mail it queues), each through its public endpoint from a known address: none of the
    person's values is in the SQLite file or its log in clear, and each store reads them back."""
    visitor = new_client(client, VISITOR_IP)
    form = visitor.post("/api/forms/contact", json={**FORM, **stamped(visitor, clock)})
    assert form.status_code == 201, form.text

    consent = decision(visitor)
    consent_id = consent["consent_id"]
    assert visitor.post("/api/consent/records", json=consent).status_code == 201

    decided = int(clock.now().timestamp()) - 60
    revision = current_revision(state).number
    visitor.cookies.set(
        "gardien_consent", f"1:{consent_id}:{revision}:{decided}:audience_measurement=1"
    )
    rights = visitor.post(
        "/rights",
        data={
            "rights": ["access"],
            "email": RIGHTS_EMAIL,
            "phone": "+33 6 98 76 54 32",
            "lang": "en",
        },
    )
    assert rights.status_code == 200, rights.text
    hit = visitor.get(
        "/matomo.php",
        params={
            "idsite": 1,
            "rec": 1,
            "url": "https://www.cegedim-rx.ro/produse",
            "action_name": PAGE_MARKER,
            "uid": USER_ID,
            "send_image": 0,
        },
    )
    assert hit.status_code == 204, hit.text

    files = sqlite_files(settings)
    assert hits(files, PAGE_MARKER), "the scan must see the latest writes (or it proves nothing)"
    values = [
        *(str(FORM[name]) for name in ("first_name", "last_name", "email", "company", "message")),
        FORM_PHONE,
        "0612345678",
        "confidentiel 7f3a9c",
        consent_id,
        USER_ID,
        RIGHTS_EMAIL,
        RIGHTS_PHONE,
        VISITOR_IP,
    ]
    for value in values:
        assert hits(files, value) == [], f"{value!r} is stored in clear"

    # ... and every store reads its values back
    with state.sessions() as session:
        [submission] = session.scalars(select(FormSubmission)).all()
        assert json.loads(submission.fields)["last_name"] == FORM["last_name"]
        recipients = {m.recipient for m in session.scalars(select(OutboxMessage))}
        assert FORM["email"] in recipients and RIGHTS_EMAIL in recipients
        [record] = session.scalars(select(ConsentRecord)).all()
        assert record.consent_id == consent_id
        [stored_hit] = session.scalars(select(AnalyticsHit)).all()
        assert (stored_hit.user_id, stored_hit.consent_id) == (USER_ID, consent_id)
        [case] = session.scalars(select(RightsCase)).all()
        assert (case.email, case.phone) == (RIGHTS_EMAIL, RIGHTS_PHONE)
        logged = session.scalars(select(ConnectionLogEntry)).all()
        assert logged and {row.ip for row in logged} == {VISITOR_IP}


# -- keys file that does not fit -----------------------------------------------------------


def _key_rows(database_url: str) -> list[tuple[str, bytes]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return [
                (row.id, bytes(row.wrapped))
                for row in connection.execute(select(EncryptionKey.id, EncryptionKey.wrapped))
            ]
    finally:
        engine.dispose()


def _refused(env: dict[str, str], *extra: str) -> str:
    """``gardien serve`` must stop at start with exit 2 and one line naming the problem."""
    result = gardien("serve", "--port", str(free_port()), *extra, env=env, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_keys_file_that_does_not_fit_stops_serve(
    tmp_path: Path, register_path: Path, database_url: str
) -> None:
    env = gardien_env(tmp_path / "data", database_url, register_path)
    upgrade = () if database_url.startswith("sqlite") else ("--upgrade",)
    with serving(env, *upgrade) as server:  # first start: creates the keys and the data keys
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    keys = tmp_path / "data" / "keys"
    stored = _key_rows(database_url)
    assert {kid for kid, _ in stored} and keys.exists()

    # the keys file of another installation
    foreign = tmp_path / "foreign-keys"
    assert gardien("keys", "init", env=env | {"GARDIEN_KEYS_FILE": str(foreign)}).returncode == 0
    line = _refused(env | {"GARDIEN_KEYS_FILE": str(foreign)})
    assert str(foreign) in line and "does not belong to this database" in line

    # the right key ids, the wrong key material (a damaged or tampered file)
    payload = json.loads(keys.read_text())
    for key_id in payload["masters"]:
        payload["masters"][key_id] = base64.b64encode(secrets.token_bytes(32)).decode()
    damaged = tmp_path / "damaged-keys"
    damaged.write_text(json.dumps(payload))
    damaged.chmod(0o600)
    line = _refused(env | {"GARDIEN_KEYS_FILE": str(damaged)})
    assert str(damaged) in line and "wrong keys file" in line

    # no keys file at all, for a database that holds encrypted data: never a fresh one
    missing = tmp_path / "nowhere" / "keys"
    line = _refused(env | {"GARDIEN_KEYS_FILE": str(missing)})
    assert str(missing) in line and "missing" in line
    assert not missing.exists()

    # a keys file others can read
    keys.chmod(0o644)
    line = _refused(env)
    assert "readable by others" in line
    keys.chmod(0o600)

    # nothing was rewritten by the refused starts, and the right file still opens everything
    assert _key_rows(database_url) == stored
    with serving(env) as server:
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}


@sqlite_only
def test_the_keys_never_enter_the_database(
    client: TestClient, state: State, settings: Settings
) -> None:
    add_user(state, EMAIL, "dpo")
    payload = json.loads(Path(settings.data_dir / "keys").read_text())
    files = b"".join(sqlite_files(settings).values())
    with state.sessions() as session:
        assert (session.scalar(select(func.count()).select_from(EncryptionKey)) or 0) >= 2
    for encoded in (*payload["masters"].values(), payload["hmac_key"]):
        raw = base64.b64decode(encoded)
        assert raw not in files and encoded.encode() not in files
    unwrapped = state.keys.ring
    for key in (*unwrapped.data_keys.values(), *unwrapped.index_keys.values()):
        assert key not in files  # data and index keys are stored wrapped only
