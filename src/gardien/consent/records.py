"""Recording a decision: validate what the banner sent, build the record, chain it, commit it.

Records go through the group-commit writer (``storage.groupcommit``) and are answered only once
committed. The chain is extended by the writer, under the chain's lock, once per batch
(``extend_chain``): each record gets the next sequence number and the hash of the previous one,
so several instances append to one chain and never fork it.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictBool
from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from gardien.consent.models import CONSENT_INDEX_CONTEXT, ConsentRecord, consent_record
from gardien.consent.revisions import Current
from gardien.errors import N_, BadRequest, Conflict
from gardien.security.crypto import blind_index
from gardien.storage.chain import GENESIS, ChainRow, link, verify

CONSENT_ID = re.compile(r"^[0-9a-f]{32}$")
CONSENT_LOCK = 0x6761726469656E02  # "gardien" + 2: the advisory-lock key of the consent chain
MAX_BODY = 4096
ACTIONS = (
    "accept_all",
    "reject_all",
    "custom_save",
    "close_dismiss",
    "withdraw",
    "renewal",
    "gpc_auto_reject",
)
REFUSING = {"reject_all", "close_dismiss", "gpc_auto_reject"}
CHAINED = (
    "seq",
    "event_id",
    "occurred_at",
    "consent_id",
    "action",
    "layer",
    "control",
    "choices",
    "revision",
    "content_hash",
    "policy_version",
    "language",
    "page",
    "user_agent",
    "client_time",
    "gpc",
    "dnt",
    "expires_at",
)
"""The fields each record's hash covers (everything but the chain columns themselves)."""


class RecordIn(BaseModel):
    """One decision as the banner sends it (docs/consent.md)."""

    model_config = ConfigDict(extra="forbid")

    consent_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    action: Literal[
        "accept_all",
        "reject_all",
        "custom_save",
        "close_dismiss",
        "withdraw",
        "renewal",
        "gpc_auto_reject",
    ]
    layer: Literal["banner", "panel", "api"]
    control: Literal["accept", "reject", "save", "close", "escape", "gpc", "api"]
    revision: int = Field(ge=1, le=1_000_000_000)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    choices: dict[str, StrictBool] = Field(max_length=50)
    language: str = Field(pattern=r"^[a-z]{2,3}$")
    page: str = Field(default="/", max_length=2000)
    client_time: str | None = Field(default=None, max_length=40, pattern=r"^[0-9T:.+Z-]{1,40}$")
    """The browser's clock as ISO 8601; only digits and date punctuation are accepted."""
    gpc: StrictBool = False
    dnt: StrictBool = False


def clean_path(page: str) -> str:
    """The path alone: no scheme, host, query string or fragment (they may identify)."""
    path = urlsplit(page).path or "/"
    return path[:300] if path.startswith("/") else "/"


def check(record: RecordIn, current: Current, languages: Sequence[str]) -> None:
    """Refuse what the banner cannot have sent for the revision in force; raises 4xx."""
    if record.revision != current.number:
        if record.revision > current.number:
            raise BadRequest(
                N_("banner revision %(revision)s does not exist"), revision=record.revision
            )
        raise Conflict(
            N_("banner revision %(revision)s is no longer in force: reload the page"),
            revision=record.revision,
        )
    if record.hash != current.content_hash:
        raise BadRequest(
            N_("the banner content hash does not match revision %(revision)s"),
            revision=record.revision,
        )
    unknown = sorted(set(record.choices) - set(current.optional))
    if unknown:
        raise BadRequest(N_("unknown consent category: %(names)s"), names=", ".join(unknown)[:200])
    missing = sorted(set(current.optional) - set(record.choices))
    if missing:
        raise BadRequest(N_("missing consent category: %(names)s"), names=", ".join(missing))
    if record.action == "accept_all" and not all(record.choices.values()):
        raise BadRequest(N_("accept_all must grant every category"))
    if record.action in REFUSING and any(record.choices.values()):
        raise BadRequest(N_("%(action)s must refuse every category"), action=record.action)
    if record.language not in languages:
        raise BadRequest(N_("language %(language)s is not offered"), language=record.language)


def build_row(
    record: RecordIn, current: Current, now: dt.datetime, user_agent: str | None
) -> dict[str, Any]:
    """The row to insert; ``seq``, ``prev_hash`` and ``hash`` are set by ``extend_chain``."""
    categories = dict.fromkeys(current.required, True) | dict(record.choices)
    services = {
        service: categories[category]
        for category, names in current.services.items()
        for service in names
    }
    expires = current.expires(now)
    return {
        "seq": 0,
        "event_id": uuid.uuid4().hex,
        "occurred_at": now,
        "consent_id": record.consent_id,
        "consent_id_index": blind_index(record.consent_id, CONSENT_INDEX_CONTEXT),
        "action": record.action,
        "layer": record.layer,
        "control": record.control,
        "choices": {"categories": categories, "services": services},
        "revision": current.number,
        "content_hash": current.content_hash,
        "policy_version": current.policy_version,
        "language": record.language,
        "page": clean_path(record.page),
        "user_agent": (user_agent or "")[:120] or None,
        "client_time": record.client_time,
        "gpc": record.gpc,
        "dnt": record.dnt,
        "expires_at": expires,
        "prev_hash": "",
        "hash": "",
        "purged": False,
    }


def chained_fields(row: dict[str, Any] | ConsentRecord) -> dict[str, Any]:
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    fields = {name: get(name) for name in CHAINED}
    for name in ("occurred_at", "expires_at"):
        value = fields[name]
        if isinstance(value, dt.datetime):
            fields[name] = value.astimezone(dt.UTC).isoformat()
    return fields


def extend_chain(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Give ``rows`` the next sequence numbers and chain hashes, under the chain's lock; runs
    in the writer's transaction, once per batch."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CONSENT_LOCK})
    head = connection.execute(
        select(consent_record.c.seq, consent_record.c.hash)
        .order_by(consent_record.c.seq.desc())
        .limit(1)
    ).first()
    seq, previous = (head[0], head[1]) if head else (0, GENESIS)
    for row in rows:
        seq += 1
        row["seq"] = seq
        row["prev_hash"] = previous
        row["hash"] = previous = link(previous, chained_fields(row))


def _rows(session: Session) -> Iterator[ChainRow]:
    for record in session.scalars(
        select(ConsentRecord).order_by(ConsentRecord.seq).execution_options(yield_per=1000)
    ):
        yield ChainRow(
            record.seq,
            record.prev_hash,
            record.hash,
            None if record.purged else chained_fields(record),
        )


def verify_chain(session: Session) -> Any:
    """The first broken record (``storage.chain.Break``), or ``None``."""
    return verify(_rows(session))
