"""The sender speaks TLS (STARTTLS and implicit) and authenticates, against a real aiosmtpd
with a certificate made for the test and trusted through the ``tls`` context."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from gardien.deps import State
from gardien.forms.jobs import SendReport, send_due
from gardien.forms.models import OutboxMessage
from gardien.storage.clock import FrozenClock
from tests.forms.smtp import Mailbox, only_notification, smtp_server, submit, use_smtp

USER = "relay@example.org"
PASSWORD = "s3cret:with/odd@chars"
ENCODED = "relay%40example.org:s3cret%3Awith%2Fodd%40chars"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gardien test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "smtp.pem", tmp_path / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def client_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


class Logins:
    """aiosmtpd authenticator: accepts USER/PASSWORD and remembers every attempt."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, bool]] = []

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        ok = data.login.decode() == USER and data.password.decode() == PASSWORD
        self.attempts.append((mechanism, bool(session.ssl)))
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 535 itself


def test_starttls_then_login(
    state: State, clock: FrozenClock, certificate: tuple[Path, Path]
) -> None:
    only_notification(state)
    mailbox, logins = Mailbox(), Logins()
    options: dict[str, Any] = {
        "tls_context": server_tls(certificate),
        "require_starttls": True,
        "authenticator": logins,
        "auth_required": True,
        "auth_require_tls": True,
    }
    with smtp_server(mailbox, **options) as port:
        use_smtp(state, f"smtp://{ENCODED}@127.0.0.1:{port}")
        submit(state)
        report = send_due(state, now=clock.now(), tls=client_tls(certificate))
    assert report == SendReport(claimed=1, sent=1)
    assert len(mailbox.received) == 1
    assert logins.attempts and all(over_tls for _, over_tls in logins.attempts)


def test_implicit_tls_and_a_wrong_password_is_retried(
    state: State, clock: FrozenClock, certificate: tuple[Path, Path]
) -> None:
    only_notification(state)
    mailbox, logins = Mailbox(), Logins()
    # aiosmtpd does not count implicit TLS as TLS for AUTH; the socket is TLS all the same.
    options: dict[str, Any] = {
        "ssl_context": server_tls(certificate),
        "authenticator": logins,
        "auth_require_tls": False,
    }
    with smtp_server(mailbox, **options) as port:
        use_smtp(state, f"smtps://relay%40example.org:wrong@127.0.0.1:{port}")
        submit(state)
        assert send_due(state, now=clock.now(), tls=client_tls(certificate)).retrying == 1
        with state.sessions() as session:
            row = session.scalars(select(OutboxMessage)).one()
        assert row.last_error == "SMTPAuthenticationError 535"
        assert mailbox.received == []

        use_smtp(state, f"smtps://{ENCODED}@127.0.0.1:{port}")
        clock.advance(dt.timedelta(minutes=1))
        assert send_due(state, now=clock.now(), tls=client_tls(certificate)).sent == 1
    assert len(mailbox.received) == 1


def test_an_untrusted_certificate_is_refused(
    state: State, clock: FrozenClock, certificate: tuple[Path, Path]
) -> None:
    only_notification(state)
    mailbox = Mailbox()
    with smtp_server(mailbox, ssl_context=server_tls(certificate)) as port:
        use_smtp(state, f"smtps://127.0.0.1:{port}")
        submit(state)
        assert send_due(state, now=clock.now()).retrying == 1  # the system's trust store
        with state.sessions() as session:
            row = session.scalars(select(OutboxMessage)).one()
    assert row.last_error == "SSLCertVerificationError"
    assert mailbox.received == []
