"""A contact-form record stored and read back, with and without encryption at rest.

Same framework, same database, same work for every endpoint (insert the record, commit, read it
back, answer its id and e-mail address), so the differences are the cost of the encryption:

- ``/plain``: the submitted fields as a JSON text column, the e-mail address and phone number
  in clear, indexed columns for lookups: what a store without encryption would keep.
- ``/encrypted``: the record as Gardien stores a form submission (``form_submission`` in
  forms/models.py): the fields as one ``Encrypted`` JSON value, the e-mail address and phone
  number as ``BlindIndex`` columns computed by the forms' own ``email_index`` and
  ``phone_index`` (keyed HMACs under the index key).
- ``/plain-columns`` and ``/encrypted-columns``: the same seven fields each in a column of its
  own, in clear or each in its own ``Encrypted`` column (seven ciphertexts written and seven
  read per record): the shape of a record that keeps its identifiers apart, as a rights case
  does.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, insert, select

from gardien.forms.provider import email_index, phone_index
from gardien.security import crypto
from gardien.security.crypto import BlindIndex, Encrypted, KeyRing
from gardien.storage.database import make_engine, session_factory

FIELDS = ("first_name", "last_name", "phone", "email", "company", "country", "message")

metadata = MetaData()
plain = Table(
    "plain_submission",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("fields", Text),
    Column("email", String(320), index=True),
    Column("phone", String(64), index=True),
)
encrypted = Table(
    "encrypted_submission",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("fields", Encrypted("form_submission.fields")),
    Column(
        "email_index",
        BlindIndex("form_submission.email_index", source="fields", normaliser="email"),
        index=True,
    ),
    Column("phone_index", BlindIndex("form_submission.phone_index", source="fields"), index=True),
)
plain_columns = Table(
    "plain_record",
    metadata,
    Column("id", Integer, primary_key=True),
    *(Column(name, String(4000)) for name in FIELDS),
)
encrypted_columns = Table(
    "encrypted_record",
    metadata,
    Column("id", Integer, primary_key=True),
    *(Column(name, Encrypted(f"encrypted_record.{name}")) for name in FIELDS),
)

ring = KeyRing(
    data_keys={"benchkey": secrets.token_bytes(32)},
    active_data="benchkey",
    index_keys={"benchidx": secrets.token_bytes(32)},
    active_index="benchidx",
)
crypto.install(ring)
directory = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="gardien-crypto-"))
engine = make_engine(f"sqlite:///{directory / 'bench.db'}")
metadata.create_all(engine)
sessions = session_factory(engine)
app = FastAPI()


class Submission(BaseModel):
    first_name: str
    last_name: str
    phone: str
    email: str
    company: str
    country: str
    message: str


def _submission_round_trip(submission: Submission, *, sealed: bool) -> dict[str, Any]:
    """Store the record as one JSON value with its two lookup keys, then read it back."""
    table = encrypted if sealed else plain
    values: dict[str, Any] = {"fields": json.dumps(submission.model_dump(), ensure_ascii=False)}
    if sealed:
        values["email_index"] = email_index(submission.email)
        values["phone_index"] = phone_index(submission.phone)
    else:
        values["email"] = submission.email
        values["phone"] = submission.phone
    with sessions.begin() as session:
        new_id = session.execute(insert(table).values(**values).returning(table.c.id)).scalar_one()
        row = session.execute(select(table).where(table.c.id == new_id)).one()
    return {"id": row.id, "email": json.loads(row.fields)["email"]}


def _columns_round_trip(table: Table, submission: Submission) -> dict[str, Any]:
    """Store the record's fields in a column each, then read it back."""
    with sessions.begin() as session:
        new_id = session.execute(
            insert(table).values(**submission.model_dump()).returning(table.c.id)
        ).scalar_one()
        row = session.execute(select(table).where(table.c.id == new_id)).one()
    return {"id": row.id, "email": row.email}


@app.post("/plain")
def submit_plain(submission: Submission) -> dict[str, Any]:
    return _submission_round_trip(submission, sealed=False)


@app.post("/encrypted")
def submit_encrypted(submission: Submission) -> dict[str, Any]:
    return _submission_round_trip(submission, sealed=True)


@app.post("/plain-columns")
def submit_plain_columns(submission: Submission) -> dict[str, Any]:
    return _columns_round_trip(plain_columns, submission)


@app.post("/encrypted-columns")
def submit_encrypted_columns(submission: Submission) -> dict[str, Any]:
    return _columns_round_trip(encrypted_columns, submission)
