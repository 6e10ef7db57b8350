"""A minimal form-submission endpoint twice: plain columns and Gardien's encrypted columns.

Same framework, same database, same work (insert a typical contact record, commit, read it
back), so the difference between the two is the cost of field encryption.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from gardien.security import crypto
from gardien.security.crypto import Encrypted, KeyRing
from gardien.storage.database import make_engine, session_factory

FIELDS = ("first_name", "last_name", "phone", "email", "company", "country", "message")

metadata = MetaData()
plain = Table(
    "plain_record",
    metadata,
    Column("id", Integer, primary_key=True),
    *(Column(name, String(4000)) for name in FIELDS),
)
encrypted = Table(
    "encrypted_record",
    metadata,
    Column("id", Integer, primary_key=True),
    *(Column(name, Encrypted(f"encrypted_record.{name}")) for name in FIELDS),
)

ring = KeyRing(data_keys={"benchkey": secrets.token_bytes(32)}, active_data="benchkey")
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


def _round_trip(table: Table, submission: Submission) -> dict[str, Any]:
    with sessions.begin() as session:
        new_id = session.execute(
            insert(table).values(**submission.model_dump()).returning(table.c.id)
        ).scalar_one()
        row = session.execute(select(table).where(table.c.id == new_id)).one()
    return {"id": row.id, "email": row.email}


@app.post("/plain")
def submit_plain(submission: Submission) -> dict[str, Any]:
    return _round_trip(plain, submission)


@app.post("/encrypted")
def submit_encrypted(submission: Submission) -> dict[str, Any]:
    return _round_trip(encrypted, submission)
