"""Build a running Gardien from settings: the composition root shared by ``web`` and ``cli``.

Departure from DESIGN.md's "only web and cli compose": both need the same wiring (register,
engine, stores, providers), so it lives here once and both import it.
"""

from __future__ import annotations

from gardien.config import Settings
from gardien.deps import State
from gardien.register.loader import load_register
from gardien.register.schema import Register
from gardien.retention.stores import RetentionStore, StoreRegistry
from gardien.security.keys import load_keys
from gardien.storage.clock import Clock, SystemClock
from gardien.storage.database import engine_from_settings, reader_factory, session_factory
from gardien.storage.subjects import ProviderRegistry, SubjectProvider
from gardien.web.templating import make_environments


def domain_stores() -> list[RetentionStore]:
    """Every domain's retention store; later capabilities append theirs here."""
    return []


def domain_providers() -> list[SubjectProvider]:
    """Every domain's data-subject provider; later capabilities append theirs here."""
    return []


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
    engine = engine_from_settings(settings)
    return State(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        readers=reader_factory(engine),
        register=register,
        clock=clock or SystemClock(),
        templates=make_environments(register.languages.available),
        stores=stores or StoreRegistry(domain_stores()),
        providers=providers or ProviderRegistry(domain_providers()),
        secret=load_keys(settings).hmac_key,
    )
