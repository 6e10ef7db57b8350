"""What a request handler may ask for: the running Gardien's state and a database session.

Domain routes depend on these instead of importing ``web``; ``web.app`` fills ``State`` at
start-up. The session dependency owns the request's transaction: it commits once when the
handler returns and rolls back when it raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from jinja2 import Environment
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gardien.config import Settings
from gardien.register.schema import Register
from gardien.retention.stores import StoreRegistry
from gardien.security.keys import KeyStore
from gardien.storage.clock import Clock
from gardien.storage.database import unit_of_work
from gardien.storage.groupcommit import GroupCommit
from gardien.storage.subjects import ProviderRegistry


@dataclass
class State:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    readers: sessionmaker[Session]
    register: Register
    clock: Clock
    templates: dict[str, Environment]
    stores: StoreRegistry
    providers: ProviderRegistry
    keys: KeyStore
    writer: GroupCommit
    """Group-commit writer for hot write paths (the connection log)."""
    secret: bytes = b""
    """Keyed-hash secret (rate-limit buckets), set by ``runtime.start`` from the keys file."""
    caches: dict[str, Any] = field(default_factory=dict)

    def env(self, language: str) -> Environment:
        return self.templates.get(language) or self.templates[self.register.languages.default]


async def get_state(request: Request) -> State:
    return state_of(request)


def state_of(request: Request) -> State:
    state: State = request.app.state.gardien
    return state


def get_session(request: Request) -> Iterator[Session]:
    with unit_of_work(state_of(request).sessions) as session:
        yield session


def get_reader(request: Request) -> Iterator[Session]:
    with state_of(request).readers() as session:
        yield session


AppState = Annotated[State, Depends(get_state)]
# scope="function": the transaction ends when the handler returns, *before* the response is
# sent, so a 2xx always means committed (DESIGN principle 5) and no request still holds
# SQLite's write lock while its response waits for the connection log.
DbSession = Annotated[Session, Depends(get_session, scope="function")]
"""A read-write session; the request's transaction commits once when the handler returns."""
ReadSession = Annotated[Session, Depends(get_reader, scope="function")]
"""A read-only session for pages and reports; never takes SQLite's write lock."""
