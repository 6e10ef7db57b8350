"""Build a running Gardien from settings: the composition root shared by ``web`` and ``cli``.

Departure from DESIGN.md's "only web and cli compose": both need the same wiring (register,
engine, stores, providers), so it lives here once and both import it.
"""

from __future__ import annotations

from sqlalchemy import select

from gardien.analytics.store import AnalyticsHitStore, AnalyticsProvider
from gardien.backup import journal
from gardien.backup.service import BackupStore
from gardien.config import Settings
from gardien.consent.store import ConsentProvider, ConsentRecordStore
from gardien.deps import State
from gardien.forms.jobs import add_kinds
from gardien.forms.provider import FormsProvider, FormSubmissionStore
from gardien.register.loader import load_register
from gardien.register.schema import Register
from gardien.retention.stores import RetentionStore, StoreRegistry
from gardien.rights import jobs as rights_jobs
from gardien.rights import notify
from gardien.rights.provider import RightsCaseProvider, RightsCaseStore
from gardien.security import crypto
from gardien.security.audit import AuditStore
from gardien.security.connection_log import ConnectionLogProvider, ConnectionLogStore
from gardien.security.keys import KeysError, KeyStore, init_keys, keys_path, read_keys
from gardien.security.models import EncryptionKey
from gardien.security.provider import AdminAccountProvider, AdminAccountStore
from gardien.storage.clock import Clock, SystemClock
from gardien.storage.database import engine_from_settings, reader_factory, session_factory
from gardien.storage.groupcommit import GroupCommit
from gardien.storage.subjects import ProviderRegistry, SubjectProvider
from gardien.web.templating import make_environments


def domain_stores(settings: Settings | None = None) -> list[RetentionStore]:
    """Every domain's retention store; later capabilities append theirs here. The backups'
    store reads the catalogue in ``DATA_DIR`` (none without settings: ``register check``)."""
    return [
        BackupStore(settings.data_dir if settings else None),
        AuditStore(),
        ConnectionLogStore(),
        AdminAccountStore(),
        ConsentRecordStore(),
        FormSubmissionStore(),
        AnalyticsHitStore(),
        RightsCaseStore(),
    ]


def domain_providers() -> list[SubjectProvider]:
    """Every domain's data-subject provider; later capabilities append theirs here."""
    return [
        ConnectionLogProvider(),
        AdminAccountProvider(),
        ConsentProvider(),
        FormsProvider(),
        AnalyticsProvider(),
        RightsCaseProvider(),
    ]


def build_state(
    settings: Settings,
    *,
    register: Register | None = None,
    clock: Clock | None = None,
    stores: StoreRegistry | None = None,
    providers: ProviderRegistry | None = None,
) -> State:
    """Load the register (raises ``RegisterError``) and wire the engine, stores and keys."""
    register = register or load_register(settings.register_file)
    for kinds in notify.OUTBOX_KINDS:  # the rights notices go through the forms' outbox
        add_kinds(kinds)
    engine = engine_from_settings(settings)
    sessions = session_factory(engine)
    clock = clock or SystemClock()
    return State(
        settings=settings,
        engine=engine,
        sessions=sessions,
        readers=reader_factory(engine),
        register=register,
        clock=clock,
        templates=make_environments(register.languages.available),
        stores=stores or StoreRegistry(domain_stores(settings), rights_jobs.sweeps()),
        providers=providers or ProviderRegistry(domain_providers()),
        keys=KeyStore(settings, sessions, clock),
        writer=GroupCommit(engine),
    )


def start(state: State) -> None:
    """Open the keys once the schema is current: unwrap the key ring and install it.

    A missing keys file is created only for a database that holds no key yet; otherwise, as
    with a wrong file, Gardien stops here with a clear message instead of writing data it
    could not read back (raises ``KeysError``).
    """
    path = keys_path(state.settings)
    if not path.exists():
        with state.sessions() as session:
            has_keys = session.scalar(select(EncryptionKey.id).limit(1)) is not None
        if has_keys:
            raise KeysError(
                f"{path}: the keys file is missing but this database holds encrypted data: "
                "restore the keys file from your key backup (GARDIEN_KEYS_FILE)"
            )
        init_keys(state.settings)
    state.secret = read_keys(state.settings).hmac_key
    crypto.install(state.keys.load())
    journal.install(journal.ErasureJournal(state.settings.data_dir / journal.FILE_NAME))
    # A restore interrupted before its journal was replayed: nothing is served before that.
    from gardien.backup.service import finish_restore

    report = finish_restore(state)
    if report is not None:
        state.caches["restore_report"] = report.to_json()
